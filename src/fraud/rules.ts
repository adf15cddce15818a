/**
 * Fraud rules: a versioned JSON file (rules-v1.json is the default) of thresholds and allow/deny
 * lists, validated on load and reloaded without a restart when the file changes. A file that
 * fails validation never replaces rules in force: the previous ones stay and the error is
 * logged. applyRules() is pure and cheap; the model's evaluation uses it as the baseline.
 *
 * Amounts are minor units of the request's currency: thresholds do not convert currencies (one
 * file per currency family would be the next step if that matters).
 */
import { readFileSync, statSync, type Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { Logger } from '../observability/logger.js';
import type { FraudOutcome, FraudRequest, RawSignals } from './types.js';
import rulesV1 from './rules-v1.json' with { type: 'json' };

const Minor = Type.Integer({ minimum: 0 });
const Count = Type.Integer({ minimum: 1 });
const Ms = Type.Integer({ minimum: 0 });
const strict = <T extends Record<string, TSchema>>(props: T) => Type.Object(props, { additionalProperties: false });
/** a figure that asks for review from one level and declines from another; either may be left out */
const Levels = strict({ review: Type.Optional(Type.Number({ minimum: 0 })), decline: Type.Optional(Type.Number({ minimum: 0 })) });
const SoftOutcome = Type.Union([Type.Literal('review'), Type.Literal('decline')]);
const Country = Type.String({ pattern: '^[A-Z]{2}$' });
const Ids = Type.Array(Type.String({ minLength: 1 }), { maxItems: 100_000 });

/** A rule left out of the file is off. */
export const RulesSchema = strict({
  version: Type.String({ minLength: 1, maxLength: 100 }),
  thresholds: strict({
    velocity: Type.Optional(
      strict({
        count1m: Type.Optional(Levels),
        count1h: Type.Optional(Levels),
        count24h: Type.Optional(Levels),
        value1m: Type.Optional(Levels),
        value1h: Type.Optional(Levels),
        value24h: Type.Optional(Levels),
      }),
    ),
    /** a transfer or payment to someone the user never paid before, from this amount */
    newCounterpartyLarge: Type.Optional(strict({ minAmountMinor: Minor, outcome: SoftOutcome })),
    /** the first money request after a password or payment-method change made within withinMs */
    credentialChange: Type.Optional(strict({ withinMs: Ms, minAmountMinor: Minor, outcome: SoftOutcome })),
    /** an amount zScore standard deviations above the user's own mean (with minHistory past amounts) */
    amountOutlier: Type.Optional(strict({ minHistory: Type.Integer({ minimum: 2 }), zScore: Type.Number({ exclusiveMinimum: 0 }), minAmountMinor: Minor, outcome: SoftOutcome })),
    youngAccount: Type.Optional(strict({ maxAgeMs: Ms, minAmountMinor: Minor, outcome: SoftOutcome })),
    /** card country and client country both known and different */
    countryMismatch: Type.Optional(strict({ minAmountMinor: Minor, outcome: SoftOutcome })),
    /** a transfer or payment within withinMs of top-ups, taking at least minShareOfTopups of the last hour's */
    mulePattern: Type.Optional(strict({ withinMs: Ms, minShareOfTopups: Type.Number({ exclusiveMinimum: 0, maximum: 10 }), minAmountMinor: Minor, outcome: SoftOutcome })),
    /** distinct senders to a transfer's recipient in the last hour (payments go to merchants: no fan-in rule) */
    fanIn: Type.Optional(strict({ distinctSenders1h: Levels })),
  }),
  /** model score thresholds (0..1) */
  model: strict({ review: Type.Number({ minimum: 0, maximum: 1 }), decline: Type.Number({ minimum: 0, maximum: 1 }) }),
  allow: strict({ users: Ids }),
  deny: strict({ users: Ids, counterparties: Ids, countries: Type.Array(Country, { maxItems: 300 }) }),
  /** for the caller that runs the scorer: its time budget and what to decide without a score */
  policy: strict({
    budgetMs: Type.Number({ exclusiveMinimum: 0, maximum: 10_000 }),
    onFailure: strict({ approveBelowMinor: Minor, above: SoftOutcome }),
  }),
});
export type Rules = Static<typeof RulesSchema>;
type VelocityName = keyof NonNullable<Rules['thresholds']['velocity']>;

const checker = TypeCompiler.Compile(RulesSchema);

/** Validates parsed JSON as rules; throws with the first problem (path and message). */
export function parseRules(input: unknown): Rules {
  if (!checker.Check(input)) {
    const e = checker.Errors(input).First();
    throw new Error(`invalid fraud rules at ${e?.path || '/'}: ${e?.message ?? 'unknown error'}`);
  }
  const levels: [string, { review?: number; decline?: number } | undefined][] = [
    ...Object.entries(input.thresholds.velocity ?? {}),
    ['fanIn.distinctSenders1h', input.thresholds.fanIn?.distinctSenders1h],
    ['model', input.model],
  ];
  for (const [name, l] of levels) {
    if (l?.review !== undefined && l.decline !== undefined && l.review > l.decline) throw new Error(`invalid fraud rules: ${name}: review (${l.review}) above decline (${l.decline})`);
  }
  return deepFreeze(input);
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

/** The rules shipped with the code (rules-v1.json). */
export const DEFAULT_RULES: Rules = parseRules(structuredClone(rulesV1));

export interface RulesResult {
  outcome: FraudOutcome;
  /** stable reason codes, in rule order */
  reasons: string[];
}

const SEVERITY: Record<FraudOutcome, number> = { approve: 0, review: 1, decline: 2 };
export const stricter = (a: FraudOutcome, b: FraudOutcome): FraudOutcome => (SEVERITY[b] > SEVERITY[a] ? b : a);

/** Lists as sets, built once per rules object (rules are frozen, so the sets never go stale). */
interface Lists {
  allowUsers: ReadonlySet<string>;
  denyUsers: ReadonlySet<string>;
  denyCounterparties: ReadonlySet<string>;
  denyCountries: ReadonlySet<string>;
}
const listsOf = new WeakMap<Rules, Lists>();
function lists(rules: Rules): Lists {
  let l = listsOf.get(rules);
  if (!l) {
    l = { allowUsers: new Set(rules.allow.users), denyUsers: new Set(rules.deny.users), denyCounterparties: new Set(rules.deny.counterparties), denyCountries: new Set(rules.deny.countries) };
    listsOf.set(rules, l);
  }
  return l;
}

/** The user is on the allow list and no deny list names the request: scoring cannot decline it. */
export function isAllowListed(rules: Rules, req: FraudRequest): boolean {
  return lists(rules).allowUsers.has(req.userId) && denyReasons(rules, req).length === 0;
}

function denyReasons(rules: Rules, req: FraudRequest): string[] {
  const l = lists(rules);
  const reasons: string[] = [];
  if (l.denyUsers.has(req.userId)) reasons.push('deny_user');
  if (req.counterpartyId !== undefined && l.denyCounterparties.has(req.counterpartyId)) reasons.push('deny_counterparty');
  if ((req.ipCountry !== undefined && l.denyCountries.has(req.ipCountry)) || (req.cardCountry !== undefined && l.denyCountries.has(req.cardCountry))) reasons.push('deny_country');
  return reasons;
}

const VELOCITY: readonly (readonly [VelocityName, string])[] = [
  ['count1m', 'velocity_count_1m'],
  ['count1h', 'velocity_count_1h'],
  ['count24h', 'velocity_count_24h'],
  ['value1m', 'velocity_value_1m'],
  ['value1h', 'velocity_value_1h'],
  ['value24h', 'velocity_value_24h'],
];

const level = (value: number, l: { review?: number; decline?: number }): FraudOutcome =>
  l.decline !== undefined && value >= l.decline ? 'decline' : l.review !== undefined && value >= l.review ? 'review' : 'approve';

/**
 * The rules' decision on one request: a deny list declines (deny_user, deny_counterparty,
 * deny_country); else the allow list approves (allow_user); else each threshold that trips adds
 * its reason and the strictest outcome wins.
 */
export function applyRules(rules: Rules, req: FraudRequest, raw: RawSignals): RulesResult {
  const denied = denyReasons(rules, req);
  if (denied.length) return { outcome: 'decline', reasons: denied };
  if (lists(rules).allowUsers.has(req.userId)) return { outcome: 'approve', reasons: ['allow_user'] };

  const t = rules.thresholds;
  const amount = raw.amount;
  const outgoing = raw.kind !== 'topup';
  let outcome: FraudOutcome = 'approve';
  const reasons: string[] = [];
  const trip = (o: FraudOutcome, reason: string) => {
    if (o === 'approve') return;
    outcome = stricter(outcome, o);
    reasons.push(reason);
  };

  if (t.velocity) {
    for (const [name, reason] of VELOCITY) {
      const l = t.velocity[name];
      if (l) trip(level(raw[name], l), reason);
    }
  }
  const ncl = t.newCounterpartyLarge;
  if (ncl && outgoing && raw.newCounterparty && amount >= ncl.minAmountMinor) trip(ncl.outcome, 'new_counterparty_large');
  const cc = t.credentialChange;
  if (cc && raw.firstAfterCredentialChange && raw.msSinceCredentialChange !== null && raw.msSinceCredentialChange <= cc.withinMs && amount >= cc.minAmountMinor) trip(cc.outcome, 'credential_change');
  const ao = t.amountOutlier;
  if (ao && raw.historyCount >= ao.minHistory && amount >= ao.minAmountMinor && amount > raw.historyMean) {
    // all past amounts equal (std 0): any larger amount is an outlier
    const z = raw.historyStd > 0 ? (amount - raw.historyMean) / raw.historyStd : Infinity;
    if (z >= ao.zScore) trip(ao.outcome, 'amount_outlier');
  }
  const ya = t.youngAccount;
  if (ya && raw.accountAgeMs < ya.maxAgeMs && amount >= ya.minAmountMinor) trip(ya.outcome, 'young_account');
  const cm = t.countryMismatch;
  if (cm && raw.countryMismatch && amount >= cm.minAmountMinor) trip(cm.outcome, 'country_mismatch');
  const mp = t.mulePattern;
  if (mp && outgoing && raw.msSinceTopup !== null && raw.msSinceTopup <= mp.withinMs && raw.topupValue1h > 0 && amount >= mp.minShareOfTopups * raw.topupValue1h && amount >= mp.minAmountMinor) {
    trip(mp.outcome, 'mule_pattern');
  }
  const fi = t.fanIn;
  if (fi && raw.kind === 'transfer') trip(level(raw.counterpartyDistinctSenders1h, fi.distinctSenders1h), 'fan_in');
  return { outcome, reasons };
}

export interface RulesStore {
  /** the rules in force: never undefined, never a half-valid file */
  current(): Rules;
  /** checks the file now; true when new rules were taken */
  reload(): Promise<boolean>;
  close(): void;
}

export interface RulesStoreOptions {
  /** how often the file's mtime/size/inode are checked (the file is read only when they change) */
  pollMs?: number;
  log?: Pick<Logger, 'info' | 'warn' | 'error'>;
}

const signature = (s: Stats) => `${s.ino}:${s.size}:${s.mtimeMs}`;

/**
 * Rules from a file, polled for changes (polling rather than fs.watch: it also sees a file
 * replaced by rename, as config management tools do, and behaves the same on every platform).
 * Without a path, the shipped DEFAULT_RULES and no polling. A bad file at start throws: the
 * process should not start on rules nobody validated.
 */
export function createRulesStore(path: string | undefined, opts: RulesStoreOptions = {}): RulesStore {
  if (!path) return { current: () => DEFAULT_RULES, reload: async () => false, close: () => undefined };
  let rules = parseRules(JSON.parse(readFileSync(path, 'utf8')));
  let seen = signature(statSync(path));
  let failedSignature: string | undefined;
  let running: Promise<boolean> | undefined;

  const check = async (): Promise<boolean> => {
    let sig: string;
    try {
      sig = signature(await stat(path));
    } catch (err) {
      if (failedSignature !== 'missing') opts.log?.error({ err, path }, 'fraud rules file unreadable; keeping rules %s', rules.version);
      failedSignature = 'missing';
      return false;
    }
    if (sig === seen || sig === failedSignature) return false;
    try {
      const next = parseRules(JSON.parse(readFileSync(path, 'utf8')));
      const previous = rules.version;
      rules = next;
      seen = sig;
      failedSignature = undefined;
      opts.log?.info({ path, version: next.version, previous }, 'fraud rules reloaded');
      return true;
    } catch (err) {
      // logged once per bad version of the file, not on every poll
      failedSignature = sig;
      opts.log?.error({ err, path }, 'fraud rules file rejected; keeping rules %s', rules.version);
      return false;
    }
  };
  const reload = () => (running ??= check().finally(() => (running = undefined)));
  const timer = setInterval(() => void reload(), opts.pollMs ?? 1000);
  timer.unref();
  return { current: () => rules, reload, close: () => clearInterval(timer) };
}
