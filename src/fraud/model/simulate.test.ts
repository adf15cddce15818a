import { beforeAll, describe, expect, it } from 'vitest';
import { createRng, weightedPicker } from './random.js';
import { FRAUD_BEHAVIOURS, simulate, summarize, type SimulatedRow } from './simulate.js';

describe('the seeded random source', () => {
  it('repeats its sequence for a seed and differs between seeds', () => {
    const draw = (seed: number) => {
      const rng = createRng(seed);
      return Array.from({ length: 5 }, () => rng.next());
    };
    expect(draw(42)).toEqual(draw(42));
    expect(draw(42)).not.toEqual(draw(43));
  });

  it('keeps integers and picks within bounds and follows the weights', () => {
    const rng = createRng(1);
    const pick = weightedPicker(['a', 'b', 'c'], [0, 1, 3]);
    const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
    for (let i = 0; i < 4000; i++) {
      const n = rng.int(3, 5);
      expect(n >= 3 && n <= 5 && Number.isInteger(n)).toBe(true);
      counts[pick(rng)]++;
    }
    expect(counts.a).toBe(0);
    expect(counts.c / counts.b).toBeGreaterThan(2.5);
    expect(counts.c / counts.b).toBeLessThan(3.5);
  });
});

describe('wallet fraud simulate', () => {
  let rows: SimulatedRow[];
  beforeAll(() => {
    rows = simulate({ users: 600, days: 14, seed: 3, fraudShare: 0.1 });
  });

  it('produces the same dataset for the same seed and another for another seed', () => {
    const opts = { users: 80, days: 5, seed: 9, fraudShare: 0.1 };
    const a = simulate(opts);
    expect(simulate(opts)).toEqual(a);
    expect(simulate({ ...opts, seed: 10 })).not.toEqual(a);
  });

  it('labels every fraud behaviour as fraud and nothing else', () => {
    const s = summarize(rows);
    for (const b of FRAUD_BEHAVIOURS) expect(s.byBehaviour[b]?.fraud, b).toBeGreaterThan(0);
    for (const [name, b] of Object.entries(s.byBehaviour)) {
      if ((FRAUD_BEHAVIOURS as readonly string[]).includes(name)) expect(b.fraud, name).toBe(b.rows);
      else expect(b.fraud, name).toBe(0);
    }
    for (const normal of ['merchant', 'p2p', 'salary_topup', 'large_purchase', 'topup', 'group_collection']) expect(s.byBehaviour[normal]?.rows, normal).toBeGreaterThan(0);
    // fraud is the minority, as it is in production
    expect(s.fraud / s.rows).toBeGreaterThan(0.005);
    expect(s.fraud / s.rows).toBeLessThan(0.1);
  });

  it('splits by user, so no user is in both the training and the held-out set', () => {
    const splitOf = new Map<string, string>();
    for (const r of rows) {
      expect(splitOf.get(r.userId) ?? r.split).toBe(r.split);
      splitOf.set(r.userId, r.split);
    }
    const s = summarize(rows);
    expect(s.heldout.rows / s.rows).toBeGreaterThan(0.15);
    expect(s.heldout.rows / s.rows).toBeLessThan(0.35);
    expect(s.heldout.fraud).toBeGreaterThan(0);
  });

  it('emits requests in time order with consistent signals', () => {
    const broken = rows.filter(({ raw }, i) => {
      const ordered = i === 0 || rows[i - 1].at <= rows[i].at;
      const windows = raw.count1m >= 1 && raw.count1m <= raw.count1h && raw.count1h <= raw.count24h && raw.value1m >= raw.amount && raw.value24h >= raw.value1h;
      const amount = Number.isInteger(raw.amount) && raw.amount > 0;
      return !(ordered && windows && amount && (raw.kind !== 'topup' || !raw.newCounterparty));
    });
    expect(broken).toEqual([]);
  });

  it('makes the classes overlap: legitimate requests that look odd exist', () => {
    const legit = rows.filter((r) => r.label === 0);
    expect(legit.some((r) => r.raw.countryMismatch)).toBe(true); // travellers, expats
    expect(legit.some((r) => r.raw.count1m >= 3)).toBe(true); // bill splits, chunked top-ups
    expect(legit.some((r) => r.raw.kind !== 'topup' && r.raw.msSinceTopup !== null && r.raw.amount >= 0.8 * r.raw.topupValue1h && r.raw.topupValue1h > 0)).toBe(true);
    expect(legit.some((r) => r.raw.counterpartyDistinctSenders1h >= 5 && r.raw.kind === 'transfer')).toBe(true); // club dues
  });

  it('refuses options outside its limits', () => {
    expect(() => simulate({ users: 5, days: 5, seed: 1, fraudShare: 0.1 })).toThrow(RangeError);
    expect(() => simulate({ users: 100, days: 500, seed: 1, fraudShare: 0.1 })).toThrow(RangeError);
    expect(() => simulate({ users: 100, days: 5, seed: 1, fraudShare: 0.9 })).toThrow(RangeError);
  });
});
