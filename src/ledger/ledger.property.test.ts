/**
 * Property: any sequence of top-ups, transfers, payments, captures, voids, refunds and hold
 * expiries, driven through the public API, keeps every invariant `wallet reconcile` checks, and
 * conserves money: the users' wallets together hold exactly what completed top-ups brought in.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { addCard, createTestPlatform, moneyPost, signUp, type TestPlatform, type TestUser } from '../test-support/platform.js';
import { reconcile, formatReport } from './reconcile.js';
import { runMaintenanceRound } from '../maintenance/index.js';
import { paymentTasks } from '../payments/expiry.js';

let t: TestPlatform;
beforeAll(async () => {
  t = await createTestPlatform({ HOLD_EXPIRY_MINUTES: '1' });
});
afterAll(() => t?.close());

const amount = fc.integer({ min: 1, max: 5_000 });
const who = fc.integer({ min: 0, max: 2 });
const partial = fc.option(fc.integer({ min: 1, max: 5_000 }), { nil: undefined });
const Op = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant('topup' as const), user: who, amount }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('transfer' as const), from: who, to: who, amount }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('pay' as const), user: who, amount, capture: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('capture' as const), payment: fc.nat(), amount: partial }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('void' as const), payment: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('refund' as const), payment: fc.nat(), amount: partial }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('expire' as const) }) },
);

async function walletTotal(users: TestUser[]): Promise<bigint> {
  const sql = t.platform.db.clusters[0]!.sql;
  const [row] = await sql`select coalesce(sum(credits_posted - debits_posted), 0)::bigint as total from accounts where user_id = any(${users.map((u) => u.id)}::text[])`;
  return row!.total as bigint;
}

describe('ledger invariants (property)', () => {
  it('hold for random sequences of money operations', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(Op, { minLength: 5, maxLength: 25 }), async (ops) => {
        const users = [await signUp(t.app), await signUp(t.app), await signUp(t.app)];
        const merchant = await signUp(t.app, { kind: 'merchant' });
        const cards = await Promise.all(users.map((u) => addCard(t.app, u)));
        const payments: string[] = [];
        let toppedUp = 0n;
        for (const o of ops) {
          if (o.op === 'topup') {
            const r = await moneyPost(t.app, users[o.user]!, '/v1/topups', { paymentMethodId: cards[o.user], amount: o.amount, currency: 'USD' });
            expect(r.statusCode).toBe(201);
            toppedUp += BigInt(o.amount);
          } else if (o.op === 'transfer') {
            const r = await moneyPost(t.app, users[o.from]!, '/v1/transfers', { to: users[o.to]!.id, amount: o.amount, currency: 'USD' });
            expect([201, o.from === o.to ? 409 : 422]).toContain(r.statusCode);
          } else if (o.op === 'pay') {
            const r = await moneyPost(t.app, users[o.user]!, '/v1/payments', { merchantId: merchant.id, amount: o.amount, currency: 'USD', capture: o.capture });
            expect([201, 422]).toContain(r.statusCode);
            if (r.statusCode === 201) payments.push(r.json().id);
          } else if (o.op === 'expire') {
            await runMaintenanceRound(t.platform, paymentTasks(t.platform), new Date(Date.now() + 120_000));
          } else if (payments.length) {
            const id = payments[o.payment % payments.length]!;
            const body = 'amount' in o && o.amount !== undefined ? { amount: o.amount } : {};
            const path = o.op === 'refund' ? 'refunds' : o.op;
            const r = await moneyPost(t.app, merchant, `/v1/payments/${id}/${path}`, o.op === 'void' ? undefined : body);
            expect(r.statusCode, r.body).toBeLessThan(500);
          }
        }
        const report = await reconcile(t.platform.db);
        expect(report.ok, formatReport(report)).toBe(true);
        expect(await walletTotal([...users, merchant])).toBe(toppedUp);
      }),
      { numRuns: 12, seed: 20261125 },
    );
  });
});
