import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { addCard, balance, createTestPlatform, idemKey, moneyPost, signUp, type TestPlatform } from '../test-support/platform.js';
import { TEST_CARDS, createNetworkSimulator } from '../network/index.js';
import { createLogger } from '../observability/logger.js';
import { shardOf } from '../shared/ids.js';

let t: TestPlatform;
let logText = '';
const network = createNetworkSimulator({ hangMs: 2_000 });
beforeAll(async () => {
  // everything the platform logs, at the most verbose level, to check that no card number leaks
  const sink = new Writable({ write: (chunk, _enc, done) => ((logText += chunk.toString()), done()) });
  t = await createTestPlatform({ LOG_LEVEL: 'trace' }, { log: createLogger('trace', sink), network });
});
afterAll(() => t?.close());

const year = new Date().getUTCFullYear() + 1;

describe('payment methods', () => {
  it('tokenizes a card and returns only brand, last4 and expiry', async () => {
    const u = await signUp(t.app);
    const res = await t.app.inject({ method: 'POST', url: '/v1/payment-methods', headers: u.auth, payload: { type: 'card', number: TEST_CARDS.mastercard, expMonth: 3, expYear: year, cvc: '999' } });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toEqual({ id: expect.stringMatching(/^pm_/), type: 'card', brand: 'mastercard', last4: '4444', expMonth: 3, expYear: year, createdAt: expect.any(String) });
    expect(res.body).not.toContain(TEST_CARDS.mastercard);
    const list = await t.app.inject({ method: 'GET', url: '/v1/payment-methods', headers: u.auth });
    expect(list.json().paymentMethods).toHaveLength(1);
    expect(list.body).not.toContain(TEST_CARDS.mastercard);
  });

  it('stores the card number only encrypted, and never the CVC', async () => {
    const u = await signUp(t.app);
    await addCard(t.app, u, '4000056655665556');
    const sql = t.platform.db.clusters[0]!.sql;
    const rows = await sql`select * from vault_cards`;
    const dump = JSON.stringify(rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString('latin1') : v]))));
    expect(dump).not.toContain('4000056655665556');
    const pm = await sql`select * from payment_methods`;
    expect(JSON.stringify(pm)).not.toContain('4000056655665556');
    expect(JSON.stringify(pm)).not.toContain('"123"');
  });

  it('refuses a number that fails the Luhn check and an expired card with 422', async () => {
    const u = await signUp(t.app);
    const bad = await t.app.inject({ method: 'POST', url: '/v1/payment-methods', headers: u.auth, payload: { type: 'card', number: '4242424242424241', expMonth: 1, expYear: year, cvc: '123' } });
    expect(bad.statusCode).toBe(422);
    const expired = await t.app.inject({ method: 'POST', url: '/v1/payment-methods', headers: u.auth, payload: { type: 'card', number: TEST_CARDS.visa, expMonth: 1, expYear: 2020, cvc: '123' } });
    expect(expired.statusCode).toBe(422);
    const shape = await t.app.inject({ method: 'POST', url: '/v1/payment-methods', headers: u.auth, payload: { type: 'card', number: '4242-4242', expMonth: 13, expYear: year, cvc: '1' } });
    expect(shape.statusCode).toBe(400);
  });

  it("deletes a card; another user's card id is 404", async () => {
    const [u, v] = [await signUp(t.app), await signUp(t.app)];
    const pm = await addCard(t.app, u);
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/payment-methods/${pm}`, headers: v.auth })).statusCode).toBe(404);
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/payment-methods/${pm}`, headers: u.auth })).statusCode).toBe(204);
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/payment-methods/${pm}`, headers: u.auth })).statusCode).toBe(404);
    const topup = await moneyPost(t.app, u, '/v1/topups', { paymentMethodId: pm, amount: 100, currency: 'USD' });
    expect(topup.statusCode).toBe(404);
  });

  it('holds at most PAYMENT_METHODS_MAX cards per user, exactly, even when added at once, and nothing of a refused card is stored', async () => {
    const max = t.config.paymentMethodsMax;
    const u = await signUp(t.app);
    for (let i = 0; i < max - 2; i++) await addCard(t.app, u);
    const sql = t.platform.db.forShard(shardOf(u.id)).sql;
    const vaulted = async () => Number((await sql`select count(*)::int as n from vault_cards`)[0]!.n);
    const before = await vaulted();
    const add = () => t.app.inject({ method: 'POST', url: '/v1/payment-methods', headers: u.auth, payload: { type: 'card', number: TEST_CARDS.visa, expMonth: 12, expYear: 2099, cvc: '123' } });
    const answers = await Promise.all(Array.from({ length: 5 }, add));
    expect(answers.map((r) => r.statusCode).sort()).toEqual([201, 201, 422, 422, 422]);
    expect(answers.find((r) => r.statusCode === 422)!.json()).toMatchObject({ code: 'limit_exceeded' });
    expect(await vaulted()).toBe(before + 2);
    const cards = (await t.app.inject({ method: 'GET', url: '/v1/payment-methods', headers: u.auth })).json().paymentMethods as { id: string }[];
    expect(cards).toHaveLength(max);
    // a removed card frees its place
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/payment-methods/${cards[0]!.id}`, headers: u.auth })).statusCode).toBe(204);
    expect((await add()).statusCode).toBe(201);
  });
});

describe('top-ups', () => {
  it('credits the wallet when the card is approved', async () => {
    const u = await signUp(t.app);
    const pm = await addCard(t.app, u, TEST_CARDS.visa);
    const res = await moneyPost(t.app, u, '/v1/topups', { paymentMethodId: pm, amount: 5_000, currency: 'USD' });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ id: expect.stringMatching(/^top_/), status: 'completed', amount: 5_000, currency: 'USD' });
    expect(await balance(t.app, u)).toEqual({ available: 5_000, pending: 0 });
  });

  it.each([
    [TEST_CARDS.declined, 'card_declined'],
    [TEST_CARDS.insufficientFunds, 'insufficient_funds'],
  ])('records a decline for card %s without moving money', async (card, declineCode) => {
    const u = await signUp(t.app);
    const pm = await addCard(t.app, u, card);
    const res = await moneyPost(t.app, u, '/v1/topups', { paymentMethodId: pm, amount: 5_000, currency: 'USD' });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ status: 'declined', declineCode });
    expect(await balance(t.app, u)).toEqual({ available: 0, pending: 0 });
  });

  it('answers 503 when the network times out, charges nothing, and a retry with the same key is safe', async () => {
    const u = await signUp(t.app);
    const pm = await addCard(t.app, u, TEST_CARDS.timeout);
    const key = idemKey();
    const res = await moneyPost(t.app, u, '/v1/topups', { paymentMethodId: pm, amount: 5_000, currency: 'USD' }, key);
    expect(res.statusCode).toBe(503);
    expect(res.json().code).toBe('unavailable');
    expect(res.headers['retry-after']).toBeDefined();
    expect(await balance(t.app, u)).toEqual({ available: 0, pending: 0 });
    const retry = await moneyPost(t.app, u, '/v1/topups', { paymentMethodId: pm, amount: 5_000, currency: 'USD' }, key);
    expect(retry.statusCode).toBe(503);
    expect(await balance(t.app, u)).toEqual({ available: 0, pending: 0 });
  });

  it('replays a top-up without charging the card again', async () => {
    const u = await signUp(t.app);
    const pm = await addCard(t.app, u);
    const key = idemKey();
    const before = network.authorizations;
    const first = await moneyPost(t.app, u, '/v1/topups', { paymentMethodId: pm, amount: 700, currency: 'USD' }, key);
    const again = await moneyPost(t.app, u, '/v1/topups', { paymentMethodId: pm, amount: 700, currency: 'USD' }, key);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body).toBe(first.body);
    expect(network.authorizations).toBe(before + 1);
    expect(await balance(t.app, u)).toEqual({ available: 700, pending: 0 });
  });

  it('answers currency_mismatch for a currency the user holds no wallet in', async () => {
    const u = await signUp(t.app);
    const pm = await addCard(t.app, u);
    const res = await moneyPost(t.app, u, '/v1/topups', { paymentMethodId: pm, amount: 700, currency: 'JPY' });
    expect(res.statusCode).toBe(422);
    expect(res.json().code).toBe('currency_mismatch');
  });
});

describe('card data in logs', () => {
  it('never writes a card number to the log, even at trace level', async () => {
    const u = await signUp(t.app);
    const number = '5105105105105100';
    await t.app.inject({ method: 'POST', url: '/v1/payment-methods', headers: u.auth, payload: { type: 'card', number, expMonth: 2, expYear: year, cvc: '321' } });
    await t.app.inject({ method: 'POST', url: '/v1/payment-methods', headers: u.auth, payload: { type: 'card', number, expMonth: 2, expYear: year, cvc: '321', extra: 1 } });
    await t.app.inject({ method: 'POST', url: '/v1/payment-methods', headers: u.auth, payload: `{"type":"card","number":"${number}"` });
    expect(logText.length).toBeGreaterThan(1000); // the requests were logged
    expect(logText).not.toContain(number);
    expect(logText).not.toContain(TEST_CARDS.visa);
  });
});
