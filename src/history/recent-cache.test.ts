/**
 * The cached first history page is revised on every commit from the rows the commit wrote
 * (no reload): after any sequence of movements it must equal the page the database gives.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPlatform, fund, moneyPost, signUp, type TestPlatform } from '../test-support/platform.js';
import { historyPage, RECENT_ITEMS } from './service.js';
import { cacheKey } from '../cache/index.js';

let t: TestPlatform;
beforeAll(async () => {
  t = await createTestPlatform({ CACHE_L1_TTL_SECONDS: '600' });
});
afterAll(() => t?.close());

describe('the cached first history page', () => {
  it('equals the database page after every movement, without being reloaded', async () => {
    const [alice, bob] = [await signUp(t.app), await signUp(t.app)];
    const merchant = await signUp(t.app, { kind: 'merchant' });
    await fund(t.app, alice, 1_000_000);
    await fund(t.app, bob, 1_000_000);
    const sql = t.platform.db.clusters[0]!.sql;
    const payments: string[] = [];
    let seed = 42;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
    for (let step = 0; step < 130; step++) {
      const who = rand(2) ? alice : bob;
      const op = rand(4);
      if (op === 0 && payments.length) {
        await moneyPost(t.app, merchant, `/v1/payments/${payments.pop()}/capture`, { amount: 1 + rand(5) });
      } else if (op === 1) {
        const r = await moneyPost(t.app, who, '/v1/payments', { merchantId: merchant.id, amount: 10 + rand(50), currency: 'USD', capture: false });
        payments.push(r.json().id);
      } else {
        await moneyPost(t.app, who, '/v1/transfers', { to: (who === alice ? bob : alice).id, amount: 1 + rand(100), currency: 'USD' });
      }
      // the pages read before this movement are still cached (revised, not dropped) and exact
      for (const u of [alice, bob]) {
        if (step === 0) break;
        const cached = t.platform.cache.l1.get(cacheKey.recentTransactions(u.id));
        expect(cached, `step ${step}: still cached`).toBeDefined();
        const { version, ...page } = cached!.value as { version: bigint };
        expect(page, `step ${step}`).toEqual(await historyPage(sql, { userId: u.id, limit: RECENT_ITEMS }));
        const [v] = await sql`select sum(version)::bigint as v from accounts where user_id = ${u.id}`;
        expect(version, `step ${step}: version`).toBe(v!.v);
      }
      for (const u of [alice, bob]) await t.app.inject({ method: 'GET', url: '/v1/transactions', headers: u.auth });
    }
  });
});
