/**
 * Property: transfers sent all at once between users of two clusters — within one cluster, across
 * (debit now, credit later through the outbox, the relay and the clearing consumer), the same
 * request twice with one Idempotency-Key — settle to exactly the balances their acknowledged
 * answers add up to, with every cluster's clearing account back at zero and reconcile clean.
 * PROPERTY_RUNS=50 for a longer hunt.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import { createMultiClusterTestPlatform, fund, idemKey, signUp, until, type TestPlatform, type TestUser } from '../test-support/platform.js';
import { startEventRoles } from '../events/roles.js';
import { shardOf } from '../shared/ids.js';
import { reconcile, formatReport } from '../ledger/reconcile.js';

let t: TestPlatform;
let roles: { stop(): Promise<void> };
beforeAll(async () => {
  t = await createMultiClusterTestPlatform(2);
  roles = startEventRoles(t.platform, ['relay', 'notify', 'workers']);
});
afterAll(async () => {
  await roles?.stop();
  await t?.close();
});

const FUNDS = 10_000;
const REGIONS = ['us-east', 'us-east', 'us-west', 'us-west'];
const Transfer = fc.record({ from: fc.nat(3), to: fc.nat(3), amount: fc.integer({ min: 1, max: 4_000 }) });

async function posted(users: TestUser[]): Promise<Record<string, bigint>> {
  const out: Record<string, bigint> = {};
  for (const u of users) {
    const [row] = await t.platform.db.forShard(shardOf(u.id)).sql`select (credits_posted - debits_posted)::bigint as posted from accounts where user_id = ${u.id} and kind = 'user'`;
    out[u.id] = row!.posted as bigint;
  }
  return out;
}

async function clearingNet(): Promise<bigint> {
  let net = 0n;
  for (const c of t.platform.db.clusters) {
    const [row] = await c.sql`select coalesce(sum(credits_posted - debits_posted), 0)::bigint as net from accounts where kind = 'clearing'`;
    net += row!.net as bigint;
  }
  return net;
}

describe('transfers between clusters under concurrency (property)', () => {
  it('settle to exactly what the acknowledged answers say, clearing at zero', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(Transfer, { minLength: 4, maxLength: 30 }), fc.array(fc.nat(), { maxLength: 5 }), async (transfers, duplicates) => {
        const users = await Promise.all(REGIONS.map((region) => signUp(t.app, { region })));
        expect(new Set(users.map((u) => t.platform.db.forShard(shardOf(u.id)).name)).size).toBe(2);
        for (const u of users) await fund(t.app, u, FUNDS);
        const keyed = transfers.map((x) => ({ ...x, key: idemKey() }));
        const all = [...keyed, ...duplicates.map((n) => keyed[n % keyed.length]!)];
        const answers: { from: number; to: number; key: string; res: LightMyRequestResponse }[] = await Promise.all(
          all.map(async (x) => ({ ...x, res: await t.app.inject({ method: 'POST', url: '/v1/transfers', headers: { ...users[x.from]!.auth, 'idempotency-key': x.key }, payload: { to: users[x.to]!.id, amount: x.amount, currency: 'USD' } }) })),
        );

        const expected: Record<string, bigint> = Object.fromEntries(users.map((u) => [u.id, BigInt(FUNDS)]));
        const moved = new Map<string, number>();
        for (const { from, to, key, res } of answers) {
          expect(res.statusCode, res.body).toBeLessThan(500);
          if (res.statusCode !== 201 || res.headers['idempotent-replayed'] === 'true') continue;
          moved.set(key, (moved.get(key) ?? 0) + 1);
          expected[users[from]!.id]! -= BigInt(res.json().amount);
          expected[users[to]!.id]! += BigInt(res.json().amount);
        }
        for (const [key, n] of moved) expect(n, `key ${key} moved money ${n} times`).toBe(1);
        // the credits on the other cluster land through the relay and the clearing consumer
        await until(async () => (await clearingNet()) === 0n, 15_000, 'every clearing account to settle at zero');
        expect(await posted(users)).toEqual(expected);
        const report = await reconcile(t.platform.db);
        expect(report.ok, formatReport(report)).toBe(true);
      }),
      { numRuns: Number(process.env.PROPERTY_RUNS ?? 8) },
    );
  });
});
