import { describe, expect, it } from 'vitest';
import { FEATURE_NAMES, toFeatures } from '../types.js';
import { createSignalTracker, type TrackedRequest } from './signals.js';

const T0 = Date.UTC(2025, 0, 6, 12);
const SEC = 1000;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

const req = (over: Partial<TrackedRequest>): TrackedRequest => ({
  userId: 'u1',
  kind: 'payment',
  amountMinor: 1000,
  at: T0,
  accountCreatedAt: T0 - 10 * DAY,
  counterpartyId: 'm1',
  ...over,
});
const feature = (name: (typeof FEATURE_NAMES)[number], f: Float64Array) => f[FEATURE_NAMES.indexOf(name)];

describe('simulated RawSignals', () => {
  it('counts the current request in each window and drops what left it', () => {
    const t = createSignalTracker();
    t.observe(req({ at: T0, amountMinor: 100 }));
    t.observe(req({ at: T0 + 30 * SEC, amountMinor: 200 }));
    const third = t.observe(req({ at: T0 + 60 * SEC, amountMinor: 400 }));
    // T0 is exactly one minute before: a window holds (now − 1 min, now]
    expect(third).toMatchObject({ count1m: 2, value1m: 600, count1h: 3, value1h: 700, count24h: 3, value24h: 700 });
    const later = t.observe(req({ at: T0 + 2 * HOUR, amountMinor: 800 }));
    expect(later).toMatchObject({ count1m: 1, value1m: 800, count1h: 1, value1h: 800, count24h: 4, value24h: 1500 });
    const nextDay = t.observe(req({ at: T0 + DAY + 90 * SEC, amountMinor: 1 }));
    expect(nextDay).toMatchObject({ count24h: 2, value24h: 801 });
  });

  it('describes the history before the request (count, mean, population standard deviation)', () => {
    const t = createSignalTracker();
    expect(t.observe(req({ amountMinor: 100 }))).toMatchObject({ historyCount: 0, historyMean: 0, historyStd: 0 });
    t.observe(req({ at: T0 + MIN, amountMinor: 200 }));
    const third = t.observe(req({ at: T0 + 2 * MIN, amountMinor: 300 }));
    expect(third.historyCount).toBe(2);
    expect(third.historyMean).toBe(150);
    expect(third.historyStd).toBeCloseTo(50, 10);
  });

  it('sees a top-up followed within the hour by a transfer of most of it (the mule pattern)', () => {
    const t = createSignalTracker();
    const topup = t.observe(req({ kind: 'topup', counterpartyId: undefined, amountMinor: 10_000, cardCountry: 'NG', ipCountry: 'DE' }));
    // the top-up itself has not completed: it is not in its own top-up signals
    expect(topup).toMatchObject({ msSinceTopup: null, topupValue1h: 0, newCounterparty: false, counterpartyDistinctSenders1h: 0, countryMismatch: true });
    const out = t.observe(req({ kind: 'transfer', counterpartyId: 'x1', at: T0 + 10 * MIN, amountMinor: 9000 }));
    expect(out).toMatchObject({ msSinceTopup: 10 * MIN, topupValue1h: 10_000, newCounterparty: true });
    expect(feature('mule_topup_then_out', toFeatures(out))).toBe(1);
    const small = t.observe(req({ kind: 'transfer', counterpartyId: 'x1', at: T0 + 20 * MIN, amountMinor: 1000 }));
    expect(feature('mule_topup_then_out', toFeatures(small))).toBe(0);
    const nextDay = t.observe(req({ at: T0 + 25 * HOUR }));
    expect(nextDay).toMatchObject({ msSinceTopup: null, topupValue1h: 0 });
  });

  it('marks a counterparty new only the first time the user pays it', () => {
    const t = createSignalTracker();
    expect(t.observe(req({ counterpartyId: 'm1' })).newCounterparty).toBe(true);
    expect(t.observe(req({ counterpartyId: 'm1', at: T0 + MIN })).newCounterparty).toBe(false);
    expect(t.observe(req({ counterpartyId: 'm1', userId: 'u2', at: T0 + 2 * MIN })).newCounterparty).toBe(true);
  });

  it('counts distinct senders to a recipient over the last hour, the current one included', () => {
    const t = createSignalTracker();
    const pay = (userId: string, at: number) => t.observe(req({ userId, kind: 'transfer', counterpartyId: 'c1', at })).counterpartyDistinctSenders1h;
    expect(pay('a', T0)).toBe(1);
    expect(pay('b', T0 + MIN)).toBe(2);
    expect(pay('b', T0 + 2 * MIN)).toBe(2);
    expect(pay('c', T0 + 3 * MIN)).toBe(3);
    expect(pay('d', T0 + HOUR + 30 * SEC)).toBe(3); // a left the hour; b, c and d remain
  });

  it('knows the first request after a credential change', () => {
    const t = createSignalTracker();
    const before = t.observe(req({}));
    expect(before).toMatchObject({ msSinceCredentialChange: null, firstAfterCredentialChange: false });
    t.credentialChanged('u1', T0 + HOUR);
    const first = t.observe(req({ at: T0 + HOUR + 5 * MIN }));
    expect(first).toMatchObject({ msSinceCredentialChange: 5 * MIN, firstAfterCredentialChange: true });
    const second = t.observe(req({ at: T0 + HOUR + 6 * MIN }));
    expect(second).toMatchObject({ msSinceCredentialChange: 6 * MIN, firstAfterCredentialChange: false });
  });

  it('flags a country mismatch only when both countries are known and differ', () => {
    const t = createSignalTracker();
    expect(t.observe(req({ cardCountry: 'DE', ipCountry: 'DE' })).countryMismatch).toBe(false);
    expect(t.observe(req({ cardCountry: 'DE' })).countryMismatch).toBe(false);
    expect(t.observe(req({ cardCountry: 'DE', ipCountry: 'FR' })).countryMismatch).toBe(true);
  });

  it('reports the account age at the request', () => {
    const t = createSignalTracker();
    expect(t.observe(req({ accountCreatedAt: T0 - 3 * DAY })).accountAgeMs).toBe(3 * DAY);
  });

  it('refuses requests out of time order', () => {
    const t = createSignalTracker();
    t.observe(req({ at: T0 }));
    expect(() => t.observe(req({ at: T0 - 1 }))).toThrow(/time order/);
  });
});
