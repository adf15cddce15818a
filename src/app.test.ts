import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPlatform, signUp, type TestPlatform } from './test-support/platform.js';
import { securityHeaders } from './http/security-headers.js';

let t: TestPlatform;
beforeAll(async () => {
  t = await createTestPlatform({ BODY_LIMIT_BYTES: '2048' });
});
afterAll(() => t?.close());

describe('HTTP conventions', () => {
  it('echoes a valid x-request-id and makes one up otherwise', async () => {
    const echoed = await t.app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'abc-123' } });
    expect(echoed.headers['x-request-id']).toBe('abc-123');
    const made = await t.app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'bad id with spaces' } });
    expect(made.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('sends security headers', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/healthz' });
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['content-security-policy']).toBeDefined();
    expect(res.headers['x-frame-options']).toBeDefined();
  });

  it("sends helmet's whole set, with the API's CSP, on answers of every kind, and HSTS only in production", async () => {
    for (const res of [await t.app.inject({ method: 'GET', url: '/healthz' }), await t.app.inject({ method: 'GET', url: '/v1/nowhere' }), await t.app.inject({ method: 'GET', url: '/v1/wallets' })]) {
      expect(res.headers['content-security-policy']).toContain("img-src 'self' data:");
      expect(res.headers['content-security-policy']).toContain("default-src 'self'");
      expect(res.headers['x-frame-options']).toBe('SAMEORIGIN');
      expect(res.headers['referrer-policy']).toBe('no-referrer');
      expect(res.headers['cross-origin-opener-policy']).toBe('same-origin');
      expect(res.headers['strict-transport-security']).toBeUndefined();
    }
    expect(securityHeaders({ strictTransportSecurity: true })['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
  });

  it('compresses with br or gzip when the client accepts it', async () => {
    const br = await t.app.inject({ method: 'GET', url: '/docs/json', headers: { 'accept-encoding': 'br' } });
    expect(br.headers['content-encoding']).toBe('br');
    const gz = await t.app.inject({ method: 'GET', url: '/docs/json', headers: { 'accept-encoding': 'gzip' } });
    expect(gz.headers['content-encoding']).toBe('gzip');
  });

  it('answers unknown routes with a 404 problem', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/v1/nothing-here' });
    expect(res.statusCode).toBe(404);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({ status: 404, code: 'not_found', type: expect.any(String), title: expect.any(String) });
  });

  it('answers a malformed or overlong URL with a 400 problem carrying the usual headers', async () => {
    for (const url of ['/v1/wallets/%ED%A0%80', '/v1/wallets/%zz', `/v1/wallets/${'a'.repeat(201)}`]) {
      const res = await t.app.inject({ method: 'GET', url, headers: { 'x-request-id': 'bad-url-1' } });
      expect(res.statusCode, url).toBe(400);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json()).toMatchObject({ status: 400, code: 'validation_failed' });
      expect(res.headers['x-request-id']).toBe('bad-url-1');
      expect(res.headers['x-content-type-options']).toBe('nosniff');
    }
  });

  it('refuses the NUL character in a path, a query or a JSON body with 400, and writes nothing', async () => {
    const user = await signUp(t.app);
    const email = `nul-${Date.now()}@example.com`;
    const answers = [
      await t.app.inject({ method: 'GET', url: '/v1/wallets/wal_%00', headers: user.auth }),
      await t.app.inject({ method: 'GET', url: '/v1/transactions?cursor=a%00b', headers: user.auth }),
      await t.app.inject({ method: 'POST', url: '/v1/users', headers: { 'content-type': 'application/json' }, payload: `{"email":"${email}","password":"long enough password","name":"a\\u0000b"}` }),
    ];
    for (const res of answers) {
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json()).toMatchObject({ code: 'validation_failed', detail: 'Text may not contain the NUL character (U+0000).' });
    }
    const login = await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { email, password: 'long enough password' } });
    expect(login.statusCode).toBe(401);
  });

  it('takes a body that spells out \\u0000 as text', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/users', headers: { 'content-type': 'application/json' }, payload: `{"email":"spelled-${Date.now()}@example.com","password":"long enough password","name":"a\\\\u0000b"}` });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json().name).toBe('a\\u0000b');
  });

  it('refuses a body over the limit with 413 and malformed JSON with 400', async () => {
    const big = await t.app.inject({ method: 'POST', url: '/v1/users', payload: { email: 'a@b.co', password: 'x'.repeat(4000), name: 'n' } });
    expect(big.statusCode).toBe(413);
    expect(big.json().code).toBe('payload_too_large');
    const broken = await t.app.inject({ method: 'POST', url: '/v1/users', headers: { 'content-type': 'application/json' }, payload: '{"email":' });
    expect(broken.statusCode).toBe(400);
    expect(broken.json().code).toBe('validation_failed');
  });

  it('serves the OpenAPI document with every API route', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/docs/json' });
    expect(res.statusCode).toBe(200);
    const paths = Object.keys(res.json().paths);
    for (const p of ['/v1/users', '/v1/auth/token', '/v1/me', '/v1/wallets', '/v1/wallets/{id}', '/v1/payment-methods', '/v1/payment-methods/{id}', '/v1/topups', '/v1/transfers', '/v1/transfers/{id}', '/v1/transactions', '/v1/transactions/{id}/receipt', '/v1/payments', '/v1/payments/{id}', '/v1/payments/{id}/capture', '/v1/payments/{id}/void', '/v1/payments/{id}/refunds', '/healthz', '/readyz', '/metrics']) {
      expect(paths, p).toContain(p);
    }
    const ui = await t.app.inject({ method: 'GET', url: '/docs' });
    expect([200, 302]).toContain(ui.statusCode);
  });

  it('reports readiness and metrics', async () => {
    const ready = await t.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    const u = await signUp(t.app);
    await t.app.inject({ method: 'GET', url: '/v1/wallets', headers: u.auth });
    const metrics = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.statusCode).toBe(200);
    expect(metrics.body).toMatch(/http_requests_total\{method="GET",route="\/v1\/wallets",status="200"\} 1/);
    expect(metrics.body).toContain('http_request_duration_seconds_bucket');
  });
});

describe('when something fails on our side', () => {
  it('answers a masked 500 naming the request id, never the internals', async () => {
    const own = await createTestPlatform();
    try {
      const u = await signUp(own.app);
      (own.platform.cache as { get: unknown }).get = async () => {
        throw new TypeError('cannot read select * from accounts (at src/wallets/service.ts:42)');
      };
      const res = await own.app.inject({ method: 'GET', url: '/v1/wallets', headers: { ...u.auth, 'x-request-id': 'trace-me' } });
      expect(res.statusCode).toBe(500);
      expect(res.json()).toMatchObject({ code: 'internal', status: 500 });
      expect(res.json().detail).toContain('trace-me');
      expect(res.body).not.toMatch(/select|accounts|\.ts|TypeError/i);
    } finally {
      await own.close();
    }
  });
});

describe('when the database is gone', () => {
  it('answers 503 unavailable with Retry-After (no SQL, no stack) and readiness names the cluster', async () => {
    const own = await createTestPlatform();
    const u = await signUp(own.app);
    await own.platform.db.close();
    const res = await own.app.inject({ method: 'GET', url: '/v1/wallets', headers: { ...u.auth, 'x-request-id': 'trace-me' } });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toMatchObject({ code: 'unavailable', status: 503 });
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expect(res.body).not.toMatch(/select|accounts|at .*\.ts|postgres/i);
    const ready = await own.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(503);
    expect(ready.json().failing).toEqual(['postgres:main']);
    await own.close(); // closing an ended pool again is harmless; the test database is dropped
  });
});
