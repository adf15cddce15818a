/**
 * The scorer on crafted sequences of requests: each feature reaches the model's vector and its
 * rule, and the rules and the model combine into one decision. A stub model records the
 * features it is given; the velocity store is the in-process one (velocity.test.ts shows Redis
 * answers the same).
 */
import { describe, expect, it, vi } from 'vitest';
import { createFraudScorer, decide, fallbackDecision, toRawSignals } from './scorer.js';
import { createMemoryVelocityStore, type VelocityStore } from './velocity.js';
import { DEFAULT_RULES, parseRules, type Rules, type RulesStore } from './rules.js';
import type { ContextLoader, UserContext } from './context.js';
import { FEATURE_NAMES, type FeatureName, type FeatureVector, type FraudKind, type FraudModel, type FraudRequest } from './types.js';

const T0 = Date.UTC(2030, 5, 1);
const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
let seq = 0;

function request(o: { user?: string; t?: number; amount?: number; kind?: FraudKind; to?: string; ip?: string; card?: string; pm?: string } = {}): FraudRequest & { paymentMethodId?: string } {
  const kind = o.kind ?? 'transfer';
  return {
    requestId: `req-${seq++}`,
    kind,
    userId: o.user ?? 'usr_alice',
    amountMinor: BigInt(o.amount ?? 1_000),
    currency: 'USD',
    counterpartyId: kind === 'topup' ? undefined : (o.to ?? 'usr_bob'),
    ipCountry: o.ip,
    cardCountry: o.card,
    paymentMethodId: o.pm,
    at: new Date(T0 + (o.t ?? 0)),
  };
}

/** a model that answers `score` and records every feature vector it sees */
function stubModel(score: number | ((f: FeatureVector) => number) = 0.01) {
  const seen: FeatureVector[] = [];
  const model: FraudModel = {
    version: 'stub-1',
    predict(f) {
      seen.push(Float64Array.from(f));
      return typeof score === 'number' ? score : score(f);
    },
    explain: (_f, top = 3) =>
      (
        [
          { feature: 'new_counterparty', contribution: 2 },
          { feature: 'amount_z', contribution: 1 },
          { feature: 'log_amount', contribution: -0.5 },
        ] as { feature: FeatureName; contribution: number }[]
      ).slice(0, top),
  };
  const feature = (name: FeatureName, i = seen.length - 1) => seen[i]![FEATURE_NAMES.indexOf(name)];
  return { model, seen, feature };
}

const staticRules = (rules: Rules = DEFAULT_RULES): RulesStore => ({ current: () => rules, reload: async () => false, close: () => undefined });

function setup(o: { score?: number | ((f: FeatureVector) => number); ctx?: Partial<UserContext>; rules?: RulesStore; velocity?: VelocityStore } = {}) {
  const ctx: UserContext = { createdAtMs: T0 - 400 * DAY, credentialChangedAtMs: null, cardCountries: new Map(), ...o.ctx };
  const context: ContextLoader = { load: async () => ctx, invalidate: () => undefined };
  const { model, seen, feature } = stubModel(o.score);
  const velocity = o.velocity ?? createMemoryVelocityStore();
  const scorer = createFraudScorer({ velocity, context, rules: o.rules ?? staticRules(), model });
  return { scorer, ctx, seen, feature, velocity };
}

describe('features and rules on crafted sequences', () => {
  it('velocity: the windows reach the features, and the fifth request in a minute is reviewed', async () => {
    const { scorer, feature } = setup();
    for (let i = 0; i < 4; i++) expect((await scorer.score(request({ t: i * 1000 }))).outcome).toBe('approve');
    const fifth = await scorer.score(request({ t: 5_000, amount: 2_000 }));
    expect(fifth).toMatchObject({ outcome: 'review', reasons: ['velocity_count_1m'] });
    expect(feature('log_count_1m')).toBeCloseTo(Math.log1p(5));
    expect(feature('log_value_1h')).toBeCloseTo(Math.log10(1 + 6_000));
    // a minute later the minute window holds only the new request
    await scorer.score(request({ t: 65_001 }));
    expect(feature('log_count_1m')).toBeCloseTo(Math.log1p(1));
    expect(feature('log_count_1h')).toBeCloseTo(Math.log1p(6));
  });

  it('new counterparty: flagged until a transfer to it completes; a large first transfer is reviewed', async () => {
    const { scorer, feature } = setup();
    const first = request({ to: 'usr_carol', amount: 150_000 });
    expect(await scorer.score(first)).toMatchObject({ outcome: 'review', reasons: ['new_counterparty_large'] });
    expect(feature('new_counterparty')).toBe(1);
    await scorer.completed(first);
    expect((await scorer.score(request({ t: MIN, to: 'usr_carol', amount: 150_000 }))).reasons).not.toContain('new_counterparty_large');
    expect(feature('new_counterparty')).toBe(0);
  });

  it('credential change: the first request after it is flagged, the next one is not', async () => {
    const { scorer, feature } = setup({ ctx: { credentialChangedAtMs: T0 - HOUR } });
    await scorer.score(request({ t: -2 * HOUR })); // before the change
    const first = await scorer.score(request({ amount: 25_000 }));
    expect(first).toMatchObject({ outcome: 'review', reasons: ['credential_change'] });
    expect([feature('first_after_credential_change'), feature('credential_change_24h')]).toEqual([1, 1]);
    const second = await scorer.score(request({ t: MIN, amount: 25_000 }));
    expect(second.reasons).toEqual([]);
    expect([feature('first_after_credential_change'), feature('credential_change_24h')]).toEqual([0, 1]);
    await scorer.score(request({ t: DAY + 1 }));
    expect(feature('credential_change_24h')).toBe(0);
  });

  it("amount against the user's history: an amount far above the completed ones is an outlier", async () => {
    const { scorer, feature } = setup();
    for (const [i, amount] of [900, 1_100, 1_000, 950, 1_050].entries()) {
      const r = request({ t: i * HOUR, amount });
      await scorer.score(r);
      await scorer.completed(r);
    }
    const usual = await scorer.score(request({ t: 6 * HOUR, amount: 1_000 }));
    expect(usual.reasons).toEqual([]);
    expect(feature('no_history')).toBe(0);
    expect(feature('amount_z')).toBeCloseTo(0);
    const outlier = await scorer.score(request({ t: 7 * HOUR, amount: 20_000 }));
    expect(outlier).toMatchObject({ outcome: 'review', reasons: ['amount_outlier'] });
    expect(feature('amount_z')).toBe(10); // clipped
  });

  it('account age: a large amount from an account opened an hour ago is reviewed', async () => {
    const { scorer, feature } = setup({ ctx: { createdAtMs: T0 - HOUR } });
    expect(await scorer.score(request({ kind: 'topup', amount: 60_000 }))).toMatchObject({ outcome: 'review', reasons: ['young_account'] });
    expect(feature('account_age_days_log')).toBeCloseTo(Math.log1p(1 / 24));
  });

  it("country mismatch: the card's BIN country (from the request or the user's cards) against the IP country", async () => {
    const { scorer, feature } = setup({ ctx: { cardCountries: new Map([['pm_gb', 'GB'], ['pm_us', 'US'], ['pm_unknown', null]]) } });
    expect(await scorer.score(request({ kind: 'topup', pm: 'pm_gb', ip: 'US' }))).toMatchObject({ outcome: 'review', reasons: ['country_mismatch'] });
    expect(feature('country_mismatch')).toBe(1);
    expect((await scorer.score(request({ t: MIN, kind: 'topup', pm: 'pm_us', ip: 'US' }))).reasons).toEqual([]);
    expect(feature('country_mismatch')).toBe(0);
    expect((await scorer.score(request({ t: 2 * MIN, kind: 'topup', pm: 'pm_unknown', ip: 'US' }))).reasons).toEqual([]);
    expect((await scorer.score(request({ t: 3 * MIN, kind: 'topup', pm: 'pm_gb' }))).reasons).toEqual([]); // IP country unknown
    expect((await scorer.score(request({ t: 4 * MIN, kind: 'payment', card: 'DE', ip: 'US' }))).reasons).toEqual(['country_mismatch']);
  });

  it('mule pattern: top-ups followed within the hour by a transfer out of most of them', async () => {
    const { scorer, feature } = setup();
    for (const [t, amount] of [[0, 30_000], [5 * MIN, 20_000]] as const) {
      const topup = request({ kind: 'topup', t, amount });
      await scorer.score(topup);
      await scorer.completed(topup);
    }
    const out = await scorer.score(request({ t: 15 * MIN, amount: 45_000, to: 'usr_bob' }));
    expect(out.reasons).toContain('mule_pattern');
    expect(feature('mule_topup_then_out')).toBe(1);
    await scorer.score(request({ t: 3 * HOUR, amount: 45_000 }));
    expect(feature('mule_topup_then_out')).toBe(0);
  });

  it('fan-in: many senders to one recipient within the hour', async () => {
    const { scorer, feature } = setup();
    const senders = Array.from({ length: 10 }, (_, i) => `usr_sender${i}`);
    let last;
    for (const [i, user] of senders.entries()) last = await scorer.score(request({ user, t: i * MIN, to: 'usr_hub' }));
    expect(last).toMatchObject({ outcome: 'review', reasons: ['fan_in'] });
    expect(feature('fan_in_log')).toBeCloseTo(Math.log1p(9));
  });
});

describe('combining rules and the model', () => {
  it('declines above the model decline threshold, with the features that raised the score', async () => {
    const { scorer } = setup({ score: 0.95 });
    expect(await scorer.score(request())).toEqual({
      outcome: 'decline',
      score: 0.95,
      reasons: ['model_high', 'model:new_counterparty', 'model:amount_z'],
      rulesVersion: 'rules-v1',
      modelVersion: 'stub-1',
    });
  });

  it('reviews between the thresholds; approves below them with no model reasons', async () => {
    expect(await setup({ score: 0.6 }).scorer.score(request())).toMatchObject({ outcome: 'review', reasons: ['model_high', 'model:new_counterparty', 'model:amount_z'] });
    expect(await setup({ score: 0.49 }).scorer.score(request())).toMatchObject({ outcome: 'approve', reasons: [], score: 0.49 });
  });

  it('takes the stricter of the two: a rule decline stands against a low score, and reasons add up', async () => {
    const { scorer } = setup({ score: 0.6 });
    for (let i = 0; i < 11; i++) await scorer.score(request({ t: i }));
    expect(await scorer.score(request({ t: 20 }))).toMatchObject({ outcome: 'decline', reasons: ['velocity_count_1m', 'model_high', 'model:new_counterparty', 'model:amount_z'] });
  });

  it('approves an allow-listed user whatever the model says; a deny list declines whatever it says', async () => {
    const lists = parseRules({ ...structuredClone(DEFAULT_RULES), version: 'lists', allow: { users: ['usr_alice'] }, deny: { users: [], counterparties: ['usr_mule'], countries: [] } });
    const high = setup({ score: 0.99, rules: staticRules(lists) });
    expect(await high.scorer.score(request())).toMatchObject({ outcome: 'approve', reasons: ['allow_user'], score: 0.99, rulesVersion: 'lists' });
    const low = setup({ score: 0, rules: staticRules(lists) });
    expect(await low.scorer.score(request({ to: 'usr_mule' }))).toMatchObject({ outcome: 'decline', reasons: ['deny_counterparty'] });
  });

  it('uses the rules in force at each request (a reloaded file applies to the next one)', async () => {
    let rules = DEFAULT_RULES;
    const { scorer } = setup({ rules: { current: () => rules, reload: async () => false, close: () => undefined } });
    expect((await scorer.score(request())).outcome).toBe('approve');
    rules = parseRules({ ...structuredClone(DEFAULT_RULES), version: 'v2', deny: { users: ['usr_alice'], counterparties: [], countries: [] } });
    expect(await scorer.score(request({ t: 1 }))).toMatchObject({ outcome: 'decline', rulesVersion: 'v2' });
  });

  it('fails loudly on a model score that is not a probability, and when a store fails (the fail policy then decides)', async () => {
    await expect(setup({ score: NaN }).scorer.score(request())).rejects.toThrow(/returned NaN/);
    const down: VelocityStore = { observe: () => Promise.reject(new Error('redis down')), completed: async () => undefined, close: async () => undefined };
    await expect(setup({ velocity: down }).scorer.score(request())).rejects.toThrow('redis down');
  });

  it('reports each decision and its latency to the metrics', async () => {
    const decision = vi.fn();
    const { model } = stubModel();
    const context: ContextLoader = { load: async () => ({ createdAtMs: 0, credentialChangedAtMs: null, cardCountries: new Map() }), invalidate: () => undefined };
    const scorer = createFraudScorer({ velocity: createMemoryVelocityStore(), context, rules: staticRules(), model, metrics: { decision } });
    const d = await scorer.score(request());
    expect(decision).toHaveBeenCalledWith(d, expect.any(Number));
    expect(decision.mock.calls[0]![1]).toBeGreaterThanOrEqual(0);
  });
});

describe('the fail policy', () => {
  it('approves below the configured amount and applies the configured outcome above it', () => {
    const below = DEFAULT_RULES.policy.onFailure.approveBelowMinor;
    expect(fallbackDecision(DEFAULT_RULES, request({ amount: below - 1 }), 'timeout')).toEqual({ outcome: 'approve', score: 0, reasons: ['fallback_timeout'], rulesVersion: 'rules-v1', modelVersion: 'none', fallback: 'timeout' });
    expect(fallbackDecision(DEFAULT_RULES, request({ amount: below }), 'unavailable', 'm1')).toMatchObject({ outcome: 'review', reasons: ['fallback_unavailable'], modelVersion: 'm1' });
  });
});

describe('the pure part', () => {
  it('builds RawSignals from velocity and context without surprises at the edges', () => {
    const r = request({ t: 0 });
    const v = { count1m: 1, count1h: 1, count24h: 1, value1m: 1, value1h: 1, value24h: 1, newCounterparty: true, historyCount: 0, historyMean: 0, historyStd: 0, msSinceTopup: null, topupValue1h: 0, counterpartyDistinctSenders1h: 1, amount: 1_000, kind: 'transfer' as const, previousRequestAtMs: null };
    // a change "in the future" (clock skew between nodes) counts as just now
    expect(toRawSignals(r, v, { createdAtMs: T0 + 5, credentialChangedAtMs: T0 + 5, cardCountries: new Map() })).toMatchObject({ msSinceCredentialChange: 0, firstAfterCredentialChange: true, accountAgeMs: 0 });
    expect(toRawSignals(r, { ...v, previousRequestAtMs: T0 + 6 }, { createdAtMs: 0, credentialChangedAtMs: T0 + 5, cardCountries: new Map() }).firstAfterCredentialChange).toBe(false);
    expect(toRawSignals(r, v, { createdAtMs: 0, credentialChangedAtMs: null, cardCountries: new Map() })).toMatchObject({ msSinceCredentialChange: null, firstAfterCredentialChange: false });
  });

  it('decides without allocating a feature vector when given one to reuse', () => {
    const { model } = stubModel(0.2);
    const scratch = new Float64Array(FEATURE_NAMES.length);
    const raw = toRawSignals(request(), { count1m: 1, count1h: 1, count24h: 1, value1m: 1_000, value1h: 1_000, value24h: 1_000, newCounterparty: false, historyCount: 0, historyMean: 0, historyStd: 0, msSinceTopup: null, topupValue1h: 0, counterpartyDistinctSenders1h: 1, amount: 1_000, kind: 'transfer', previousRequestAtMs: null }, { createdAtMs: 0, credentialChangedAtMs: null, cardCountries: new Map() });
    expect(decide(DEFAULT_RULES, model, request(), raw, scratch)).toMatchObject({ outcome: 'approve', score: 0.2 });
    expect(scratch[FEATURE_NAMES.indexOf('log_amount')]).toBeCloseTo(Math.log10(1_001));
  });
});
