/**
 * /readyz and the cache: Redis is optional (reads fall through to PostgreSQL), so Redis down
 * makes the instance degraded, still ready; PostgreSQL down makes it unavailable.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createTestPlatform, signUp, type TestPlatform } from '../test-support/platform.js';

const opened: TestPlatform[] = [];
afterAll(() => Promise.all(opened.map((t) => t.close())));
async function platform(env: Record<string, string> = {}): Promise<TestPlatform> {
  const t = await createTestPlatform(env);
  opened.push(t);
  return t;
}

describe('/readyz', () => {
  it('is ready without Redis configured', async () => {
    const t = await platform();
    const res = await t.app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'ready' });
  });

  it('is ready when Redis answers', async () => {
    const t = await platform({ REDIS_URL: 'redis://127.0.0.1:6379' });
    const u = await signUp(t.app);
    expect((await t.app.inject({ method: 'GET', url: '/v1/wallets', headers: u.auth })).statusCode).toBe(200);
    const res = await t.app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'ready' });
  });

  it('answers 200 degraded, naming redis, once the breaker has opened on a dead Redis; the API keeps answering', async () => {
    const t = await platform({ REDIS_URL: 'redis://127.0.0.1:6390', CACHE_BREAKER_FAILURES: '1' });
    const u = await signUp(t.app);
    for (let i = 0; i < 3; i++) {
      const res = await t.app.inject({ method: 'GET', url: '/v1/wallets', headers: u.auth });
      expect(res.statusCode).toBe(200);
      expect(res.json().wallets).toHaveLength(1);
    }
    const res = await t.app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'degraded', degraded: ['redis'] });
  });

  it('answers 503 naming the PostgreSQL cluster when the database is gone, Redis degraded or not', async () => {
    const t = await platform({ REDIS_URL: 'redis://127.0.0.1:6390', CACHE_BREAKER_FAILURES: '1' });
    const u = await signUp(t.app);
    await t.app.inject({ method: 'GET', url: '/v1/wallets', headers: u.auth });
    await t.platform.db.close();
    const res = await t.app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('5');
    expect(res.json()).toEqual({ status: 'unavailable', failing: [expect.stringMatching(/^postgres:/)], degraded: ['redis'] });
  });
});
