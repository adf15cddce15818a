import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { balance, createTestPlatform, fund, idemKey, moneyPost, signUp, type TestPlatform } from '../test-support/platform.js';

let t: TestPlatform;
beforeAll(async () => {
  t = await createTestPlatform();
});
afterAll(() => t?.close());

describe('P2P transfers', () => {
  it('moves money from sender to recipient and both see it', async () => {
    const [a, b] = [await signUp(t.app), await signUp(t.app)];
    await fund(t.app, a, 10_000);
    const res = await moneyPost(t.app, a, '/v1/transfers', { to: b.id, amount: 2_550, currency: 'USD', note: 'lunch' });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ status: 'completed', from: a.id, to: b.id, amount: 2_550, currency: 'USD', note: 'lunch' });
    expect(await balance(t.app, a)).toEqual({ available: 7_450, pending: 0 });
    expect(await balance(t.app, b)).toEqual({ available: 2_550, pending: 0 });
    for (const viewer of [a, b]) {
      const got = await t.app.inject({ method: 'GET', url: `/v1/transfers/${res.json().id}`, headers: viewer.auth });
      expect(got.statusCode).toBe(200);
      expect(got.json()).toEqual(res.json());
    }
  });

  it('refuses a transfer that would overdraw the wallet and moves nothing', async () => {
    const [a, b] = [await signUp(t.app), await signUp(t.app)];
    await fund(t.app, a, 100);
    const res = await moneyPost(t.app, a, '/v1/transfers', { to: b.id, amount: 101, currency: 'USD' });
    expect(res.statusCode).toBe(422);
    expect(res.json().code).toBe('insufficient_funds');
    expect(await balance(t.app, a)).toEqual({ available: 100, pending: 0 });
    expect(await balance(t.app, b)).toEqual({ available: 0, pending: 0 });
  });

  it('answers 404 for an unknown recipient', async () => {
    const a = await signUp(t.app);
    await fund(t.app, a, 100);
    for (const to of ['usr_nope', 'usr_0010000000000000000000000000']) {
      const res = await moneyPost(t.app, a, '/v1/transfers', { to, amount: 1, currency: 'USD' });
      expect(res.statusCode).toBe(404);
      expect(res.json().code).toBe('not_found');
    }
  });

  it('answers currency_mismatch when either side has no wallet in the currency', async () => {
    const [a, b] = [await signUp(t.app), await signUp(t.app, { currency: 'EUR' })];
    await fund(t.app, a, 100);
    const res = await moneyPost(t.app, a, '/v1/transfers', { to: b.id, amount: 1, currency: 'USD' });
    expect(res.statusCode).toBe(422);
    expect(res.json().code).toBe('currency_mismatch');
    const res2 = await moneyPost(t.app, a, '/v1/transfers', { to: b.id, amount: 1, currency: 'EUR' });
    expect(res2.json().code).toBe('currency_mismatch');
  });

  it('rejects amounts that are not positive integers with 400, and above the maximum with 422', async () => {
    const [a, b] = [await signUp(t.app), await signUp(t.app)];
    for (const amount of [0, -5, 1.5, '100', null]) {
      const res = await moneyPost(t.app, a, '/v1/transfers', { to: b.id, amount, currency: 'USD' });
      expect(res.statusCode, `amount ${amount}`).toBe(400);
      expect(res.json().code).toBe('validation_failed');
    }
    const big = await moneyPost(t.app, a, '/v1/transfers', { to: b.id, amount: 100_000_001, currency: 'USD' });
    expect(big.statusCode).toBe(422);
    expect(big.json().code).toBe('limit_exceeded');
    const cur = await moneyPost(t.app, a, '/v1/transfers', { to: b.id, amount: 1, currency: 'usd' });
    expect(cur.statusCode).toBe(400);
  });

  it('refuses a transfer to yourself', async () => {
    const a = await signUp(t.app);
    await fund(t.app, a, 100);
    const res = await moneyPost(t.app, a, '/v1/transfers', { to: a.id, amount: 1, currency: 'USD' });
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({ code: 'conflict', status: 409 });
    expect(await balance(t.app, a)).toEqual({ available: 100, pending: 0 });
  });

  it('requires an Idempotency-Key', async () => {
    const [a, b] = [await signUp(t.app), await signUp(t.app)];
    const res = await t.app.inject({ method: 'POST', url: '/v1/transfers', headers: a.auth, payload: { to: b.id, amount: 1, currency: 'USD' } });
    expect(res.statusCode).toBe(400);
    expect(res.json().code).toBe('idempotency_key_required');
  });

  it('replays the original answer for the same key and body, and refuses the key with another body', async () => {
    const [a, b] = [await signUp(t.app), await signUp(t.app)];
    await fund(t.app, a, 1_000);
    const key = idemKey();
    const first = await moneyPost(t.app, a, '/v1/transfers', { to: b.id, amount: 300, currency: 'USD' }, key);
    const again = await moneyPost(t.app, a, '/v1/transfers', { to: b.id, amount: 300, currency: 'USD' }, key);
    expect(again.statusCode).toBe(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body).toBe(first.body);
    const other = await moneyPost(t.app, a, '/v1/transfers', { to: b.id, amount: 301, currency: 'USD' }, key);
    expect(other.statusCode).toBe(422);
    expect(other.json().code).toBe('idempotency_key_reused');
    expect(await balance(t.app, a)).toEqual({ available: 700, pending: 0 });
  });

  it('replays a refusal too: the same key never moves money later', async () => {
    const [a, b] = [await signUp(t.app), await signUp(t.app)];
    const key = idemKey();
    const first = await moneyPost(t.app, a, '/v1/transfers', { to: b.id, amount: 50, currency: 'USD' }, key);
    expect(first.json().code).toBe('insufficient_funds');
    await fund(t.app, a, 100);
    const again = await moneyPost(t.app, a, '/v1/transfers', { to: b.id, amount: 50, currency: 'USD' }, key);
    expect(again.statusCode).toBe(422);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(await balance(t.app, a)).toEqual({ available: 100, pending: 0 });
  });

  it('lets only the sender and the recipient read a transfer', async () => {
    const [a, b, c] = [await signUp(t.app), await signUp(t.app), await signUp(t.app)];
    await fund(t.app, a, 100);
    const res = await moneyPost(t.app, a, '/v1/transfers', { to: b.id, amount: 10, currency: 'USD' });
    const stranger = await t.app.inject({ method: 'GET', url: `/v1/transfers/${res.json().id}`, headers: c.auth });
    expect(stranger.statusCode).toBe(404);
    for (const id of ['not-an-id', 'txn_999ZZZZZZZZZZAAAAAAAAAAAAAAAA']) {
      const garbage = await t.app.inject({ method: 'GET', url: `/v1/transfers/${id}`, headers: a.auth });
      expect(garbage.statusCode, id).toBe(404);
    }
  });
});

describe('P2P transfers under concurrency', () => {
  it('of 200 parallel transfers of 1 from a wallet holding 100, exactly 100 succeed', async () => {
    const [a, b] = [await signUp(t.app), await signUp(t.app)];
    await fund(t.app, a, 100);
    const results = await Promise.all(Array.from({ length: 200 }, () => moneyPost(t.app, a, '/v1/transfers', { to: b.id, amount: 1, currency: 'USD' })));
    const codes = results.map((r) => r.statusCode);
    expect(codes.filter((c) => c === 201)).toHaveLength(100);
    expect(codes.filter((c) => c === 422)).toHaveLength(100);
    expect(results.filter((r) => r.statusCode === 422).every((r) => r.json().code === 'insufficient_funds')).toBe(true);
    expect(await balance(t.app, a)).toEqual({ available: 0, pending: 0 });
    expect(await balance(t.app, b)).toEqual({ available: 100, pending: 0 });
  });

  it('of 50 parallel requests with one Idempotency-Key, exactly one moves money; the rest replay or get 409', async () => {
    const [a, b] = [await signUp(t.app), await signUp(t.app)];
    await fund(t.app, a, 1_000);
    const key = idemKey();
    const results = await Promise.all(Array.from({ length: 50 }, () => moneyPost(t.app, a, '/v1/transfers', { to: b.id, amount: 7, currency: 'USD' }, key)));
    const fresh = results.filter((r) => r.statusCode === 201 && r.headers['idempotent-replayed'] !== 'true');
    const replays = results.filter((r) => r.statusCode === 201 && r.headers['idempotent-replayed'] === 'true');
    const conflicts = results.filter((r) => r.statusCode === 409);
    expect(fresh).toHaveLength(1);
    expect(replays.length + conflicts.length).toBe(49);
    expect(replays.every((r) => r.body === fresh[0]!.body)).toBe(true);
    expect(await balance(t.app, a)).toEqual({ available: 993, pending: 0 });
  });

  it('two platforms on one database never move money twice for one key (cross-process duplicate)', async () => {
    // a second platform (as a second api process would be) on the same database
    const { createPlatform } = await import('../platform.js');
    const { buildApp } = await import('../app.js');
    const p2 = createPlatform(t.config, { databaseUrl: t.databaseUrl });
    const app2 = await buildApp(p2);
    try {
      const [a, b] = [await signUp(t.app), await signUp(t.app)];
      await fund(t.app, a, 1_000);
      const key = idemKey();
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => moneyPost(i % 2 ? app2 : t.app, a, '/v1/transfers', { to: b.id, amount: 9, currency: 'USD' }, key)),
      );
      expect(results.every((r) => r.statusCode === 201 || r.statusCode === 409)).toBe(true);
      expect(results.filter((r) => r.statusCode === 201 && r.headers['idempotent-replayed'] !== 'true')).toHaveLength(1);
      expect(await balance(t.app, a)).toEqual({ available: 991, pending: 0 });
    } finally {
      await app2.close();
      await p2.close();
    }
  });
});
