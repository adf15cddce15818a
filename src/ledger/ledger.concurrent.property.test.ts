/**
 * Property: money operations sent all at once, so that they meet in the same ledger batches —
 * transfers out of one wallet, a capture racing a void of the same payment, refunds racing the
 * capture, the same request twice with one Idempotency-Key — leave exactly the balances their
 * acknowledged answers add up to. Every 2xx is one movement (a replay is none), nothing
 * unacknowledged moved, a payment is captured or voided but never both, its refunds never
 * exceed its capture, and the books reconcile. PROPERTY_RUNS=150 for a longer hunt (~45 s).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import { createTestPlatform, fund, idemKey, signUp, type TestPlatform, type TestUser } from '../test-support/platform.js';
import { reconcile, formatReport } from './reconcile.js';

let t: TestPlatform;
beforeAll(async () => {
  t = await createTestPlatform();
});
afterAll(() => t?.close());

const FUNDS = 10_000;
const amount = fc.integer({ min: 1, max: 4_000 });
const who = fc.integer({ min: 0, max: 2 });
const payment = fc.integer({ min: 0, max: 2 });
const partial = fc.option(fc.integer({ min: 1, max: 3_000 }), { nil: undefined });
const Op = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('transfer' as const), from: who, to: who, amount }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('pay' as const), user: who, amount, capture: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('capture' as const), payment, amount: partial }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('void' as const), payment }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('refund' as const), payment, amount: partial }) },
);
type Op = typeof Op extends fc.Arbitrary<infer T> ? T : never;

interface Sent {
  op: Op;
  key: string;
  res: LightMyRequestResponse;
}

async function postedBalances(users: TestUser[]): Promise<Map<string, bigint>> {
  const sql = t.platform.db.clusters[0]!.sql;
  const rows = await sql`select user_id, (credits_posted - debits_posted)::bigint as posted from accounts where user_id = any(${users.map((u) => u.id)}::text[])`;
  return new Map(rows.map((r) => [r.user_id as string, r.posted as bigint]));
}

describe('ledger under concurrent requests (property)', () => {
  it('moves exactly what the acknowledged answers say, whatever meets in one batch', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(amount, { minLength: 3, maxLength: 3 }),
        fc.array(Op, { minLength: 5, maxLength: 30 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        async (authorized, ops, duplicates) => {
          const users = [await signUp(t.app), await signUp(t.app), await signUp(t.app)];
          const merchant = await signUp(t.app, { kind: 'merchant' });
          for (const u of users) await fund(t.app, u, FUNDS);
          const post = (user: TestUser, url: string, body: unknown, key: string) => t.app.inject({ method: 'POST', url, headers: { ...user.auth, 'idempotency-key': key }, ...(body === undefined ? {} : { payload: body as object }) });
          // three authorizations to race over: holds, no money moved yet
          const payments: { id: string; payer: number }[] = [];
          for (let i = 0; i < 3; i++) {
            const r = await post(users[i]!, '/v1/payments', { merchantId: merchant.id, amount: authorized[i], currency: 'USD', capture: false }, idemKey());
            expect(r.statusCode, r.body).toBe(201);
            payments.push({ id: r.json().id, payer: i });
          }

          const request = (o: Op, key: string): Promise<LightMyRequestResponse> => {
            switch (o.op) {
              case 'transfer':
                return post(users[o.from]!, '/v1/transfers', { to: users[o.to]!.id, amount: o.amount, currency: 'USD' }, key);
              case 'pay':
                return post(users[o.user]!, '/v1/payments', { merchantId: merchant.id, amount: o.amount, currency: 'USD', capture: o.capture }, key);
              case 'void':
                return post(merchant, `/v1/payments/${payments[o.payment]!.id}/void`, undefined, key);
              default:
                return post(merchant, `/v1/payments/${payments[o.payment]!.id}/${o.op === 'refund' ? 'refunds' : 'capture'}`, o.amount === undefined ? {} : { amount: o.amount }, key);
            }
          };
          // every op with a key of its own, plus some sent twice with the same key and body
          const keyed = ops.map((op) => ({ op, key: idemKey() }));
          const all = [...keyed, ...duplicates.filter(() => keyed.length > 0).map((n) => keyed[n % keyed.length]!)];
          const sent: Sent[] = await Promise.all(all.map(async ({ op, key }) => ({ op, key, res: await request(op, key) })));

          // what the answers say moved: one movement per key, replays and refusals none
          const expected = new Map<string, bigint>([...users.map((u) => [u.id, BigInt(FUNDS)] as const), [merchant.id, 0n]]);
          const move = (from: string, to: string, n: number) => {
            expected.set(from, expected.get(from)! - BigInt(n));
            expected.set(to, expected.get(to)! + BigInt(n));
          };
          const firsts = new Map<string, number>();
          const captured = new Map<number, number>();
          const voided = new Set<number>();
          const refunded = new Map<number, number>();
          for (const { op, key, res } of sent) {
            expect(res.statusCode, `${op.op}: ${res.body}`).toBeLessThan(500);
            if (res.statusCode >= 300) continue;
            if (res.headers['idempotent-replayed'] === 'true') continue;
            firsts.set(key, (firsts.get(key) ?? 0) + 1);
            const body = res.json();
            if (op.op === 'transfer') move(users[op.from]!.id, users[op.to]!.id, body.amount);
            else if (op.op === 'pay' && body.status === 'captured') move(users[op.user]!.id, merchant.id, body.amount);
            else if (op.op === 'capture') {
              captured.set(op.payment, body.capturedAmount);
              move(users[payments[op.payment]!.payer]!.id, merchant.id, body.capturedAmount);
            } else if (op.op === 'void') voided.add(op.payment);
            else if (op.op === 'refund') {
              refunded.set(op.payment, (refunded.get(op.payment) ?? 0) + body.amount);
              move(merchant.id, users[payments[op.payment]!.payer]!.id, body.amount);
            }
          }
          for (const [key, n] of firsts) expect(n, `key ${key} moved money ${n} times`).toBe(1);
          expect(Object.fromEntries(await postedBalances([...users, merchant]))).toEqual(Object.fromEntries(expected));

          for (const [i, p] of payments.entries()) {
            expect(captured.has(i) && voided.has(i), `payment ${i} both captured and voided`).toBe(false);
            const now = (await t.app.inject({ method: 'GET', url: `/v1/payments/${p.id}`, headers: merchant.auth })).json();
            expect(now.capturedAmount).toBe(captured.get(i) ?? 0);
            expect(now.refundedAmount).toBe(refunded.get(i) ?? 0);
            expect(now.refundedAmount).toBeLessThanOrEqual(now.capturedAmount);
            expect(now.status).toBe(captured.has(i) ? 'captured' : voided.has(i) ? 'voided' : 'authorized');
          }
          const report = await reconcile(t.platform.db);
          expect(report.ok, formatReport(report)).toBe(true);
        },
      ),
      { numRuns: Number(process.env.PROPERTY_RUNS ?? 15) },
    );
  });
});
