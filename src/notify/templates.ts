/**
 * Notification templates: one per money event type and party role, each rendered as a subject,
 * a plain-text body and an HTML body. Money is formatted exactly from integer minor units (a
 * decimal string built from the bigint, then Intl for grouping and symbol: no float on the way).
 * An event this module cannot render (unknown type, a missing or malformed field, a role the
 * type has no template for) is a PoisonEvent: it goes to the dead letters with the reason.
 */
import { PoisonEvent, type BusEvent } from '../events/types.js';
import type { PartyRole } from '../events/parties.js';
import { MINOR_UNITS } from '../shared/currencies.js';
import { MONEY_EVENT_TYPES } from '../events/types.js';

/** The money events that notify their parties (the types users may mute). */
export const NOTIFIABLE_EVENT_TYPES = MONEY_EVENT_TYPES;
export type NotifiableEventType = (typeof NOTIFIABLE_EVENT_TYPES)[number];

const NOTIFIABLE = new Set<string>(NOTIFIABLE_EVENT_TYPES);
export const isNotifiable = (type: string): type is NotifiableEventType => NOTIFIABLE.has(type);

/** What the templates need from a money event, checked once per event. */
export interface MoneyFacts {
  type: NotifiableEventType;
  /** the id of the transfer, top-up, payment or refund */
  reference: string;
  /** the amount this event is about: the captured part for a capture, the refund for a refund */
  amountMinor: bigint;
  currency: string;
  /** ISO-8601, when the event happened */
  at: string;
  note?: string;
  declineCode?: string;
  /** refunds: the payment refunded */
  paymentId?: string;
}

export interface RenderedNotification {
  subject: string;
  text: string;
  html: string;
}

export interface Names {
  /** the person notified */
  recipient?: string;
  /** the other party (recipient of a transfer, merchant of a payment, ...) */
  counterparty?: string;
}

const formatters = new Map<string, Intl.NumberFormat>();

/** "$12.34", "¥1,200", "KWD 1.234": exact for any bigint (Intl formats decimal strings exactly). */
export function formatMoney(amountMinor: bigint, currency: string): string {
  const exponent = MINOR_UNITS[currency];
  if (exponent === undefined) throw new RangeError(`not a currency: ${currency}`);
  let f = formatters.get(currency);
  if (!f) {
    f = new Intl.NumberFormat('en-US', { style: 'currency', currency, minimumFractionDigits: exponent, maximumFractionDigits: exponent });
    formatters.set(currency, f); // bounded by the currency list
  }
  const negative = amountMinor < 0n;
  const digits = (negative ? -amountMinor : amountMinor).toString().padStart(exponent + 1, '0');
  const decimal = exponent === 0 ? digits : `${digits.slice(0, -exponent)}.${digits.slice(-exponent)}`;
  // Intl.NumberFormat v3 (Node 20) takes a decimal string and keeps every digit; the ES2022 lib types only know number | bigint
  return f.format(`${negative ? '-' : ''}${decimal}` as unknown as number);
}

const poison = (event: BusEvent, why: string) => new PoisonEvent(`notify: ${event.type} ${event.id}: ${why}`);

function minorUnits(event: BusEvent, field: string): bigint {
  const v = event.payload[field];
  if (typeof v === 'bigint' && v >= 0n) return v;
  // JSON integers arrive as numbers; the platform's per-movement maximum is far below 2^53
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string' && /^[0-9]{1,20}$/.test(v)) return BigInt(v);
  throw poison(event, `${field} is not an amount in minor units`);
}

function text(event: BusEvent, field: string, optional: true): string | undefined;
function text(event: BusEvent, field: string): string;
function text(event: BusEvent, field: string, optional = false): string | undefined {
  const v = event.payload[field];
  if (v === undefined || v === null) {
    if (optional) return undefined;
    throw poison(event, `${field} is missing`);
  }
  if (typeof v !== 'string' || v.length > 1000) throw poison(event, `${field} is not a string`);
  return v;
}

/** The facts of a money event; PoisonEvent when its type is unknown or a field is malformed. */
export function parseMoneyEvent(event: BusEvent): MoneyFacts {
  if (!isNotifiable(event.type)) throw poison(event, 'unknown event type');
  if (typeof event.payload !== 'object' || event.payload === null) throw poison(event, 'payload is not an object');
  const currency = text(event, 'currency');
  if (MINOR_UNITS[currency] === undefined) throw poison(event, `currency ${JSON.stringify(currency)} is unknown`);
  if (typeof event.at !== 'string' || Number.isNaN(Date.parse(event.at))) throw poison(event, 'at is not a time');
  const facts: MoneyFacts = { type: event.type, reference: text(event, 'id'), amountMinor: minorUnits(event, 'amount'), currency, at: new Date(event.at).toISOString() };
  if (event.type === 'payment.captured' && event.payload.capturedAmount !== undefined) {
    const captured = minorUnits(event, 'capturedAmount');
    if (captured > 0n) facts.amountMinor = captured;
  }
  const note = text(event, 'note', true);
  if (note) facts.note = note;
  const declineCode = text(event, 'declineCode', true);
  if (declineCode) facts.declineCode = declineCode;
  const paymentId = text(event, 'paymentId', true);
  if (paymentId) facts.paymentId = paymentId;
  return facts;
}

interface Copy {
  subject: string;
  /** the first is the message; the rest are details */
  lines: string[];
}
type View = MoneyFacts & { money: string; other: string };
type Template = (v: View) => Copy;

const declined = (v: View) => (v.declineCode ? [`Reason: ${v.declineCode.replace(/_/g, ' ')}.`] : []);
const noted = (v: View) => (v.note ? [`Note: ${v.note}`] : []);

const TEMPLATES: { readonly [T in NotifiableEventType]: Partial<Record<PartyRole, Template>> } = {
  'topup.completed': {
    owner: (v) => ({ subject: `You added ${v.money} to your wallet`, lines: [`Your top-up of ${v.money} is complete; the money is in your wallet.`] }),
  },
  'transfer.completed': {
    sender: (v) => ({ subject: `You sent ${v.money} to ${v.other}`, lines: [`You sent ${v.money} to ${v.other}.`, ...noted(v)] }),
    recipient: (v) => ({ subject: `You received ${v.money} from ${v.other}`, lines: [`${v.other} sent you ${v.money}; it is in your wallet.`, ...noted(v)] }),
  },
  'transfer.reversed': {
    sender: (v) => ({ subject: `Your transfer of ${v.money} to ${v.other} was returned`, lines: [`Your transfer of ${v.money} to ${v.other} could not be delivered; the money is back in your wallet.`, ...declined(v)] }),
    recipient: (v) => ({ subject: `A transfer of ${v.money} from ${v.other} could not be delivered`, lines: [`${v.other} sent you ${v.money}, but it could not be credited to your wallet and was returned to them.`, ...declined(v)] }),
  },
  'payment.authorized': {
    payer: (v) => ({ subject: `${v.money} is on hold for ${v.other}`, lines: [`You authorized a payment of ${v.money} to ${v.other}. The amount is on hold until the merchant captures it.`] }),
    merchant: (v) => ({ subject: `A payment of ${v.money} from ${v.other} is ready to capture`, lines: [`${v.other} authorized a payment of ${v.money}. Capture it before the authorization expires.`] }),
  },
  'payment.captured': {
    payer: (v) => ({ subject: `You paid ${v.money} to ${v.other}`, lines: [`You paid ${v.money} to ${v.other}.`] }),
    merchant: (v) => ({ subject: `You received a payment of ${v.money} from ${v.other}`, lines: [`${v.other} paid you ${v.money}; it is in your wallet.`] }),
  },
  'payment.voided': {
    payer: (v) => ({ subject: `Your payment of ${v.money} to ${v.other} was cancelled`, lines: [`${v.other} cancelled your payment of ${v.money}; the hold on your money is released.`] }),
    merchant: (v) => ({ subject: `You voided the payment of ${v.money} from ${v.other}`, lines: [`You voided the payment of ${v.money} from ${v.other}; nothing was charged.`] }),
  },
  'payment.expired': {
    payer: (v) => ({ subject: `Your payment of ${v.money} to ${v.other} expired`, lines: [`${v.other} did not capture your payment of ${v.money} in time; the hold on your money is released.`] }),
    merchant: (v) => ({ subject: `The payment of ${v.money} from ${v.other} expired`, lines: [`The authorization of ${v.money} from ${v.other} expired before it was captured; nothing was charged.`] }),
  },
  'payment.refunded': {
    payer: (v) => ({ subject: `${v.other} refunded ${v.money} to you`, lines: [`${v.other} refunded ${v.money} of your payment.`] }),
    merchant: (v) => ({ subject: `You refunded ${v.money} to ${v.other}`, lines: [`You refunded ${v.money} to ${v.other}.`] }),
  },
  'payment.declined': {
    payer: (v) => ({ subject: `Your payment of ${v.money} to ${v.other} was declined`, lines: [`Your payment of ${v.money} to ${v.other} was declined; nothing was charged.`, ...declined(v)] }),
    merchant: (v) => ({ subject: `A payment of ${v.money} from ${v.other} was declined`, lines: [`A payment of ${v.money} from ${v.other} was declined; nothing was charged.`, ...declined(v)] }),
  },
};

/** Names are user input: no control characters (they end up in mail headers) and bounded. */
function cleanName(name: string | undefined, fallback: string): string {
  const clean = (name ?? '').replace(/[\u0000-\u001f\u007f\u2028\u2029]+/g, ' ').trim().slice(0, 80);
  return clean || fallback;
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
export const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!);

/** One party's notification of a money event; PoisonEvent when the type has no template for the role. */
export function renderNotification(facts: MoneyFacts, role: PartyRole, names: Names = {}): RenderedNotification {
  const template = TEMPLATES[facts.type][role];
  if (!template) throw new PoisonEvent(`notify: ${facts.type} has no template for the ${role}`);
  const copy = template({ ...facts, money: formatMoney(facts.amountMinor, facts.currency), other: cleanName(names.counterparty, 'another wallet user') });
  const greeting = `Hi ${cleanName(names.recipient, 'there')},`;
  const when = `${facts.at.slice(0, 10)} ${facts.at.slice(11, 16)} UTC`;
  const reference = facts.paymentId ? `Reference: ${facts.reference} (payment ${facts.paymentId})` : `Reference: ${facts.reference}`;
  const footer = `You receive this because notifications for ${facts.type} are on; change that in your notification preferences.`;
  const text = [greeting, '', ...copy.lines, '', reference, `Time: ${when}`, '', footer, ''].join('\n');
  const html =
    '<!doctype html><html><body style="font-family:system-ui,sans-serif;color:#111">' +
    `<p>${escapeHtml(greeting)}</p>` +
    copy.lines.map((l, i) => (i === 0 ? `<p><strong>${escapeHtml(l)}</strong></p>` : `<p>${escapeHtml(l)}</p>`)).join('') +
    `<p style="color:#555">${escapeHtml(reference)}<br>Time: ${escapeHtml(when)}</p>` +
    `<p style="color:#888;font-size:12px">${escapeHtml(footer)}</p></body></html>`;
  return { subject: copy.subject, text, html };
}
