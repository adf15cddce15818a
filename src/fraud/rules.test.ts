/**
 * Each rule on crafted signals, the allow and deny lists, validation, and the rules file
 * reloaded without a restart (a broken file keeps the rules in force).
 */
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { applyRules, createRulesStore, DEFAULT_RULES, parseRules, type Rules } from './rules.js';
import type { FraudKind, FraudRequest, RawSignals } from './types.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function request(o: Partial<FraudRequest> = {}): FraudRequest {
  return { requestId: 'r1', kind: 'transfer', userId: 'usr_alice', amountMinor: 1_000n, currency: 'USD', counterpartyId: 'usr_bob', at: new Date(), ...o };
}

/** an unremarkable request: an old account sending to a known friend (no history, so amounts are never outliers) */
function signals(o: Partial<RawSignals> = {}): RawSignals {
  const amount = o.amount ?? 1_000;
  return {
    count1m: 1, count1h: 1, count24h: 2, value1m: amount, value1h: amount, value24h: 2 * amount,
    newCounterparty: false, msSinceCredentialChange: null, firstAfterCredentialChange: false,
    historyCount: 0, historyMean: 0, historyStd: 0, accountAgeMs: 400 * DAY, countryMismatch: false,
    msSinceTopup: null, topupValue1h: 0, counterpartyDistinctSenders1h: 1, amount, kind: 'transfer' as FraudKind,
    ...o,
  };
}

const rule = (raw: Partial<RawSignals>, req: Partial<FraudRequest> = {}, rules: Rules = DEFAULT_RULES) => applyRules(rules, request(req), signals(raw));

describe('rules on crafted signals', () => {
  it('approves an unremarkable request with no reasons', () => {
    expect(rule({})).toEqual({ outcome: 'approve', reasons: [] });
  });

  const v = DEFAULT_RULES.thresholds.velocity!;
  it.each([
    ['count1m', 'velocity_count_1m', v.count1m!],
    ['count1h', 'velocity_count_1h', v.count1h!],
    ['count24h', 'velocity_count_24h', v.count24h!],
    ['value1m', 'velocity_value_1m', v.value1m!],
    ['value1h', 'velocity_value_1h', v.value1h!],
    ['value24h', 'velocity_value_24h', v.value24h!],
  ] as const)('%s: reviews from its review level and declines from its decline level (%s)', (field, reason, levels) => {
    expect(rule({ [field]: levels.review! - 1 })).toEqual({ outcome: 'approve', reasons: [] });
    expect(rule({ [field]: levels.review! })).toEqual({ outcome: 'review', reasons: [reason] });
    expect(rule({ [field]: levels.decline! })).toEqual({ outcome: 'decline', reasons: [reason] });
  });

  it('reviews a large amount to a new counterparty, not a small one, not a top-up', () => {
    expect(rule({ newCounterparty: true, amount: 100_000 })).toEqual({ outcome: 'review', reasons: ['new_counterparty_large'] });
    expect(rule({ newCounterparty: true, amount: 99_999 }).reasons).toEqual([]);
    expect(rule({ newCounterparty: true, amount: 100_000, kind: 'topup' }, { kind: 'topup' }).reasons).toEqual([]);
  });

  it('reviews the first sizeable request within a day of a credential change', () => {
    const changed = { msSinceCredentialChange: HOUR, firstAfterCredentialChange: true, amount: 20_000 };
    expect(rule(changed)).toEqual({ outcome: 'review', reasons: ['credential_change'] });
    expect(rule({ ...changed, firstAfterCredentialChange: false }).reasons).toEqual([]);
    expect(rule({ ...changed, msSinceCredentialChange: DAY + 1 }).reasons).toEqual([]);
    expect(rule({ ...changed, amount: 19_999 }).reasons).toEqual([]);
  });

  it("reviews an amount far above the user's own history, given enough history", () => {
    const history = { historyCount: 10, historyMean: 2_000, historyStd: 1_000 };
    expect(rule({ ...history, amount: 10_000 })).toEqual({ outcome: 'review', reasons: ['amount_outlier'] }); // z = 8
    expect(rule({ ...history, amount: 5_999 }).reasons).toEqual([]); // z < 4
    expect(rule({ ...history, historyStd: 100, amount: 9_999 }).reasons).toEqual([]); // z = 80 but below the minimum amount
    expect(rule({ ...history, historyCount: 4, amount: 50_000 }).reasons).toEqual([]); // too little history
    expect(rule({ historyCount: 10, historyMean: 1_000, historyStd: 0, amount: 10_000 }).reasons).toEqual(['amount_outlier']); // all past amounts equal
  });

  it('reviews a large amount from an account younger than a day', () => {
    expect(rule({ accountAgeMs: HOUR, amount: 50_000 })).toEqual({ outcome: 'review', reasons: ['young_account'] });
    expect(rule({ accountAgeMs: HOUR, amount: 49_999 }).reasons).toEqual([]);
    expect(rule({ accountAgeMs: DAY, amount: 50_000 }).reasons).toEqual([]);
  });

  it('reviews a card from another country than the client', () => {
    expect(rule({ countryMismatch: true })).toEqual({ outcome: 'review', reasons: ['country_mismatch'] });
  });

  it('reviews a transfer out soon after top-ups that takes most of them (mule pattern)', () => {
    const mule = { msSinceTopup: 10 * 60_000, topupValue1h: 50_000, amount: 45_000, historyMean: 45_000 };
    expect(rule(mule)).toEqual({ outcome: 'review', reasons: ['mule_pattern'] });
    expect(rule({ ...mule, amount: 39_999 }).reasons).toEqual([]); // less than 80 % of the top-ups
    expect(rule({ ...mule, msSinceTopup: HOUR + 1 }).reasons).toEqual([]);
    expect(rule({ ...mule, kind: 'topup' }, { kind: 'topup' }).reasons).toEqual([]);
    expect(rule({ ...mule, kind: 'payment' }, { kind: 'payment' }).reasons).toEqual(['mule_pattern']);
  });

  it('reviews and then declines many senders to one recipient (fan-in), for transfers only', () => {
    const { review, decline } = DEFAULT_RULES.thresholds.fanIn!.distinctSenders1h;
    expect(rule({ counterpartyDistinctSenders1h: review! })).toEqual({ outcome: 'review', reasons: ['fan_in'] });
    expect(rule({ counterpartyDistinctSenders1h: decline! })).toEqual({ outcome: 'decline', reasons: ['fan_in'] });
    // merchants receive from many payers: no fan-in rule for payments
    expect(rule({ counterpartyDistinctSenders1h: decline!, kind: 'payment' }, { kind: 'payment' }).reasons).toEqual([]);
  });

  it('keeps every reason and takes the strictest outcome', () => {
    expect(rule({ countryMismatch: true, count1m: 50, accountAgeMs: HOUR, amount: 60_000 })).toEqual({
      outcome: 'decline',
      reasons: ['velocity_count_1m', 'young_account', 'country_mismatch'],
    });
  });
});

describe('allow and deny lists', () => {
  const lists = parseRules({
    ...structuredClone(DEFAULT_RULES),
    allow: { users: ['usr_trusted'] },
    deny: { users: ['usr_banned'], counterparties: ['usr_mule'], countries: ['KP'] },
  });

  it('declines a denied user, counterparty or country, before anything else', () => {
    expect(rule({}, { userId: 'usr_banned' }, lists)).toEqual({ outcome: 'decline', reasons: ['deny_user'] });
    expect(rule({}, { counterpartyId: 'usr_mule' }, lists)).toEqual({ outcome: 'decline', reasons: ['deny_counterparty'] });
    expect(rule({}, { ipCountry: 'KP' }, lists)).toEqual({ outcome: 'decline', reasons: ['deny_country'] });
    expect(rule({}, { kind: 'topup', counterpartyId: undefined, cardCountry: 'KP' }, lists)).toEqual({ outcome: 'decline', reasons: ['deny_country'] });
  });

  it('approves an allowed user whatever the thresholds say, but not past a deny list', () => {
    expect(rule({ count1m: 1_000, countryMismatch: true }, { userId: 'usr_trusted' }, lists)).toEqual({ outcome: 'approve', reasons: ['allow_user'] });
    expect(rule({}, { userId: 'usr_trusted', counterpartyId: 'usr_mule' }, lists)).toEqual({ outcome: 'decline', reasons: ['deny_counterparty'] });
  });
});

describe('validation', () => {
  it('ships valid, frozen default rules', () => {
    expect(DEFAULT_RULES.version).toBe('rules-v1');
    expect(Object.isFrozen(DEFAULT_RULES.thresholds)).toBe(true);
  });

  it('rejects unknown keys, missing fields, bad values and review above decline', () => {
    const base = () => structuredClone(DEFAULT_RULES) as unknown as Record<string, any>;
    const typo = base();
    typo.thresholds.velocity.count1min = { review: 1 };
    expect(() => parseRules(typo)).toThrow(/invalid fraud rules at \/thresholds\/velocity/);
    const missing = base();
    delete missing.version;
    expect(() => parseRules(missing)).toThrow(/invalid fraud rules/);
    const country = base();
    country.deny.countries = ['usa'];
    expect(() => parseRules(country)).toThrow(/\/deny\/countries\/0/);
    const inverted = base();
    inverted.model = { review: 0.9, decline: 0.5 };
    expect(() => parseRules(inverted)).toThrow(/model: review \(0.9\) above decline \(0.5\)/);
  });

  it('turns a rule off when it is left out of the file', () => {
    const raw = structuredClone(DEFAULT_RULES) as unknown as Record<string, any>;
    delete raw.thresholds.countryMismatch;
    expect(rule({ countryMismatch: true }, {}, parseRules(raw)).reasons).toEqual([]);
  });
});

describe('the rules file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fraud-rules-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const shipped = readFileSync(new URL('./rules-v1.json', import.meta.url), 'utf8');
  const withVersion = (version: string, o: (r: Record<string, any>) => void = () => undefined) => {
    const r = JSON.parse(shipped);
    r.version = version;
    o(r);
    return JSON.stringify(r);
  };
  const until = async (cond: () => boolean, ms = 3_000) => {
    const deadline = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 10));
    }
  };

  it('is reloaded without a restart when it changes, also when replaced by rename', async () => {
    const path = join(dir, 'reload.json');
    writeFileSync(path, withVersion('v1'));
    const log = { info: vi.fn(), warn: vi.fn(), error: vi.fn() };
    const store = createRulesStore(path, { pollMs: 20, log });
    try {
      expect(store.current().version).toBe('v1');
      writeFileSync(path, withVersion('v2', (r) => (r.deny.users = ['usr_alice'])));
      await until(() => store.current().version === 'v2');
      expect(rule({}, {}, store.current())).toEqual({ outcome: 'decline', reasons: ['deny_user'] });
      writeFileSync(join(dir, 'next.tmp'), withVersion('v3'));
      renameSync(join(dir, 'next.tmp'), path);
      await until(() => store.current().version === 'v3');
      expect(log.info).toHaveBeenCalledWith(expect.objectContaining({ version: 'v3', previous: 'v2' }), 'fraud rules reloaded');
    } finally {
      store.close();
    }
  });

  it('keeps the rules in force when the new file is broken or invalid, and logs it once', async () => {
    const path = join(dir, 'broken.json');
    writeFileSync(path, withVersion('good'));
    const log = { info: vi.fn(), warn: vi.fn(), error: vi.fn() };
    const store = createRulesStore(path, { pollMs: 10_000, log });
    try {
      writeFileSync(path, '{ "version": "half-writ');
      expect(await store.reload()).toBe(false);
      expect(await store.reload()).toBe(false);
      expect(store.current().version).toBe('good');
      expect(log.error).toHaveBeenCalledTimes(1);
      writeFileSync(path, withVersion('invalid', (r) => (r.model.decline = 7)));
      expect(await store.reload()).toBe(false);
      expect(store.current().version).toBe('good');
      expect(String(log.error.mock.calls[1]![0].err)).toMatch(/\/model\/decline/);
      rmSync(path);
      expect(await store.reload()).toBe(false);
      expect(store.current().version).toBe('good');
      writeFileSync(path, withVersion('fixed'));
      expect(await store.reload()).toBe(true);
      expect(store.current().version).toBe('fixed');
    } finally {
      store.close();
    }
  });

  it('refuses to start on a broken file, and serves the shipped rules without one', () => {
    const path = join(dir, 'bad-at-start.json');
    writeFileSync(path, '{}');
    expect(() => createRulesStore(path)).toThrow(/invalid fraud rules/);
    expect(createRulesStore(undefined).current()).toBe(DEFAULT_RULES);
  });
});
