/**
 * "A user can only ever see or move their own money: another user's id in a path gets 404, not
 * 403" (API.md), for every operation with an id in its path, taken from the OpenAPI document the
 * server serves, so that a new route without a case here fails this test. Each id belongs to
 * someone: an outsider (a person, and a merchant) gets 404 on every method of every such path,
 * and what the owner sees afterwards is unchanged.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addCard, createTestPlatform, fund, moneyPost, signUp, type TestPlatform, type TestUser } from '../test-support/platform.js';

let t: TestPlatform;
let payer: TestUser;
let payee: TestUser;
let merchant: TestUser;
let outsiders: TestUser[];
/** path template → the path with ids that belong to payer, payee or merchant */
let owned: Record<string, string>;
let paths: { method: string; path: string }[];

const get = (u: TestUser, url: string) => t.app.inject({ method: 'GET', url, headers: u.auth });

beforeAll(async () => {
  t = await createTestPlatform();
  [payer, payee, merchant] = [await signUp(t.app), await signUp(t.app), await signUp(t.app, { kind: 'merchant' })];
  outsiders = [await signUp(t.app), await signUp(t.app, { kind: 'merchant' })];
  await fund(t.app, payer, 50_000);
  const card = await addCard(t.app, payer);
  const transfer = (await moneyPost(t.app, payer, '/v1/transfers', { to: payee.id, amount: 100, currency: 'USD' })).json().id as string;
  const held = (await moneyPost(t.app, payer, '/v1/payments', { merchantId: merchant.id, amount: 700, currency: 'USD', capture: false })).json().id as string;
  const captured = (await moneyPost(t.app, payer, '/v1/payments', { merchantId: merchant.id, amount: 900, currency: 'USD' })).json().id as string;
  const wallet = (await get(payer, '/v1/wallets')).json().wallets[0].id as string;
  const webhook = await t.app.inject({ method: 'POST', url: '/v1/webhooks', headers: merchant.auth, payload: { url: 'https://example.com/hooks', eventTypes: ['payment.captured'] } });
  expect(webhook.statusCode, webhook.body).toBe(201);
  const hook = webhook.json().id as string;
  owned = {
    '/v1/wallets/{id}': `/v1/wallets/${wallet}`,
    '/v1/payment-methods/{id}': `/v1/payment-methods/${card}`,
    '/v1/transfers/{id}': `/v1/transfers/${transfer}`,
    '/v1/transactions/{id}/receipt': `/v1/transactions/${transfer}/receipt`,
    '/v1/payments/{id}': `/v1/payments/${held}`,
    '/v1/payments/{id}/capture': `/v1/payments/${held}/capture`,
    '/v1/payments/{id}/void': `/v1/payments/${held}/void`,
    '/v1/payments/{id}/refunds': `/v1/payments/${captured}/refunds`,
    '/v1/webhooks/{id}': `/v1/webhooks/${hook}`,
    '/v1/webhooks/{id}/deliveries': `/v1/webhooks/${hook}/deliveries`,
    '/v1/webhooks/{id}/deliveries/{deliveryId}/retry': `/v1/webhooks/${hook}/deliveries/dlv_0000000000000000000000000000/retry`,
  };
  const doc = (await t.app.inject({ method: 'GET', url: '/docs/json' })).json() as { paths: Record<string, Record<string, unknown>> };
  paths = Object.entries(doc.paths)
    .filter(([path]) => path.includes('{') && !path.startsWith('/v1/admin/') && !path.startsWith('/v1/receipts/'))
    .flatMap(([path, ops]) => Object.keys(ops).map((method) => ({ method: method.toUpperCase(), path })));
});
afterAll(() => t?.close());

describe("another user's ids", () => {
  it('every user-owned path of the API has a case here', () => {
    expect(paths.length).toBeGreaterThan(10);
    expect(paths.filter(({ path }) => !owned[path]).map(({ method, path }) => `${method} ${path}`)).toEqual([]);
  });

  it('answer 404 to an outsider on every method, and leave the owners their money and things', async () => {
    const before = await Promise.all([payer, payee, merchant].map(async (u) => [(await get(u, '/v1/wallets')).json(), (await get(u, '/v1/payment-methods')).json(), (await get(u, '/v1/webhooks')).json()]));
    const heldBefore = (await get(payer, owned['/v1/payments/{id}']!)).json();
    for (const outsider of outsiders) {
      for (const { method, path } of paths) {
        const body = method === 'POST' || method === 'PATCH' ? (path.endsWith('/capture') || path.endsWith('/refunds') ? { amount: 1 } : {}) : undefined;
        const res = await t.app.inject({ method: method as 'GET', url: owned[path]!, headers: { ...outsider.auth, 'idempotency-key': `outsider-${method}-${path}-${outsider.id}` }, ...(body ? { payload: body } : {}) });
        expect(res.statusCode, `${method} ${path} by ${outsider.id}: ${res.body}`).toBe(404);
        expect(res.json().code).toBe('not_found');
      }
    }
    const after = await Promise.all([payer, payee, merchant].map(async (u) => [(await get(u, '/v1/wallets')).json(), (await get(u, '/v1/payment-methods')).json(), (await get(u, '/v1/webhooks')).json()]));
    expect(after).toEqual(before);
    expect((await get(payer, owned['/v1/payments/{id}']!)).json()).toEqual(heldBefore);
  });

  it('answer 404 to the payer for what only the merchant may do, and to the payee for the payer\'s things', async () => {
    for (const path of ['/v1/payments/{id}/capture', '/v1/payments/{id}/void', '/v1/payments/{id}/refunds']) {
      const res = await t.app.inject({ method: 'POST', url: owned[path]!, headers: { ...payer.auth, 'idempotency-key': `payer-${path}` }, payload: path.endsWith('/void') ? {} : { amount: 1 } });
      expect(res.statusCode, `${path}: ${res.body}`).toBe(404);
    }
    for (const path of ['/v1/wallets/{id}', '/v1/payment-methods/{id}', '/v1/payments/{id}', '/v1/webhooks/{id}']) {
      expect((await get(payee, owned[path]!)).statusCode, path).toBe(404);
    }
    // the parties of a transfer both read it
    expect((await get(payee, owned['/v1/transfers/{id}']!)).statusCode).toBe(200);
  });
});
