import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LightMyRequestResponse } from 'fastify';
import { createTestPlatform, fund, moneyPost, signUp, type TestPlatform, type TestUser } from '../test-support/platform.js';
import { publicBaseUrl } from '../config/index.js';
import { signReceiptToken } from './service.js';

let t: TestPlatform;
let alice: TestUser;
let bob: TestUser;
let transfer: { id: string; createdAt: string };
const NOTE = '<b>lunch</b> & "tips" \'n stuff';

beforeAll(async () => {
  t = await createTestPlatform();
  [alice, bob] = await Promise.all([signUp(t.app), signUp(t.app)]);
  await fund(t.app, alice, 10_000);
  const res = await moneyPost(t.app, alice, '/v1/transfers', { to: bob.id, amount: 1234, currency: 'USD', note: NOTE });
  expect(res.statusCode).toBe(201);
  transfer = res.json();
});
afterAll(() => t?.close());

const receipt = (user: TestUser, id: string, headers: Record<string, string> = {}) =>
  t.app.inject({ method: 'GET', url: `/v1/transactions/${id}/receipt`, headers: { ...user.auth, ...headers } });
/** the path of a receipt URL, for app.inject */
const pathOf = (receiptUrl: string) => new URL(receiptUrl).pathname;
const tokenOf = (receiptUrl: string) => pathOf(receiptUrl).split('/').pop()!;
const maxAges = (res: LightMyRequestResponse) => {
  const cc = String(res.headers['cache-control']);
  return { maxAge: Number(/(?:^|[ ,])max-age=(\d+)/.exec(cc)?.[1]), sMaxAge: Number(/s-maxage=(\d+)/.exec(cc)?.[1]) };
};

describe('GET /v1/transactions/{id}/receipt', () => {
  it('gives the sender a JSON receipt of a completed transfer, as a debit to the recipient', async () => {
    const res = await receipt(alice, transfer.id);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('application/json');
    expect(res.headers['cache-control']).toBe('private, max-age=0');
    expect(res.headers.etag).toMatch(/^W\/"[A-Za-z0-9_-]+"$/);
    const body = res.json();
    expect(body).toEqual({
      id: transfer.id,
      type: 'transfer',
      direction: 'debit',
      amount: 1234,
      currency: 'USD',
      status: 'completed',
      counterparty: bob.id,
      note: NOTE,
      createdAt: transfer.createdAt,
      issuedAt: expect.any(String),
      receiptUrl: expect.stringMatching(/^https?:\/\/.+\/v1\/receipts\/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/),
      expiresAt: expect.any(String),
    });
    expect(body.receiptUrl.startsWith(`${publicBaseUrl(t.config)}/v1/receipts/`)).toBe(true);
    const validSeconds = (Date.parse(body.expiresAt) - Date.parse(body.issuedAt)) / 1000;
    expect(validSeconds).toBe(t.config.receiptUrlTtlSeconds);
    expect(Date.parse(body.issuedAt)).toBeLessThanOrEqual(Date.now());
  });

  it('gives the recipient their own side: a credit from the sender', async () => {
    const res = await receipt(bob, transfer.id);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ id: transfer.id, type: 'transfer', direction: 'credit', amount: 1234, currency: 'USD', status: 'completed', counterparty: alice.id, note: NOTE });
    expect(res.json().receiptUrl).not.toBe((await receipt(alice, transfer.id)).json().receiptUrl);
  });

  it('answers the same URL and ETag on repeated requests, so caches can reuse them', async () => {
    const [a, b] = [await receipt(alice, transfer.id), await receipt(alice, transfer.id)];
    expect(a.json().receiptUrl).toBe(b.json().receiptUrl);
    expect(a.headers.etag).toBe(b.headers.etag);
  });

  it('renders an HTML receipt with every value escaped and no external assets', async () => {
    const res = await receipt(alice, transfer.id, { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['cache-control']).toBe('private, max-age=0');
    expect(res.headers.etag).not.toBe((await receipt(alice, transfer.id)).headers.etag);
    const html = res.body;
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).toContain('Money sent');
    expect(html).toContain('12.34 USD');
    expect(html).toContain(transfer.id);
    expect(html).toContain(bob.id);
    expect(html).toContain('&lt;b&gt;lunch&lt;/b&gt; &amp; &quot;tips&quot; &#39;n stuff');
    expect(html).not.toContain('<b>');
    expect(html).not.toMatch(/<script|<link|\ssrc=|url\(/i);
    const bobs = await receipt(bob, transfer.id, { accept: 'text/html' });
    expect(bobs.body).toContain('Money received');
  });

  it('answers JSON when the client accepts anything or ranks JSON first', async () => {
    for (const accept of ['*/*', 'application/json', 'application/json, text/html;q=0.5']) {
      const res = await receipt(alice, transfer.id, { accept });
      expect(res.headers['content-type'], accept).toContain('application/json');
    }
  });

  it('answers 304 Not Modified when If-None-Match holds the current ETag', async () => {
    const first = await receipt(alice, transfer.id);
    const again = await receipt(alice, transfer.id, { 'if-none-match': String(first.headers.etag) });
    expect(again.statusCode).toBe(304);
    expect(again.body).toBe('');
    expect(again.headers.etag).toBe(first.headers.etag);
    const stale = await receipt(alice, transfer.id, { 'if-none-match': 'W/"something-else"' });
    expect(stale.statusCode).toBe(200);
  });

  it("answers 404 for another user's transaction, exactly as for an unknown one", async () => {
    const carol = await signUp(t.app);
    const other = await receipt(carol, transfer.id);
    expect(other.statusCode).toBe(404);
    expect(other.json()).toMatchObject({ code: 'not_found', status: 404 });
    const unknownId = transfer.id.slice(0, -4) + (transfer.id.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    for (const id of [unknownId, 'txn_not-an-id', 'usr_000' + 'A'.repeat(26), 'txn_999ZZZZZZZZZZ' + 'A'.repeat(16)]) {
      const res = await receipt(alice, id);
      expect(res.statusCode, id).toBe(404);
      expect(res.json().code).toBe('not_found');
    }
  });

  it('requires a bearer token', async () => {
    const res = await t.app.inject({ method: 'GET', url: `/v1/transactions/${transfer.id}/receipt` });
    expect(res.statusCode).toBe(401);
    expect(res.json().code).toBe('unauthorized');
  });

  it("gives a top-up's receipt too: a credit with no counterparty", async () => {
    const list = await t.app.inject({ method: 'GET', url: '/v1/transactions?type=topup', headers: alice.auth });
    const topup = list.json().transactions[0];
    const res = await receipt(alice, topup.id);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ id: topup.id, type: 'topup', direction: 'credit', amount: 10_000, status: 'completed' });
    expect(res.json()).not.toHaveProperty('counterparty');
  });
});

describe('GET /v1/receipts/{token} (the signed URL)', () => {
  it('serves the same receipt without a token, cacheable by a CDN until the URL expires', async () => {
    const own = (await receipt(alice, transfer.id)).json();
    const res = await t.app.inject({ method: 'GET', url: pathOf(own.receiptUrl) });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual(own);
    const { maxAge, sMaxAge } = maxAges(res);
    expect(res.headers['cache-control']).toMatch(/^public, /);
    expect(maxAge).toBeGreaterThan(0);
    expect(maxAge).toBeLessThanOrEqual(86_400);
    expect(sMaxAge).toBe(maxAge);
    expect(res.headers.etag).toMatch(/^W\/"[A-Za-z0-9_-]+"$/);
    expect(String(res.headers.vary).toLowerCase()).toContain('accept');
    expect(res.headers['x-robots-tag']).toBe('noindex');
  });

  it('serves HTML to a browser, with its own ETag', async () => {
    const url = pathOf((await receipt(bob, transfer.id)).json().receiptUrl);
    const json = await t.app.inject({ method: 'GET', url });
    const html = await t.app.inject({ method: 'GET', url, headers: { accept: 'text/html' } });
    expect(html.statusCode).toBe(200);
    expect(html.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(html.body).toContain('Money received');
    expect(html.headers['cache-control']).toMatch(/^public, max-age=\d+, s-maxage=\d+$/);
    expect(html.headers.etag).not.toBe(json.headers.etag);
  });

  it('answers 304 on a matching If-None-Match, with the caching headers', async () => {
    const url = pathOf((await receipt(alice, transfer.id)).json().receiptUrl);
    const first = await t.app.inject({ method: 'GET', url });
    const again = await t.app.inject({ method: 'GET', url, headers: { 'if-none-match': `"x", ${first.headers.etag}` } });
    expect(again.statusCode).toBe(304);
    expect(again.body).toBe('');
    expect(again.headers.etag).toBe(first.headers.etag);
    expect(again.headers['cache-control']).toMatch(/^public, max-age=\d+, s-maxage=\d+$/);
  });

  it('bounds max-age by the seconds the URL has left', async () => {
    const token = signReceiptToken(t.config.receiptSigningKey, { transactionId: transfer.id, userId: alice.id, issuedAt: new Date(Date.now() - 1000), expiresAt: new Date(Date.now() + 30_000) });
    const res = await t.app.inject({ method: 'GET', url: `/v1/receipts/${token}` });
    expect(res.statusCode).toBe(200);
    const { maxAge, sMaxAge } = maxAges(res);
    expect(maxAge).toBeGreaterThan(0);
    expect(maxAge).toBeLessThanOrEqual(30);
    expect(sMaxAge).toBe(maxAge);
  });

  it('answers 403 to a tampered token', async () => {
    const token = tokenOf((await receipt(alice, transfer.id)).json().receiptUrl);
    const [claims, sig] = token.split('.') as [string, string];
    // the same signature on claims that name Bob's side of the transfer
    const bobsClaims = Buffer.from(Buffer.from(claims, 'base64url').toString().replace(alice.id, bob.id)).toString('base64url');
    // a later expiry
    const longer = Buffer.from(Buffer.from(claims, 'base64url').toString().replace(/\.(\d+)$/, (_, s: string) => `.${Number(s) + 86_400}`)).toString('base64url');
    const flipLast = (s: string) => s.slice(0, -1) + (s.endsWith('A') ? 'B' : 'A');
    for (const bad of [`${bobsClaims}.${sig}`, `${longer}.${sig}`, `${claims}.${flipLast(sig)}`, `${claims}.${sig.slice(0, -1)}`, 'not-a-token', `${claims}.${sig}.extra`]) {
      const res = await t.app.inject({ method: 'GET', url: `/v1/receipts/${bad}` });
      expect(res.statusCode, bad).toBe(403);
      expect(res.json()).toMatchObject({ code: 'forbidden', status: 403 });
      expect(res.headers['cache-control']).toBe('no-store');
    }
  });

  it('answers 403 to a token signed with another key', async () => {
    const token = signReceiptToken('some-other-key-that-is-at-least-32-characters', { transactionId: transfer.id, userId: alice.id, issuedAt: new Date(), expiresAt: new Date(Date.now() + 60_000) });
    const res = await t.app.inject({ method: 'GET', url: `/v1/receipts/${token}` });
    expect(res.statusCode).toBe(403);
  });

  it('answers 404 for a genuine token naming a row the user does not have', async () => {
    const token = signReceiptToken(t.config.receiptSigningKey, { transactionId: transfer.id, userId: (await signUp(t.app)).id, issuedAt: new Date(), expiresAt: new Date(Date.now() + 60_000) });
    const res = await t.app.inject({ method: 'GET', url: `/v1/receipts/${token}` });
    expect(res.statusCode).toBe(404);
  });

  it('changes the ETag when a payment is captured later, and caches it only briefly while pending', async () => {
    const [payer, merchant] = await Promise.all([signUp(t.app), signUp(t.app, { kind: 'merchant' })]);
    await fund(t.app, payer, 5_000);
    const pay = await moneyPost(t.app, payer, '/v1/payments', { merchantId: merchant.id, amount: 2_500, currency: 'USD', capture: false });
    expect(pay.statusCode, pay.body).toBe(201);
    expect(pay.json().status).toBe('authorized');
    const own = await receipt(payer, pay.json().id);
    expect(own.json()).toMatchObject({ type: 'payment', direction: 'debit', status: 'pending', counterparty: merchant.id, amount: 2_500 });
    const url = pathOf(own.json().receiptUrl);
    const pending = await t.app.inject({ method: 'GET', url });
    expect(pending.json().status).toBe('pending');
    expect(maxAges(pending).maxAge).toBeLessThanOrEqual(60);

    const captured = await moneyPost(t.app, merchant, `/v1/payments/${pay.json().id}/capture`, {});
    expect(captured.statusCode, captured.body).toBe(200);
    const after = await t.app.inject({ method: 'GET', url, headers: { 'if-none-match': String(pending.headers.etag) } });
    expect(after.statusCode).toBe(200);
    expect(after.json().status).toBe('completed');
    expect(after.headers.etag).not.toBe(pending.headers.etag);
    expect(maxAges(after).maxAge).toBeGreaterThan(60);
    const merchants = await receipt(merchant, pay.json().id);
    expect(merchants.json()).toMatchObject({ type: 'payment', direction: 'credit', status: 'completed', counterparty: payer.id });
  });

  it('does not need or use a bearer token', async () => {
    const url = pathOf((await receipt(alice, transfer.id)).json().receiptUrl);
    const res = await t.app.inject({ method: 'GET', url, headers: { authorization: 'Bearer garbage' } });
    expect(res.statusCode).toBe(200);
  });

  it('is described in the OpenAPI document under receipts, without security', async () => {
    const doc = (await t.app.inject({ method: 'GET', url: '/docs/json' })).json();
    const shared = doc.paths['/v1/receipts/{token}'].get;
    const own = doc.paths['/v1/transactions/{id}/receipt'].get;
    expect(shared.tags).toEqual(['receipts']);
    expect(shared.security).toBeUndefined();
    expect(own.security).toEqual([{ bearer: [] }]);
    expect(Object.keys(own.responses['200'].content)).toEqual(['application/json', 'text/html']);
    expect(own.responses['304']).toBeDefined();
  });
});

describe('receipt URLs with a short TTL', () => {
  let s: TestPlatform;
  let user: TestUser;
  let topupId: string;
  beforeAll(async () => {
    s = await createTestPlatform({ RECEIPT_URL_TTL_SECONDS: '60' });
    user = await signUp(s.app);
    await fund(s.app, user, 100);
    topupId = (await s.app.inject({ method: 'GET', url: '/v1/transactions', headers: user.auth })).json().transactions[0].id;
  });
  afterAll(() => s?.close());

  it('issues URLs valid for the configured TTL and caches no longer than that', async () => {
    const own = (await s.app.inject({ method: 'GET', url: `/v1/transactions/${topupId}/receipt`, headers: user.auth })).json();
    expect((Date.parse(own.expiresAt) - Date.parse(own.issuedAt)) / 1000).toBe(60);
    const res = await s.app.inject({ method: 'GET', url: pathOf(own.receiptUrl) });
    expect(res.statusCode).toBe(200);
    expect(maxAges(res).maxAge).toBeLessThanOrEqual(60);
  });

  it('answers 404 once the URL has expired', async () => {
    const issuedAt = new Date(Date.now() - 120_000);
    const token = signReceiptToken(s.config.receiptSigningKey, { transactionId: topupId, userId: user.id, issuedAt, expiresAt: new Date(issuedAt.getTime() + 60_000) });
    const res = await s.app.inject({ method: 'GET', url: `/v1/receipts/${token}` });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toMatchObject({ code: 'not_found', status: 404 });
    expect(res.headers['cache-control']).toBe('no-store');
  });
});
