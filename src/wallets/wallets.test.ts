import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPlatform, fund, signUp, type TestPlatform } from '../test-support/platform.js';

let t: TestPlatform;
beforeAll(async () => {
  t = await createTestPlatform();
});
afterAll(() => t?.close());

describe('wallets', () => {
  it('opens a wallet in another currency and lists both', async () => {
    const u = await signUp(t.app);
    const res = await t.app.inject({ method: 'POST', url: '/v1/wallets', headers: u.auth, payload: { currency: 'JPY' } });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ id: expect.stringMatching(/^wal_/), currency: 'JPY', available: 0, pending: 0 });
    const list = await t.app.inject({ method: 'GET', url: '/v1/wallets', headers: u.auth });
    expect(list.json().wallets.map((w: { currency: string }) => w.currency).sort()).toEqual(['JPY', 'USD']);
  });

  it('answers 409 for a second wallet in the same currency', async () => {
    const u = await signUp(t.app);
    const res = await t.app.inject({ method: 'POST', url: '/v1/wallets', headers: u.auth, payload: { currency: 'USD' } });
    expect(res.statusCode).toBe(409);
    expect(res.json().code).toBe('conflict');
  });

  it('rejects a currency that is not ISO 4217', async () => {
    const u = await signUp(t.app);
    for (const currency of ['usd', 'XXX1', 'ABC']) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/wallets', headers: u.auth, payload: { currency } });
      expect(res.statusCode, currency).toBe(400);
    }
  });

  it("reads one of the user's wallets, and answers 404 for another user's", async () => {
    const [u, v] = [await signUp(t.app), await signUp(t.app)];
    await fund(t.app, u, 1_234);
    const mine = (await t.app.inject({ method: 'GET', url: '/v1/wallets', headers: u.auth })).json().wallets[0];
    const got = await t.app.inject({ method: 'GET', url: `/v1/wallets/${mine.id}`, headers: u.auth });
    expect(got.statusCode).toBe(200);
    expect(got.json()).toMatchObject({ id: mine.id, currency: 'USD', available: 1_234, pending: 0 });
    const theirs = await t.app.inject({ method: 'GET', url: `/v1/wallets/${mine.id}`, headers: v.auth });
    expect(theirs.statusCode).toBe(404);
    expect(theirs.json().code).toBe('not_found');
    expect((await t.app.inject({ method: 'GET', url: '/v1/wallets/wal_nope', headers: u.auth })).statusCode).toBe(404);
  });

  it('requires a token', async () => {
    expect((await t.app.inject({ method: 'GET', url: '/v1/wallets' })).statusCode).toBe(401);
  });
});
