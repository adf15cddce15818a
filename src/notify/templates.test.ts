import { describe, expect, it } from 'vitest';
import { PoisonEvent, type BusEvent } from '../events/types.js';
import type { PartyRole } from '../events/parties.js';
import { formatMoney, NOTIFIABLE_EVENT_TYPES, parseMoneyEvent, renderNotification } from './templates.js';

const AT = '2025-03-04T05:06:07.000Z';
function event(type: string, payload: Record<string, unknown>): BusEvent {
  return { id: 'evt_0001', topic: 'transaction-events', key: 'usr_a', type, shard: 1, at: AT, payload: { id: 'txn_1', amount: 1234, currency: 'USD', ...payload } };
}
const render = (type: string, role: PartyRole, payload: Record<string, unknown> = {}) =>
  renderNotification(parseMoneyEvent(event(type, payload)), role, { recipient: 'Alice', counterparty: 'Bob' });

describe('money formatting', () => {
  it('formats minor units with the currency exponent and symbol', () => {
    expect(formatMoney(1234n, 'USD')).toBe('$12.34');
    expect(formatMoney(5n, 'USD')).toBe('$0.05');
    expect(formatMoney(0n, 'EUR')).toBe('€0.00');
    expect(formatMoney(1200n, 'JPY')).toBe('¥1,200');
    expect(formatMoney(1234n, 'KWD')).toBe('KWD\u00a01.234'); // ICU keeps the code and the number together
  });

  it('keeps every digit of amounts beyond 2^53', () => {
    expect(formatMoney(123456789012345678901n, 'USD')).toBe('$1,234,567,890,123,456,789.01');
  });

  it('refuses an unknown currency', () => {
    expect(() => formatMoney(1n, 'XXX')).toThrow(RangeError);
  });
});

describe('templates', () => {
  const subjects: [string, PartyRole, string][] = [
    ['topup.completed', 'owner', 'You added $12.34 to your wallet'],
    ['transfer.completed', 'sender', 'You sent $12.34 to Bob'],
    ['transfer.completed', 'recipient', 'You received $12.34 from Bob'],
    ['transfer.reversed', 'sender', 'Your transfer of $12.34 to Bob was returned'],
    ['transfer.reversed', 'recipient', 'A transfer of $12.34 from Bob could not be delivered'],
    ['payment.authorized', 'payer', '$12.34 is on hold for Bob'],
    ['payment.authorized', 'merchant', 'A payment of $12.34 from Bob is ready to capture'],
    ['payment.captured', 'payer', 'You paid $12.34 to Bob'],
    ['payment.captured', 'merchant', 'You received a payment of $12.34 from Bob'],
    ['payment.voided', 'payer', 'Your payment of $12.34 to Bob was cancelled'],
    ['payment.voided', 'merchant', 'You voided the payment of $12.34 from Bob'],
    ['payment.expired', 'payer', 'Your payment of $12.34 to Bob expired'],
    ['payment.expired', 'merchant', 'The payment of $12.34 from Bob expired'],
    ['payment.refunded', 'payer', 'Bob refunded $12.34 to you'],
    ['payment.refunded', 'merchant', 'You refunded $12.34 to Bob'],
    ['payment.declined', 'payer', 'Your payment of $12.34 to Bob was declined'],
    ['payment.declined', 'merchant', 'A payment of $12.34 from Bob was declined'],
  ];

  it.each(subjects)('%s for the %s: "%s"', (type, role, subject) => {
    const n = render(type, role);
    expect(n.subject).toBe(subject);
    expect(n.text).toContain('Hi Alice,');
    expect(n.text).toContain('$12.34');
    expect(n.text).toContain('Reference: txn_1');
    expect(n.text).toContain('Time: 2025-03-04 05:06 UTC');
    expect(n.html).toContain('$12.34');
  });

  it('has a template for every notifiable event type', () => {
    expect(new Set(subjects.map(([t]) => t))).toEqual(new Set(NOTIFIABLE_EVENT_TYPES));
  });

  it('a capture notifies the captured amount, not the authorized one', () => {
    expect(render('payment.captured', 'payer', { amount: 3000, capturedAmount: 1200 }).subject).toBe('You paid $12.00 to Bob');
  });

  it('a transfer note and a decline reason appear in the body', () => {
    expect(render('transfer.completed', 'recipient', { note: 'dinner' }).text).toContain('Note: dinner');
    expect(render('payment.declined', 'payer', { declineCode: 'insufficient_funds' }).text).toContain('Reason: insufficient funds.');
  });

  it('a refund names the payment it refunds', () => {
    expect(render('payment.refunded', 'payer', { id: 'ref_1', paymentId: 'pay_1' }).text).toContain('Reference: ref_1 (payment pay_1)');
  });

  it('escapes names and notes in the HTML body', () => {
    const n = renderNotification(parseMoneyEvent(event('transfer.completed', { note: '<b>hi</b>' })), 'recipient', { recipient: 'A & B', counterparty: '<script>x</script>' });
    expect(n.html).toContain('&lt;script&gt;x&lt;/script&gt;');
    expect(n.html).toContain('Hi A &amp; B,');
    expect(n.html).toContain('&lt;b&gt;hi&lt;/b&gt;');
    expect(n.html).not.toContain('<script>');
  });

  it('keeps control characters out of the subject', () => {
    const n = renderNotification(parseMoneyEvent(event('transfer.completed', {})), 'sender', { counterparty: 'Bob\r\nBcc: x@example.com' });
    expect(n.subject).toBe('You sent $12.34 to Bob Bcc: x@example.com');
  });

  it('names an unknown counterparty neutrally', () => {
    expect(renderNotification(parseMoneyEvent(event('transfer.completed', {})), 'sender').subject).toBe('You sent $12.34 to another wallet user');
  });

  it('takes amounts as JSON numbers, bigints or digit strings', () => {
    expect(parseMoneyEvent(event('topup.completed', { amount: 5 })).amountMinor).toBe(5n);
    expect(parseMoneyEvent(event('topup.completed', { amount: 5n })).amountMinor).toBe(5n);
    expect(parseMoneyEvent(event('topup.completed', { amount: '5' })).amountMinor).toBe(5n);
  });
});

describe('events the templates cannot render are poison', () => {
  it.each([
    ['an unknown event type', event('transfer.teleported', {}), /unknown event type/],
    ['a fractional amount', event('transfer.completed', { amount: 1.5 }), /amount is not an amount/],
    ['a negative amount', event('transfer.completed', { amount: -1 }), /amount is not an amount/],
    ['a missing amount', event('transfer.completed', { amount: undefined }), /amount is not an amount/],
    ['an unknown currency', event('transfer.completed', { currency: 'XXX' }), /currency "XXX" is unknown/],
    ['a missing reference', event('transfer.completed', { id: undefined }), /id is missing/],
  ])('%s', (_what, e, reason) => {
    expect(() => parseMoneyEvent(e)).toThrow(PoisonEvent);
    expect(() => parseMoneyEvent(e)).toThrow(reason);
  });

  it('a role the event type has no template for', () => {
    expect(() => renderNotification(parseMoneyEvent(event('transfer.completed', {})), 'merchant')).toThrow(PoisonEvent);
  });
});
