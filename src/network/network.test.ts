/** The payment-network simulator's own bounds (its card outcomes are tested through the API). */
import { describe, expect, it } from 'vitest';
import { createNetworkSimulator, TEST_CARDS } from './index.js';

describe('payment-network simulator', () => {
  it('forgets the oldest authorizations beyond its bound, by key and by reference, and still replays the ones it keeps', async () => {
    const sim = createNetworkSimulator({ maxRemembered: 2 });
    const card = { pan: TEST_CARDS.visa, expMonth: 12, expYear: 2030 };
    const refs: string[] = [];
    for (const key of ['a', 'b', 'c']) {
      const r = await sim.authorize({ card, amountMinor: 100n, currency: 'USD', idempotencyKey: key, capture: false });
      if (!r.approved) throw new Error('the visa test card approves');
      refs.push(r.ref);
    }
    expect(sim.authorizations).toBe(2);
    expect(sim.inspect(refs[0]!)).toBeUndefined();
    expect(sim.inspect(refs[2]!)).toMatchObject({ amountMinor: 100n, voided: false });
    expect(await sim.authorize({ card, amountMinor: 100n, currency: 'USD', idempotencyKey: 'c', capture: false })).toEqual({ approved: true, ref: refs[2] });
  });
});
