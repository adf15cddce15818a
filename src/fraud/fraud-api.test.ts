/**
 * Fraud decisions through the API: held for review then approved or declined by an operator
 * (balances exact), declined outright (nothing moves, the answer replays), the fail policy when
 * the scorer is slow or down (no request waits past the budget), and the split fraud role.
 */
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { addCard, balance, createTestPlatform, fund, moneyPost, PERMISSIVE_FRAUD_RULES, signUp, type TestPlatform, type TestUser } from '../test-support/platform.js';
import { loadConfig } from '../config/index.js';
import { createPlatform } from '../platform.js';
import { buildApp } from '../app.js';
import { createNetworkSimulator } from '../network/index.js';
import { reconcile } from '../ledger/reconcile.js';
import { DEFAULT_RULES, type Rules } from './rules.js';
import { startFraudServer } from './remote.js';
import { OPERATOR_ROLE } from './routes.js';

const dir = mkdtempSync(join(tmpdir(), 'wallet-fraud-rules-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
/** a budget no loaded CI machine exceeds: these tests are about decisions, not the fail policy */
const GENEROUS_POLICY: Rules['policy'] = { budgetMs: 5000, onFailure: { approveBelowMinor: 10_000, above: 'review' } };
function rulesFile(patch: (r: Rules) => Rules): string {
  const base: Rules = { ...structuredClone(DEFAULT_RULES), thresholds: {}, model: { review: 1, decline: 1 }, policy: GENEROUS_POLICY };
  const file = join(dir, `rules-${files++}.json`);
  writeFileSync(file, JSON.stringify(patch(base)));
  return file;
}

function operatorAuth(t: TestPlatform, user: TestUser) {
  return { authorization: `Bearer ${t.platform.tokens.issue(user.id, [OPERATOR_ROLE]).accessToken}` };
}

describe('transfers held for review', () => {
  let t: TestPlatform;
  let alice: TestUser;
  let bob: TestUser;
  let analyst: TestUser;
  beforeAll(async () => {
    // a first transfer of 100.00 or more to someone new is held
    t = await createTestPlatform({ FRAUD_RULES_FILE: rulesFile((r) => ({ ...r, version: 'test-review', thresholds: { newCounterpartyLarge: { minAmountMinor: 10_000, outcome: 'review' } } })) });
    [alice, bob, analyst] = await Promise.all([signUp(t.app), signUp(t.app), signUp(t.app)]);
    await fund(t.app, alice, 100_000);
  });
  afterAll(() => t?.close());

  test('a held transfer reserves the amount; approving it moves the money, exactly', async () => {
    const res = await moneyPost(t.app, alice, '/v1/transfers', { to: bob.id, amount: 25_000, currency: 'USD' });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ status: 'pending_review', amount: 25_000 });
    const id = res.json().id as string;
    expect(await balance(t.app, alice)).toEqual({ available: 75_000, pending: 25_000 });
    expect((await balance(t.app, bob)).available).toBe(0);
    expect((await t.app.inject({ method: 'GET', url: `/v1/transfers/${id}`, headers: alice.auth })).json().status).toBe('pending_review');

    const queue = await t.app.inject({ method: 'GET', url: '/v1/admin/fraud/reviews', headers: operatorAuth(t, analyst) });
    expect(queue.statusCode).toBe(200);
    const review = (queue.json().reviews as { id: string; reasons: string[]; status: string }[]).find((r) => r.id === id);
    expect(review).toMatchObject({ status: 'pending', reasons: ['new_counterparty_large'] });

    const approved = await t.app.inject({ method: 'POST', url: `/v1/admin/fraud/reviews/${id}/approve`, headers: operatorAuth(t, analyst) });
    expect(approved.statusCode).toBe(200);
    expect(approved.json()).toMatchObject({ status: 'approved', decidedBy: analyst.id });
    expect(await balance(t.app, alice)).toEqual({ available: 75_000, pending: 0 });
    expect(await balance(t.app, bob)).toEqual({ available: 25_000, pending: 0 });
    expect((await t.app.inject({ method: 'GET', url: `/v1/transfers/${id}`, headers: bob.auth })).json().status).toBe('completed');
    const again = await t.app.inject({ method: 'POST', url: `/v1/admin/fraud/reviews/${id}/decline`, headers: operatorAuth(t, analyst) });
    expect(again.statusCode).toBe(409);
    expect((await reconcile(t.platform.db)).ok).toBe(true);
  });

  test('declining a held transfer releases the hold to the sender', async () => {
    const carol = await signUp(t.app);
    const before = await balance(t.app, alice);
    const res = await moneyPost(t.app, alice, '/v1/transfers', { to: carol.id, amount: 30_000, currency: 'USD' });
    expect(res.json().status).toBe('pending_review');
    expect(await balance(t.app, alice)).toEqual({ available: before.available - 30_000, pending: 30_000 });
    const id = res.json().id as string;
    const declined = await t.app.inject({ method: 'POST', url: `/v1/admin/fraud/reviews/${id}/decline`, headers: operatorAuth(t, analyst) });
    expect(declined.json()).toMatchObject({ status: 'declined' });
    expect(await balance(t.app, alice)).toEqual(before);
    expect(await balance(t.app, carol)).toEqual({ available: 0, pending: 0 });
    expect((await t.app.inject({ method: 'GET', url: `/v1/transfers/${id}`, headers: alice.auth })).json().status).toBe('declined');
    expect((await reconcile(t.platform.db)).ok).toBe(true);
  });

  test('the review queue is for operators only: anyone else gets 404', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/v1/admin/fraud/reviews', headers: alice.auth });
    expect(res.statusCode).toBe(404);
    expect(res.json().code).toBe('not_found');
  });

  test('held and decided transfers raise fraud-alerts events through the outbox', async () => {
    const rows = await t.platform.db.clusters[0]!.sql<{ type: string }[]>`select type from outbox where topic = 'fraud-alerts'`;
    const types = rows.map((r) => r.type);
    expect(types.filter((x) => x === 'fraud.review')).toHaveLength(2);
    expect(types).toContain('fraud.review_approved');
    expect(types).toContain('fraud.review_declined');
  });
});

writeFileSync(join(dir, 'deny.json'), JSON.stringify({ ...JSON.parse(JSON.stringify(DEFAULT_RULES)), thresholds: {}, model: { review: 1, decline: 1 }, policy: GENEROUS_POLICY }));

describe('top-ups held for review', () => {
  let t: TestPlatform;
  let analyst: TestUser;
  const network = createNetworkSimulator();
  beforeAll(async () => {
    // a young account's top-up of 100.00 or more is held
    t = await createTestPlatform({ FRAUD_RULES_FILE: rulesFile((r) => ({ ...r, version: 'test-topup-review', thresholds: { youngAccount: { maxAgeMs: 86_400_000, minAmountMinor: 10_000, outcome: 'review' } } })) }, { network });
    analyst = await signUp(t.app);
  });
  afterAll(() => t?.close());

  async function heldTopup(user: TestUser): Promise<{ id: string; ref: string }> {
    const pm = await addCard(t.app, user);
    const res = await moneyPost(t.app, user, '/v1/topups', { paymentMethodId: pm, amount: 20_000, currency: 'USD' });
    expect(res.statusCode).toBe(201);
    expect(res.json().status).toBe('pending_review');
    const id = res.json().id as string;
    const [row] = await t.platform.db.clusters[0]!.sql<{ network_ref: string }[]>`select network_ref from topups where id = ${id}`;
    expect(network.inspect(row!.network_ref)).toMatchObject({ amountMinor: 20_000n, capturedMinor: 0n, voided: false });
    expect((await balance(t.app, user)).available).toBe(0);
    return { id, ref: row!.network_ref };
  }

  test('the card is only authorized until an operator approves; then it is captured and the wallet credited', async () => {
    const user = await signUp(t.app);
    const { id, ref } = await heldTopup(user);
    const res = await t.app.inject({ method: 'POST', url: `/v1/admin/fraud/reviews/${id}/approve`, headers: operatorAuth(t, analyst) });
    expect(res.statusCode).toBe(200);
    expect(network.inspect(ref)).toMatchObject({ capturedMinor: 20_000n, voided: false });
    expect(await balance(t.app, user)).toEqual({ available: 20_000, pending: 0 });
    expect((await reconcile(t.platform.db)).ok).toBe(true);
  });

  test('a declined top-up releases the card authorization and credits nothing', async () => {
    const user = await signUp(t.app);
    const { id, ref } = await heldTopup(user);
    const res = await t.app.inject({ method: 'POST', url: `/v1/admin/fraud/reviews/${id}/decline`, headers: operatorAuth(t, analyst) });
    expect(res.statusCode).toBe(200);
    expect(network.inspect(ref)).toMatchObject({ capturedMinor: 0n, voided: true });
    expect(await balance(t.app, user)).toEqual({ available: 0, pending: 0 });
    const [row] = await t.platform.db.clusters[0]!.sql<{ status: string; decline_code: string }[]>`select status, decline_code from topups where id = ${id}`;
    expect(row).toEqual({ status: 'declined', decline_code: 'fraud_review' });
    expect((await reconcile(t.platform.db)).ok).toBe(true);
  });
});

describe('merchant payments held for review', () => {
  let t: TestPlatform;
  let analyst: TestUser;
  let shop: TestUser;
  beforeAll(async () => {
    // a first payment of 100.00 or more to a merchant never paid before is held
    t = await createTestPlatform({ FRAUD_RULES_FILE: rulesFile((r) => ({ ...r, version: 'test-payment-review', thresholds: { newCounterpartyLarge: { minAmountMinor: 10_000, outcome: 'review' } } })) });
    [analyst, shop] = await Promise.all([signUp(t.app), signUp(t.app, { kind: 'merchant' })]);
  });
  afterAll(() => t?.close());

  async function heldPayment(payer: TestUser): Promise<string> {
    await fund(t.app, payer, 50_000);
    const res = await moneyPost(t.app, payer, '/v1/payments', { merchantId: shop.id, amount: 20_000, currency: 'USD', capture: true });
    expect(res.statusCode).toBe(201);
    expect(res.json().status).toBe('authorized'); // held: authorized only, though capture was asked
    expect(await balance(t.app, payer)).toEqual({ available: 30_000, pending: 20_000 });
    return res.json().id as string;
  }

  test('the merchant cannot capture until an operator approves; then the capture moves the money', async () => {
    const payer = await signUp(t.app);
    const id = await heldPayment(payer);
    const early = await moneyPost(t.app, shop, `/v1/payments/${id}/capture`, {});
    expect(early.statusCode).toBe(409);
    expect((await t.app.inject({ method: 'POST', url: `/v1/admin/fraud/reviews/${id}/approve`, headers: operatorAuth(t, analyst) })).statusCode).toBe(200);
    const captured = await moneyPost(t.app, shop, `/v1/payments/${id}/capture`, {});
    expect(captured.statusCode).toBe(200);
    expect(captured.json().status).toBe('captured');
    expect(await balance(t.app, payer)).toEqual({ available: 30_000, pending: 0 });
    expect((await balance(t.app, shop)).available).toBe(20_000);
    expect((await reconcile(t.platform.db)).ok).toBe(true);
  });

  test('a declined review voids the payment and returns the hold to the payer', async () => {
    const payer = await signUp(t.app);
    const id = await heldPayment(payer);
    expect((await t.app.inject({ method: 'POST', url: `/v1/admin/fraud/reviews/${id}/decline`, headers: operatorAuth(t, analyst) })).statusCode).toBe(200);
    expect((await t.app.inject({ method: 'GET', url: `/v1/payments/${id}`, headers: payer.auth })).json().status).toBe('voided');
    expect(await balance(t.app, payer)).toEqual({ available: 50_000, pending: 0 });
    expect((await reconcile(t.platform.db)).ok).toBe(true);
  });
});

describe('declined requests', () => {
  let t: TestPlatform;
  let mallory: TestUser;
  let bob: TestUser;
  beforeAll(async () => {
    t = await createTestPlatform({ FRAUD_RULES_FILE: join(dir, 'deny.json') });
    [mallory, bob] = await Promise.all([signUp(t.app), signUp(t.app)]);
  }, 30_000);
  afterAll(() => t?.close());

  test('a deny-listed sender gets 422 fraud_declined, nothing moves, and the answer replays', async () => {
    await fund(t.app, mallory, 50_000);
    // deny her from now on: the rules file is reloaded without a restart
    writeFileSync(join(dir, 'deny.json'), JSON.stringify({ ...JSON.parse(JSON.stringify(DEFAULT_RULES)), thresholds: {}, model: { review: 1, decline: 1 }, policy: GENEROUS_POLICY, version: 'test-deny-2', deny: { users: [mallory.id], counterparties: [], countries: [] } }));
    await t.platform.fraudScoring.rules.reload();
    const key = 'deny-once';
    const res = await moneyPost(t.app, mallory, '/v1/transfers', { to: bob.id, amount: 1000, currency: 'USD' }, key);
    expect(res.statusCode).toBe(422);
    expect(res.json().code).toBe('fraud_declined');
    const replay = await moneyPost(t.app, mallory, '/v1/transfers', { to: bob.id, amount: 1000, currency: 'USD' }, key);
    expect(replay.statusCode).toBe(422);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(await balance(t.app, mallory)).toEqual({ available: 50_000, pending: 0 });
    expect((await balance(t.app, bob)).available).toBe(0);
  });
});

describe('the fail policy', () => {
  let silent: Server;
  let silentUrl: string;
  beforeAll(async () => {
    silent = createServer(() => undefined); // accepts and never answers
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    silentUrl = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    silent.closeAllConnections();
    await new Promise((r) => silent.close(r));
  });

  for (const [what, url, reason] of [
    ['slow', () => silentUrl, 'fallback_timeout'],
    ['down', () => 'http://127.0.0.1:1', 'fallback_unavailable'],
  ] as const) {
    test(`when scoring is ${what}, small amounts are approved and larger ones held, within the budget`, async () => {
      const t = await createTestPlatform({ FRAUD_URL: url(), FRAUD_RULES_FILE: rulesFile((r) => ({ ...r, version: `test-policy-${what}`, policy: { budgetMs: 50, onFailure: { approveBelowMinor: 10_000, above: 'review' } } })) });
      try {
        const small = { requestId: `${what}-1`, kind: 'transfer' as const, userId: 'usr_001x', amountMinor: 9_999n, currency: 'USD', at: new Date() };
        const started = performance.now();
        const a = await t.platform.fraud.check(small);
        const b = await t.platform.fraud.check({ ...small, requestId: `${what}-2`, amountMinor: 10_000n });
        const elapsed = performance.now() - started;
        expect(a).toMatchObject({ outcome: 'approve', reasons: [reason] });
        expect(b).toMatchObject({ outcome: 'review', reasons: [reason] });
        expect(elapsed).toBeLessThan(2 * 50 + 400); // two checks, each bounded by the 50 ms budget (+ scheduling slack)
        const fallbacks = await t.platform.metrics.registry.getSingleMetric('fraud_fallbacks_total')!.get();
        expect(fallbacks.values.reduce((n, v) => n + v.value, 0)).toBe(2);
      } finally {
        await t.close();
      }
    });
  }
});

describe('the fraud role as its own process', () => {
  test('an api platform with FRAUD_URL gets its decisions from the fraud role', async () => {
    const deny = rulesFile((r) => ({ ...r, version: 'test-split', deny: { users: [], counterparties: [], countries: ['KP'] } }));
    // two processes' worth of platform on one database: the fraud role, and an api whose own
    // rules file approves everything (a decline can only come from the fraud role)
    const fraudSide = await createTestPlatform({ FRAUD_RULES_FILE: deny, FRAUD_PORT: '0' });
    const server = await startFraudServer(fraudSide.platform.fraudScoring.localScorer(), fraudSide.config, fraudSide.platform.log);
    const apiPlatform = createPlatform(loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', PASSWORD_HASH_LOG2_COST: '10', FRAUD_RULES_FILE: PERMISSIVE_FRAUD_RULES, FRAUD_URL: server.url }), { databaseUrl: fraudSide.databaseUrl, log: fraudSide.platform.log });
    const api = { app: await buildApp(apiPlatform), platform: apiPlatform };
    try {
      const [alice, bob] = await Promise.all([signUp(api.app), signUp(api.app)]);
      await fund(api.app, alice, 10_000);
      const fine = await moneyPost(api.app, alice, '/v1/transfers', { to: bob.id, amount: 100, currency: 'USD' });
      expect(fine.json().status).toBe('completed');
      const fromKp = await api.app.inject({ method: 'POST', url: '/v1/transfers', payload: { to: bob.id, amount: 100, currency: 'USD' }, headers: { ...alice.auth, 'idempotency-key': 'kp-1', 'x-client-country': 'KP' } });
      expect(fromKp.statusCode).toBe(422);
      expect(fromKp.json().code).toBe('fraud_declined');
      const apiDecisions = await api.platform.metrics.registry.getSingleMetric('fraud_decisions_total')!.get();
      expect(apiDecisions.values.find((v) => v.labels.outcome === 'decline')?.value).toBe(1);
    } finally {
      await server.app.close();
      await api.app.close();
      await apiPlatform.close();
      await fraudSide.close();
    }
  });
});
