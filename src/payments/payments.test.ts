import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addCard, balance, createTestPlatform, fund, idemKey, moneyPost, signUp, type TestPlatform, type TestUser } from '../test-support/platform.js';
import { createNetworkSimulator, TEST_CARDS } from '../network/index.js';
import { runMaintenanceRound } from '../maintenance/index.js';
import { paymentTasks } from './expiry.js';

let t: TestPlatform;
const network = createNetworkSimulator();
beforeAll(async () => {
  t = await createTestPlatform({}, { network });
});
afterAll(() => t?.close());

/** a funded payer and a fresh merchant */
async function parties(funds = 10_000): Promise<{ payer: TestUser; merchant: TestUser }> {
  const [payer, merchant] = [await signUp(t.app), await signUp(t.app, { kind: 'merchant' })];
  if (funds > 0) await fund(t.app, payer, funds);
  return { payer, merchant };
}

function pay(payer: TestUser, merchant: TestUser, amount: number, extra: Record<string, unknown> = {}, key = idemKey()) {
  return moneyPost(t.app, payer, '/v1/payments', { merchantId: merchant.id, amount, currency: 'USD', ...extra }, key);
}

async function authorized(payer: TestUser, merchant: TestUser, amount: number): Promise<string> {
  const res = await pay(payer, merchant, amount, { capture: false });
  expect(res.statusCode).toBe(201);
  expect(res.json().status).toBe('authorized');
  return res.json().id;
}

const getPayment = (user: TestUser, id: string) => t.app.inject({ method: 'GET', url: `/v1/payments/${id}`, headers: user.auth });
const networkRef = async (id: string) => (await t.platform.db.forShard(0).sql<{ network_ref: string }[]>`select network_ref from payments where id = ${id}`)[0]!.network_ref;
const historyOf = async (user: TestUser, id: string) =>
  ((await t.app.inject({ method: 'GET', url: '/v1/transactions?limit=100', headers: user.auth })).json().transactions as { id: string }[]).filter((x) => x.id === id);

describe('merchant payments from the wallet', () => {
  it('pays and captures at once by default', async () => {
    const { payer, merchant } = await parties();
    const res = await pay(payer, merchant, 2_500);
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ status: 'captured', merchantId: merchant.id, payerId: payer.id, amount: 2_500, currency: 'USD', capturedAmount: 2_500, refundedAmount: 0, source: 'wallet' });
    expect(res.json().id).toMatch(/^pay_/);
    expect(await balance(t.app, payer)).toEqual({ available: 7_500, pending: 0 });
    expect(await balance(t.app, merchant)).toEqual({ available: 2_500, pending: 0 });
  });

  it('authorize holds the funds and capture moves them to the merchant', async () => {
    const { payer, merchant } = await parties();
    const id = await authorized(payer, merchant, 3_000);
    expect(await balance(t.app, payer)).toEqual({ available: 7_000, pending: 3_000 });
    expect(await balance(t.app, merchant)).toEqual({ available: 0, pending: 0 });

    const res = await moneyPost(t.app, merchant, `/v1/payments/${id}/capture`, {});
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ id, status: 'captured', capturedAmount: 3_000, refundedAmount: 0 });
    expect(await balance(t.app, payer)).toEqual({ available: 7_000, pending: 0 });
    expect(await balance(t.app, merchant)).toEqual({ available: 3_000, pending: 0 });
  });

  it('a partial capture releases the rest of the hold and history shows the captured amount', async () => {
    const { payer, merchant } = await parties();
    const id = await authorized(payer, merchant, 3_000);
    const res = await moneyPost(t.app, merchant, `/v1/payments/${id}/capture`, { amount: 1_200 });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ status: 'captured', amount: 3_000, capturedAmount: 1_200 });
    expect(await balance(t.app, payer)).toEqual({ available: 8_800, pending: 0 });
    expect(await balance(t.app, merchant)).toEqual({ available: 1_200, pending: 0 });
    expect(await historyOf(payer, id)).toEqual([expect.objectContaining({ type: 'payment', direction: 'debit', amount: 1_200, status: 'completed', counterparty: merchant.id })]);
    expect(await historyOf(merchant, id)).toEqual([expect.objectContaining({ type: 'payment', direction: 'credit', amount: 1_200, status: 'completed', counterparty: payer.id })]);
  });

  it('refuses to capture more than was authorized with 422 limit_exceeded', async () => {
    const { payer, merchant } = await parties();
    const id = await authorized(payer, merchant, 500);
    const res = await moneyPost(t.app, merchant, `/v1/payments/${id}/capture`, { amount: 501 });
    expect(res.statusCode).toBe(422);
    expect(res.json().code).toBe('limit_exceeded');
    expect(await balance(t.app, payer)).toEqual({ available: 9_500, pending: 500 });
  });

  it('answers a second capture with 409 conflict', async () => {
    const { payer, merchant } = await parties();
    const id = await authorized(payer, merchant, 1_000);
    expect((await moneyPost(t.app, merchant, `/v1/payments/${id}/capture`, {})).statusCode).toBe(200);
    const again = await moneyPost(t.app, merchant, `/v1/payments/${id}/capture`, {});
    expect(again.statusCode).toBe(409);
    expect(again.json().code).toBe('conflict');
    expect(await balance(t.app, merchant)).toEqual({ available: 1_000, pending: 0 });
  });

  it('void releases the hold', async () => {
    const { payer, merchant } = await parties();
    const id = await authorized(payer, merchant, 4_000);
    const res = await moneyPost(t.app, merchant, `/v1/payments/${id}/void`, undefined);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ id, status: 'voided', capturedAmount: 0 });
    expect(await balance(t.app, payer)).toEqual({ available: 10_000, pending: 0 });
    expect(await balance(t.app, merchant)).toEqual({ available: 0, pending: 0 });
    expect(await historyOf(payer, id)).toEqual([expect.objectContaining({ status: 'voided' })]);
    const capture = await moneyPost(t.app, merchant, `/v1/payments/${id}/capture`, {});
    expect(capture.statusCode).toBe(409);
  });

  it('refuses a void after capture with 409 conflict', async () => {
    const { payer, merchant } = await parties();
    const res = await pay(payer, merchant, 1_000);
    const voided = await moneyPost(t.app, merchant, `/v1/payments/${res.json().id}/void`, {});
    expect(voided.statusCode).toBe(409);
    expect(voided.json().code).toBe('conflict');
    expect(await balance(t.app, merchant)).toEqual({ available: 1_000, pending: 0 });
  });

  it('refunds partly, then the rest, and refuses to refund beyond the captured amount', async () => {
    const { payer, merchant } = await parties();
    const id = (await pay(payer, merchant, 1_000)).json().id;
    const first = await moneyPost(t.app, merchant, `/v1/payments/${id}/refunds`, { amount: 300 });
    expect(first.statusCode).toBe(201);
    expect(first.json()).toMatchObject({ paymentId: id, amount: 300, currency: 'USD', status: 'completed' });
    expect(first.json().id).toMatch(/^ref_/);
    const over = await moneyPost(t.app, merchant, `/v1/payments/${id}/refunds`, { amount: 701 });
    expect(over.statusCode).toBe(422);
    expect(over.json().code).toBe('limit_exceeded');
    const rest = await moneyPost(t.app, merchant, `/v1/payments/${id}/refunds`, {});
    expect(rest.statusCode).toBe(201);
    expect(rest.json().amount).toBe(700);
    const more = await moneyPost(t.app, merchant, `/v1/payments/${id}/refunds`, { amount: 1 });
    expect(more.statusCode).toBe(422);
    expect(more.json().code).toBe('limit_exceeded');

    expect((await getPayment(payer, id)).json()).toMatchObject({ status: 'captured', capturedAmount: 1_000, refundedAmount: 1_000 });
    expect(await balance(t.app, payer)).toEqual({ available: 10_000, pending: 0 });
    expect(await balance(t.app, merchant)).toEqual({ available: 0, pending: 0 });
    expect(await historyOf(payer, rest.json().id)).toEqual([expect.objectContaining({ type: 'refund', direction: 'credit', amount: 700, status: 'completed' })]);
    expect(await historyOf(merchant, rest.json().id)).toEqual([expect.objectContaining({ type: 'refund', direction: 'debit', amount: 700, status: 'completed' })]);
  });

  it('refuses a refund of a payment that is not captured with 409 conflict', async () => {
    const { payer, merchant } = await parties();
    const id = await authorized(payer, merchant, 1_000);
    const res = await moneyPost(t.app, merchant, `/v1/payments/${id}/refunds`, { amount: 100 });
    expect(res.statusCode).toBe(409);
    expect(res.json().code).toBe('conflict');
  });

  it('refuses a refund the merchant cannot cover with 422 insufficient_funds', async () => {
    const { payer, merchant } = await parties();
    const [other] = [await signUp(t.app)];
    const id = (await pay(payer, merchant, 1_000)).json().id;
    // the merchant spends what it was paid
    expect((await moneyPost(t.app, merchant, '/v1/transfers', { to: other.id, amount: 900, currency: 'USD' })).statusCode).toBe(201);
    const res = await moneyPost(t.app, merchant, `/v1/payments/${id}/refunds`, {});
    expect(res.statusCode).toBe(422);
    expect(res.json().code).toBe('insufficient_funds');
    expect((await getPayment(merchant, id)).json().refundedAmount).toBe(0);
  });

  it('answers 404 to a payer calling capture, void or refund, and to a stranger reading the payment', async () => {
    const { payer, merchant } = await parties();
    const stranger = await signUp(t.app);
    const id = await authorized(payer, merchant, 1_000);
    for (const action of ['capture', 'void', 'refunds']) {
      const res = await moneyPost(t.app, payer, `/v1/payments/${id}/${action}`, {});
      expect(res.statusCode).toBe(404);
      expect(res.json().code).toBe('not_found');
    }
    expect((await getPayment(stranger, id)).statusCode).toBe(404);
    expect((await getPayment(payer, id)).statusCode).toBe(200);
    expect((await getPayment(merchant, id)).json()).toMatchObject({ id, status: 'authorized', amount: 1_000, capturedAmount: 0, refundedAmount: 0 });
    expect(await balance(t.app, payer)).toEqual({ available: 9_000, pending: 1_000 });
  });

  it('refuses a payment that would overdraw the wallet with 422 insufficient_funds and holds nothing', async () => {
    const { payer, merchant } = await parties(500);
    const res = await pay(payer, merchant, 501, { capture: false });
    expect(res.statusCode).toBe(422);
    expect(res.json().code).toBe('insufficient_funds');
    expect(await balance(t.app, payer)).toEqual({ available: 500, pending: 0 });
  });

  it('answers 404 for an unknown merchant and for a user who is not a merchant', async () => {
    const { payer } = await parties();
    const person = await signUp(t.app);
    for (const merchantId of ['usr_nope', 'usr_0010000000000000000000000000', person.id]) {
      const res = await moneyPost(t.app, payer, '/v1/payments', { merchantId, amount: 100, currency: 'USD' });
      expect(res.statusCode).toBe(404);
      expect(res.json().code).toBe('not_found');
    }
  });

  it('refuses a payment to yourself with 409 conflict', async () => {
    const merchant = await signUp(t.app, { kind: 'merchant' });
    await fund(t.app, merchant, 1_000);
    const res = await pay(merchant, merchant, 100);
    expect(res.statusCode).toBe(409);
    expect(res.json().code).toBe('conflict');
  });

  it('describes the payment routes in the OpenAPI document', async () => {
    const doc = (await t.app.inject({ method: 'GET', url: '/docs/json' })).json();
    for (const path of ['/v1/payments', '/v1/payments/{id}', '/v1/payments/{id}/capture', '/v1/payments/{id}/void', '/v1/payments/{id}/refunds']) expect(doc.paths[path]).toBeDefined();
    expect(doc.paths['/v1/payments/{id}/refunds'].post.responses['201']).toBeDefined();
  });

  it('refuses amounts above the per-movement maximum with 422 limit_exceeded and fractional amounts with 400', async () => {
    const { payer, merchant } = await parties();
    const big = await pay(payer, merchant, t.config.maxAmountMinor + 1);
    expect(big.statusCode).toBe(422);
    expect(big.json().code).toBe('limit_exceeded');
    const fraction = await pay(payer, merchant, 1.5);
    expect(fraction.statusCode).toBe(400);
    const unknown = await pay(payer, merchant, 100, { tip: 5 });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json().code).toBe('validation_failed');
  });

  it('replays POST /v1/payments with the same key: same body, Idempotent-Replayed, money moved once', async () => {
    const { payer, merchant } = await parties();
    const key = idemKey();
    const first = await pay(payer, merchant, 1_500, {}, key);
    const again = await pay(payer, merchant, 1_500, {}, key);
    expect(again.statusCode).toBe(201);
    expect(again.body).toBe(first.body);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(await balance(t.app, payer)).toEqual({ available: 8_500, pending: 0 });
    const reused = await pay(payer, merchant, 1_600, {}, key);
    expect(reused.statusCode).toBe(422);
    expect(reused.json().code).toBe('idempotency_key_reused');
  });

  it('requires an Idempotency-Key to pay or capture', async () => {
    const { payer, merchant } = await parties();
    const res = await t.app.inject({ method: 'POST', url: '/v1/payments', headers: payer.auth, payload: { merchantId: merchant.id, amount: 100, currency: 'USD' } });
    expect(res.statusCode).toBe(400);
    expect(res.json().code).toBe('idempotency_key_required');
  });

  it('opens the merchant a wallet in the payment currency and refuses a payer without one', async () => {
    const payer = await signUp(t.app, { currency: 'EUR' });
    const merchant = await signUp(t.app, { kind: 'merchant' });
    await fund(t.app, payer, 1_000, 'EUR');
    const res = await moneyPost(t.app, payer, '/v1/payments', { merchantId: merchant.id, amount: 400, currency: 'EUR' });
    expect(res.statusCode).toBe(201);
    expect(await balance(t.app, merchant, 'EUR')).toEqual({ available: 400, pending: 0 });
    const usd = await moneyPost(t.app, payer, '/v1/payments', { merchantId: merchant.id, amount: 400, currency: 'USD' });
    expect(usd.statusCode).toBe(422);
    expect(usd.json().code).toBe('currency_mismatch');
  });
});

describe('merchant payments by card', () => {
  it('authorizes a card, credits the merchant on capture and leaves the payer wallet untouched', async () => {
    const { payer, merchant } = await parties(0);
    const pm = await addCard(t.app, payer, TEST_CARDS.visa);
    const res = await pay(payer, merchant, 2_000, { paymentMethodId: pm, capture: false });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ status: 'authorized', source: 'card', amount: 2_000, capturedAmount: 0 });
    const id = res.json().id;
    expect(await balance(t.app, merchant)).toEqual({ available: 0, pending: 0 });

    const captured = await moneyPost(t.app, merchant, `/v1/payments/${id}/capture`, { amount: 1_500 });
    expect(captured.statusCode).toBe(200);
    expect(await balance(t.app, merchant)).toEqual({ available: 1_500, pending: 0 });
    expect(await balance(t.app, payer)).toEqual({ available: 0, pending: 0 });
    expect(await historyOf(payer, id)).toEqual([]);
    expect(await historyOf(merchant, id)).toEqual([expect.objectContaining({ direction: 'credit', amount: 1_500, status: 'completed' })]);
    expect(network.inspect(await networkRef(id))).toMatchObject({ amountMinor: 2_000n, capturedMinor: 1_500n });

    const refund = await moneyPost(t.app, merchant, `/v1/payments/${id}/refunds`, { amount: 500 });
    expect(refund.statusCode).toBe(201);
    expect(await balance(t.app, merchant)).toEqual({ available: 1_000, pending: 0 });
    expect(network.inspect(await networkRef(id))).toMatchObject({ refundedMinor: 500n });
  });

  it('records a declined card as a declined payment and moves no money', async () => {
    const { payer, merchant } = await parties(0);
    const pm = await addCard(t.app, payer, TEST_CARDS.declined);
    const res = await pay(payer, merchant, 2_000, { paymentMethodId: pm });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ status: 'declined', declineCode: 'card_declined', capturedAmount: 0, source: 'card' });
    expect((await getPayment(payer, res.json().id)).json()).toMatchObject({ status: 'declined', declineCode: 'card_declined' });
    expect(await balance(t.app, merchant)).toEqual({ available: 0, pending: 0 });
  });

  it('answers 503 when the network times out, charges nothing and is safe to retry with the same key', async () => {
    const { payer, merchant } = await parties(0);
    const pm = await addCard(t.app, payer, TEST_CARDS.timeout);
    const before = network.authorizations;
    const key = idemKey();
    for (let attempt = 0; attempt < 2; attempt++) {
      const res = await pay(payer, merchant, 2_000, { paymentMethodId: pm }, key);
      expect(res.statusCode).toBe(503);
      expect(res.json().code).toBe('unavailable');
    }
    expect(network.authorizations).toBe(before);
    const rows = await t.platform.db.forShard(0).sql`select id from payments where payer_id = ${payer.id}`;
    expect(rows).toHaveLength(0);
    expect(await balance(t.app, merchant)).toEqual({ available: 0, pending: 0 });
  });

  it('answers 404 for a payment method that is not the payer\'s', async () => {
    const { payer, merchant } = await parties(0);
    const other = await signUp(t.app);
    const pm = await addCard(t.app, other);
    const res = await pay(payer, merchant, 100, { paymentMethodId: pm });
    expect(res.statusCode).toBe(404);
  });
});

describe('hold expiry', () => {
  const afterExpiry = () => new Date(Date.now() + (t.config.holdExpiryMinutes + 1) * 60_000);

  it('releases expired holds, marks the payment expired and refuses a later capture', async () => {
    const { payer, merchant } = await parties();
    const id = await authorized(payer, merchant, 2_500);
    const expiresAt = new Date((await getPayment(payer, id)).json().expiresAt).getTime();
    expect(expiresAt - Date.now()).toBeGreaterThan((t.config.holdExpiryMinutes - 1) * 60_000);

    // not yet due: nothing happens
    await runMaintenanceRound(t.platform, paymentTasks(t.platform), new Date());
    expect((await getPayment(payer, id)).json().status).toBe('authorized');

    const report = await runMaintenanceRound(t.platform, paymentTasks(t.platform), afterExpiry());
    expect(Object.values(report)[0]!['payment-expiry']).toBeGreaterThanOrEqual(1);
    expect((await getPayment(payer, id)).json()).toMatchObject({ status: 'expired', capturedAmount: 0 });
    expect(await balance(t.app, payer)).toEqual({ available: 10_000, pending: 0 });
    expect(await historyOf(payer, id)).toEqual([expect.objectContaining({ status: 'voided' })]);
    const capture = await moneyPost(t.app, merchant, `/v1/payments/${id}/capture`, {});
    expect(capture.statusCode).toBe(409);
  });

  it('voids an expired card hold at the network too', async () => {
    const { payer, merchant } = await parties(0);
    const pm = await addCard(t.app, payer);
    const id = (await pay(payer, merchant, 700, { paymentMethodId: pm, capture: false })).json().id;
    const [task] = paymentTasks(t.platform);
    await task!.run(t.platform.db.forShard(0), afterExpiry());
    expect((await getPayment(merchant, id)).json().status).toBe('expired');
    expect(network.inspect(await networkRef(id))).toMatchObject({ voided: true });
  });
});

describe('concurrency', () => {
  it('20 parallel refunds of 10 on a captured payment of 100 refund exactly 100', async () => {
    const { payer, merchant } = await parties(1_000);
    const id = (await pay(payer, merchant, 100)).json().id;
    const results = await Promise.all(Array.from({ length: 20 }, () => moneyPost(t.app, merchant, `/v1/payments/${id}/refunds`, { amount: 10 })));
    const codes = results.map((r) => r.statusCode);
    expect(codes.filter((c) => c === 201)).toHaveLength(10);
    expect(results.filter((r) => r.statusCode === 422).map((r) => r.json().code)).toEqual(Array(10).fill('limit_exceeded'));
    expect((await getPayment(merchant, id)).json().refundedAmount).toBe(100);
    expect(await balance(t.app, merchant)).toEqual({ available: 0, pending: 0 });
    expect(await balance(t.app, payer)).toEqual({ available: 1_000, pending: 0 });
  });

  it('parallel captures of one payment capture it once', async () => {
    const { payer, merchant } = await parties();
    const id = await authorized(payer, merchant, 1_000);
    const results = await Promise.all(Array.from({ length: 5 }, () => moneyPost(t.app, merchant, `/v1/payments/${id}/capture`, {})));
    expect(results.map((r) => r.statusCode).sort()).toEqual([200, 409, 409, 409, 409]);
    expect(await balance(t.app, merchant)).toEqual({ available: 1_000, pending: 0 });
  });
});
