import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createTestPlatform, fund, moneyPost, signUp, type TestPlatform } from '../test-support/platform.js';
import { createTokenBucket, registerShedding } from './shedding.js';
import { ProblemSchema } from './schemas.js';

describe('load shedding: reads are refused before money moves', () => {
  let t: TestPlatform;
  beforeAll(async () => {
    // a bucket of 3 reads refilled at one read a second: of 10 reads in a row, at least 3 are
    // over the limit unless the 10 take more than 4 s
    t = await createTestPlatform({ HTTP_READS_PER_SECOND: '1', HTTP_READS_BURST: '3' });
  });
  afterAll(() => t?.close());

  it('answers reads over the limit 429 rate_limited with Retry-After while every transfer still succeeds', async () => {
    const [alice, bob] = [await signUp(t.app), await signUp(t.app)];
    await fund(t.app, alice, 10_000);
    const reads = [];
    for (let i = 0; i < 10; i++) reads.push(await t.app.inject({ method: 'GET', url: i % 2 ? '/v1/transactions?limit=5' : '/v1/wallets', headers: alice.auth }));
    const limited = reads.filter((r) => r.statusCode === 429);
    expect(limited.length).toBeGreaterThanOrEqual(3);
    for (const r of limited) {
      expect(r.headers['content-type']).toContain('application/problem+json');
      expect(r.json()).toMatchObject({ status: 429, code: 'rate_limited' });
      expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(r.headers['ratelimit-limit']).toBe('1');
      expect(r.headers['ratelimit-remaining']).toBe('0');
      expect(r.headers['x-request-id']).toBeTruthy();
      expect(r.headers['x-content-type-options']).toBe('nosniff'); // security headers on a shed answer too
    }

    const transfers = await Promise.all(Array.from({ length: 20 }, () => moneyPost(t.app, alice, '/v1/transfers', { to: bob.id, amount: 100, currency: 'USD' })));
    expect(transfers.map((r) => r.statusCode)).toEqual(Array(20).fill(201));
    // operations routes are outside the read class
    expect((await t.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    // the OpenAPI document says so
    const doc = (await t.app.inject({ method: 'GET', url: '/docs/json' })).json();
    expect(Object.keys(doc.paths['/v1/wallets'].get.responses)).toEqual(expect.arrayContaining(['200', '429', '503']));
    expect(Object.keys(doc.paths['/v1/transfers'].post.responses)).toEqual(expect.arrayContaining(['201', '503']));
    expect(Object.keys(doc.paths['/v1/transfers'].post.responses)).not.toContain('429');
    const metrics = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toMatch(/http_shed_total\{class="read",reason="rate"\} [1-9]/);
  });
});

describe('load shedding: an overloaded process refuses reads, not money', () => {
  it('answers reads 503 unavailable while HTTP_SHED_READS_AT_IN_FLIGHT requests are in flight, and still admits money-moving requests', async () => {
    const app = Fastify();
    app.addSchema(ProblemSchema);
    registerShedding(app, { readsPerSecond: 0, readsBurst: 1, shedReadsAtInFlight: 2, moneyConcurrency: 100, moneyQueueMax: 100 });
    let entered = 0;
    let arrived!: () => void;
    const twoInHandler = new Promise<void>((r) => (arrived = r));
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    // money waiting on the ledger: two transfers held in their handler
    app.post('/v1/transfers', async (req) => {
      if ((req.body as { hold?: boolean } | undefined)?.hold) {
        if (++entered === 2) arrived();
        await held;
      }
      return { ok: true };
    });
    app.get('/v1/wallets', async () => ({ ok: true }));
    await app.ready();
    try {
      const slow = [1, 2].map(() => app.inject({ method: 'POST', url: '/v1/transfers', payload: { hold: true } }));
      await twoInHandler;
      const refused = await app.inject({ method: 'GET', url: '/v1/wallets' });
      expect(refused.statusCode).toBe(503);
      expect(refused.json()).toMatchObject({ code: 'unavailable' });
      expect(refused.headers['retry-after']).toBe('1');
      // a third transfer is admitted although the process is over its read threshold
      expect((await app.inject({ method: 'POST', url: '/v1/transfers', payload: {} })).statusCode).toBe(200);
      release();
      expect((await Promise.all(slow)).map((r) => r.statusCode)).toEqual([200, 200]);
      expect((await app.inject({ method: 'GET', url: '/v1/wallets' })).statusCode).toBe(200);
    } finally {
      await app.close();
    }
  });
});

describe('admission of money-moving requests', () => {
  it('processes HTTP_MONEY_CONCURRENCY at a time in arrival order, queues the rest, and refuses only beyond HTTP_MONEY_QUEUE_MAX', async () => {
    const app = Fastify();
    app.addSchema(ProblemSchema);
    registerShedding(app, { readsPerSecond: 0, readsBurst: 1, shedReadsAtInFlight: 1000, moneyConcurrency: 2, moneyQueueMax: 2 });
    const started: number[] = [];
    const releases: (() => void)[] = [];
    let startedTwo!: () => void;
    const twoStarted = new Promise<void>((r) => (startedTwo = r));
    app.post('/v1/transfers', async (req) => {
      const n = (req.body as { n: number }).n;
      started.push(n);
      if (started.length === 2) startedTwo();
      await new Promise<void>((r) => releases.push(r));
      return { n };
    });
    app.get('/v1/wallets', async () => ({ ok: true }));
    await app.ready();
    try {
      const post = (n: number) => app.inject({ method: 'POST', url: '/v1/transfers', payload: { n } });
      const first = [post(1), post(2)];
      await twoStarted;
      // two are processed; of the next three, two wait and one finds the queue full
      const rest = [post(3), post(4), post(5)];
      const refused = await Promise.race(rest);
      expect(refused.statusCode).toBe(503);
      expect(refused.json()).toMatchObject({ code: 'unavailable' });
      expect(refused.headers['retry-after']).toBe('1');
      expect(started).toEqual([1, 2]); // the waiting ones have not started
      expect((await app.inject({ method: 'GET', url: '/v1/wallets' })).statusCode).toBe(200); // reads are not behind money
      // as each one finishes, the next waiting one starts
      releases.shift()!();
      await first[0];
      await vi.waitFor(() => expect(started.length).toBe(3));
      while (started.length < 4 || releases.length) {
        if (releases.length) releases.shift()!();
        await new Promise((r) => setImmediate(r));
      }
      const answers = await Promise.all([...first, ...rest]);
      expect(answers.map((r) => r.statusCode).sort()).toEqual([200, 200, 200, 200, 503]);
      expect(started).toHaveLength(4);
    } finally {
      await app.close();
    }
  });
});

describe('token bucket', () => {
  it('allows the burst, then one token per 1/rate seconds, and says how long to wait', () => {
    let now = 0;
    const bucket = createTokenBucket(10, 2, () => now);
    expect(bucket.take().ok).toBe(true);
    expect(bucket.take().ok).toBe(true);
    const refused = bucket.take();
    expect(refused).toEqual({ ok: false, waitMs: 100 });
    now = 100;
    expect(bucket.take().ok).toBe(true);
    expect(bucket.take().ok).toBe(false);
    now = 10_000; // refills to the burst, not beyond
    expect(bucket.take()).toEqual({ ok: true, remaining: 1 });
    expect(bucket.take().ok).toBe(true);
    expect(bucket.take().ok).toBe(false);
  });

  it('never refuses at rate 0 (unlimited)', () => {
    const bucket = createTokenBucket(0, 1, () => 0);
    for (let i = 0; i < 100; i++) expect(bucket.take().ok).toBe(true);
  });
});
