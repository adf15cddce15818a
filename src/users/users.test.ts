import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPlatform, signUp, uniqueEmail, type TestPlatform } from '../test-support/platform.js';
import { newId } from '../shared/ids.js';
import { isMissingPrincipal } from '../app.js';

let t: TestPlatform;
beforeAll(async () => {
  t = await createTestPlatform();
});
afterAll(() => t?.close());

describe('users', () => {
  it('signs up a user and opens a USD wallet', async () => {
    const email = uniqueEmail();
    const res = await t.app.inject({ method: 'POST', url: '/v1/users', payload: { email, password: 'long enough password', name: 'Ada' } });
    expect(res.statusCode).toBe(201);
    const user = res.json();
    expect(user).toMatchObject({ email, name: 'Ada', kind: 'person', region: 'us-east' });
    expect(user.id).toMatch(/^usr_\d{3}/);
    const login = await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { email, password: 'long enough password' } });
    expect(login.statusCode).toBe(200);
    const wallets = await t.app.inject({ method: 'GET', url: '/v1/wallets', headers: { authorization: `Bearer ${login.json().accessToken}` } });
    expect(wallets.json().wallets).toEqual([expect.objectContaining({ currency: 'USD', available: 0, pending: 0 })]);
  });

  it('rejects a second user with the same email (any case) with 409', async () => {
    const email = uniqueEmail();
    await signUp(t.app, { email });
    const res = await t.app.inject({ method: 'POST', url: '/v1/users', payload: { email: email.toUpperCase(), password: 'long enough password', name: 'B' } });
    expect(res.statusCode).toBe(409);
    expect(res.json().code).toBe('conflict');
  });

  it('opens the first wallet in the requested currency', async () => {
    const u = await signUp(t.app, { currency: 'EUR' });
    const res = await t.app.inject({ method: 'GET', url: '/v1/wallets', headers: u.auth });
    expect(res.json().wallets.map((w: { currency: string }) => w.currency)).toEqual(['EUR']);
  });

  it('rejects unknown fields with 400 validation_failed naming the field', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/users', payload: { email: uniqueEmail(), password: 'long enough password', name: 'X', admin: true } });
    expect(res.statusCode).toBe(400);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({ code: 'validation_failed', status: 400 });
    expect(res.json().detail).toContain('admin');
  });

  it('returns and updates the signed-in user', async () => {
    const u = await signUp(t.app);
    const me = await t.app.inject({ method: 'GET', url: '/v1/me', headers: u.auth });
    expect(me.json()).toMatchObject({ id: u.id, email: u.email });
    const patched = await t.app.inject({ method: 'PATCH', url: '/v1/me', headers: u.auth, payload: { name: 'Renamed', region: 'eu-west' } });
    expect(patched.statusCode).toBe(200);
    expect(patched.json()).toMatchObject({ name: 'Renamed', region: 'eu-west' });
  });

  it('answers 401, not 500, to a valid token whose user does not exist, and again on the next request', async () => {
    const ghost = newId('usr', 7);
    const auth = { authorization: `Bearer ${t.platform.tokens.issue(ghost).accessToken}` };
    for (let i = 0; i < 2; i++) {
      const me = await t.app.inject({ method: 'GET', url: '/v1/me', headers: auth });
      expect(me.statusCode).toBe(401);
      expect(me.json()).toMatchObject({ code: 'unauthorized' });
    }
  });

  it('answers 401, not 500, when a missing user opens a wallet or adds a card, and writes nothing', async () => {
    const ghost = newId('usr', 7);
    const auth = { authorization: `Bearer ${t.platform.tokens.issue(ghost).accessToken}` };
    const wallet = await t.app.inject({ method: 'POST', url: '/v1/wallets', headers: auth, payload: { currency: 'EUR' } });
    const card = await t.app.inject({ method: 'POST', url: '/v1/payment-methods', headers: { ...auth, 'idempotency-key': 'ghost-card' }, payload: { type: 'card', number: '4242424242424242', expMonth: 12, expYear: 2030, cvc: '123' } });
    for (const res of [wallet, card]) {
      expect(res.statusCode).toBe(401);
      expect(res.json()).toMatchObject({ code: 'unauthorized', detail: 'The user of this token no longer exists.' });
    }
    const sql = t.platform.db.forShard(7).sql;
    expect(await sql`select 1 from accounts where user_id = ${ghost} union all select 1 from payment_methods where user_id = ${ghost}`).toHaveLength(0);
  });

  it('recognises a missing caller from the constraint and key, whatever language the server writes its messages in', async () => {
    const ghost = newId('usr', 7);
    const sql = t.platform.db.forShard(7).sql;
    const err = await sql`insert into accounts (id, shard, user_id, kind, currency) values (${newId('wal', 7)}, 7, ${ghost}, 'user', 'USD')`.then(
      () => undefined,
      (e: unknown) => e as Record<string, unknown>,
    );
    expect(err).toMatchObject({ code: '23503', constraint_name: 'accounts_user_id_fkey' });
    expect(isMissingPrincipal(err, ghost)).toBe(true);
    // the same error from a server with lc_messages = de_DE: only the words around the key differ
    const german = { ...err, message: 'Einfügen oder Aktualisieren in Tabelle »accounts« verletzt Fremdschlüssel-Constraint »accounts_user_id_fkey«', detail: `Schlüssel (user_id)=(${ghost}) ist nicht in Tabelle »users« vorhanden.` };
    expect(isMissingPrincipal(german, ghost)).toBe(true);
    // someone else's missing id is not a bad token of the caller's
    expect(isMissingPrincipal(err, newId('usr', 7))).toBe(false);
    expect(isMissingPrincipal(err, undefined)).toBe(false);
  });
});
