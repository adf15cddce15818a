import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSigner } from 'fast-jwt';
import { createTestPlatform, signUp, uniqueEmail, type TestPlatform } from '../test-support/platform.js';

let t: TestPlatform;
beforeAll(async () => {
  t = await createTestPlatform({ LOGIN_MAX_FAILURES_PER_ACCOUNT: '3', LOGIN_MAX_FAILURES_PER_IP: '6' });
});
afterAll(() => t?.close());

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
const me = (token: string) => t.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${token}` } });

describe('access tokens', () => {
  it('accepts a token it issued', async () => {
    const u = await signUp(t.app);
    expect((await me(u.token)).statusCode).toBe(200);
  });

  it('answers 401 without a token, and for a tampered, expired, alg:none or foreign token', async () => {
    const u = await signUp(t.app);
    const [h, p, s] = u.token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
    const now = Math.floor(Date.now() / 1000);
    const sign = (extra: Record<string, unknown>, key = t.config.jwtSecret) => createSigner({ key, algorithm: 'HS256' })({ sub: u.id, iss: t.config.jwtIssuer, aud: t.config.jwtAudience, iat: now, exp: now + 60, ...extra });
    const bad = {
      tamperedSignature: `${h}.${p}.${s.slice(0, -2)}${s.endsWith('AA') ? 'BB' : 'AA'}`,
      tamperedClaims: `${h}.${b64({ ...claims, sub: 'usr_0000000000000000000000000000' })}.${s}`,
      algNone: `${b64({ alg: 'none', typ: 'JWT' })}.${p}.`,
      expired: sign({ iat: now - 7200, exp: now - 3600 }),
      wrongAudience: sign({ aud: 'someone-else' }),
      wrongIssuer: sign({ iss: 'someone-else' }),
      foreignKey: sign({}, 'another-secret-of-at-least-32-characters!!'),
      garbage: 'not.a.jwt',
    };
    expect((await t.app.inject({ method: 'GET', url: '/v1/me' })).statusCode).toBe(401);
    for (const [name, token] of Object.entries(bad)) {
      const res = await me(token);
      expect(res.statusCode, name).toBe(401);
      expect(res.json().code, name).toBe('unauthorized');
    }
  });
});

describe('login', () => {
  it('answers the same for an unknown email and a wrong password', async () => {
    const u = await signUp(t.app);
    const unknown = await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { email: uniqueEmail(), password: 'whatever it is' }, remoteAddress: '10.0.0.1' });
    const wrong = await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { email: u.email, password: 'not the password' }, remoteAddress: '10.0.0.2' });
    expect(unknown.statusCode).toBe(401);
    expect(wrong.statusCode).toBe(401);
    const strip = (b: Record<string, unknown>) => ({ ...b });
    expect(strip(unknown.json())).toEqual(strip(wrong.json()));
  });

  it('locks an account after too many failures, even with the right password, and says when to retry', async () => {
    const u = await signUp(t.app);
    for (let i = 0; i < 3; i++) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { email: u.email, password: 'wrong password' }, remoteAddress: `10.1.0.${i}` });
      expect(res.statusCode).toBe(401);
    }
    const locked = await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { email: u.email, password: 'correct horse battery staple' }, remoteAddress: '10.1.1.1' });
    expect(locked.statusCode).toBe(429);
    expect(locked.json().code).toBe('rate_limited');
    expect(Number(locked.headers['retry-after'])).toBeGreaterThan(0);
    expect(locked.headers['ratelimit-remaining']).toBe('0');
  });

  it('limits failures per client address while other users behind it can still sign in', async () => {
    const ip = '10.2.0.1';
    for (let i = 0; i < 6; i++) {
      await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { email: uniqueEmail(), password: 'guess guess' }, remoteAddress: ip });
    }
    const blocked = await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { email: uniqueEmail(), password: 'guess guess' }, remoteAddress: ip });
    expect(blocked.statusCode).toBe(429);
    const elsewhere = await signUp(t.app);
    const ok = await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { email: elsewhere.email, password: 'correct horse battery staple' }, remoteAddress: '10.2.0.2' });
    expect(ok.statusCode).toBe(200);
  });
});
