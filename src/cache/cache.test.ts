/**
 * The cache against a real Redis: two app instances sharing it, racing writers, Redis dying
 * under traffic, and the in-process layer's bounds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { createPlatform } from '../platform.js';
import { buildApp } from '../app.js';
import { createTestPlatform, fund, moneyPost, signUp, type TestPlatform } from '../test-support/platform.js';
import { createL1 } from './l1.js';
import { createL2 } from './redis.js';
import { cacheKey, createCache, EPOCHS_MAX } from './index.js';
import { loadConfig } from '../config/index.js';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });

beforeAll(async () => {
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    throw new Error(`these tests need Redis at ${REDIS_URL}: ${(err as Error).message}`);
  }
});
afterAll(() => redis.quit());

const until = async (check: () => boolean | Promise<boolean>, ms = 2000) => {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
};

async function walletsVia(app: TestPlatform['app'], auth: Record<string, string>) {
  const res = await app.inject({ method: 'GET', url: '/v1/wallets', headers: auth });
  return res.json().wallets[0] as { id: string; available: number };
}

describe('two app instances sharing Redis', () => {
  let a: TestPlatform;
  let bApp: TestPlatform['app'];
  let bPlatform: ReturnType<typeof createPlatform>;
  beforeAll(async () => {
    a = await createTestPlatform({ REDIS_URL });
    bPlatform = createPlatform(a.config, { databaseUrl: a.databaseUrl });
    await bPlatform.ready();
    bApp = await buildApp(bPlatform);
  });
  afterAll(async () => {
    await bApp?.close();
    await bPlatform?.close();
    await a?.close();
  });

  it("shows the owner their transfer on the other instance at once, and evicts the other instance's L1", async () => {
    const [alice, bob] = [await signUp(a.app), await signUp(a.app)];
    await fund(a.app, alice, 1_000);
    const before = await walletsVia(bApp, alice.auth); // cached on B
    expect(before.available).toBe(1_000);
    expect(bPlatform.cache.l1.get(cacheKey.balance(before.id))).toBeDefined();

    const sent = await moneyPost(a.app, alice, '/v1/transfers', { to: bob.id, amount: 300, currency: 'USD' });
    expect(sent.statusCode).toBe(201);
    const token = sent.headers['wallet-consistency'] as string;
    expect(token).toMatch(new RegExp(`^${before.id}=\\d+$`));

    // the owner, with the token the transfer returned, never sees the old balance
    const after = await bApp.inject({ method: 'GET', url: '/v1/wallets', headers: { ...alice.auth, 'wallet-consistency': token } });
    expect(after.json().wallets[0].available).toBe(700);
    // and B's L1 entry was replaced through the invalidation message (no token needed then)
    await until(() => {
      const e = bPlatform.cache.l1.get(cacheKey.balance(before.id));
      return e === undefined || e.version! >= BigInt(token.split('=')[1]!);
    });
    expect((await walletsVia(bApp, alice.auth)).available).toBe(700);
    // the recipient sees the credit on either instance
    expect((await walletsVia(bApp, bob.auth)).available).toBe(300);
  });

  it('shows a profile change made on one instance on the other', async () => {
    const u = await signUp(a.app);
    expect((await bApp.inject({ method: 'GET', url: '/v1/me', headers: u.auth })).json().name).toBe('Test User');
    await a.app.inject({ method: 'PATCH', url: '/v1/me', headers: u.auth, payload: { name: 'Renamed' } });
    await until(async () => (await bApp.inject({ method: 'GET', url: '/v1/me', headers: u.auth })).json().name === 'Renamed');
    const opened = await a.app.inject({ method: 'POST', url: '/v1/wallets', headers: u.auth, payload: { currency: 'EUR' } });
    expect(opened.statusCode).toBe(201);
    await until(async () => (await bApp.inject({ method: 'GET', url: '/v1/wallets', headers: u.auth })).json().wallets.length === 2);
  });

  it('writes the revised first history page through to Redis, versioned, for every instance to read', async () => {
    const [alice, bob] = [await signUp(a.app), await signUp(a.app)];
    await fund(a.app, alice, 1_000);
    await a.app.inject({ method: 'GET', url: '/v1/transactions', headers: alice.auth }); // cached on A
    const sent = await moneyPost(a.app, alice, '/v1/transfers', { to: bob.id, amount: 5, currency: 'USD' });
    // A merged the transfer into its page and stored it in Redis at the new version, before answering
    const [v, d] = await redis.hmget(cacheKey.recentTransactions(alice.id), 'v', 'd');
    expect(d).toContain(sent.json().id);
    const [sum] = await a.platform.db.clusters[0]!.sql`select sum(version)::bigint as v from accounts where user_id = ${alice.id}`;
    expect(v).toBe(String(sum!.v));
    // B had nothing cached: it reads the page from Redis
    const onB = await bApp.inject({ method: 'GET', url: '/v1/transactions', headers: alice.auth });
    expect(onB.json().transactions[0].id).toBe(sent.json().id);
    // bob's page was not cached anywhere: a versioned tombstone, which the first reader replaces
    expect(await redis.hget(cacheKey.recentTransactions(bob.id), 'd')).toBe('');
    expect((await bApp.inject({ method: 'GET', url: '/v1/transactions', headers: bob.auth })).json().transactions).toHaveLength(1);
    // (the reader's fill does not delay its answer)
    await until(async () => ((await redis.hget(cacheKey.recentTransactions(bob.id), 'd')) ?? '').includes(sent.json().id));
  });

  it('drops the cached first history page on every instance when a movement is written', async () => {
    const [alice, bob] = [await signUp(a.app), await signUp(a.app)];
    await fund(a.app, alice, 1_000);
    const first = await bApp.inject({ method: 'GET', url: '/v1/transactions', headers: bob.auth });
    expect(first.json().transactions).toHaveLength(0);
    await moneyPost(a.app, alice, '/v1/transfers', { to: bob.id, amount: 5, currency: 'USD' });
    await until(async () => (await bApp.inject({ method: 'GET', url: '/v1/transactions', headers: bob.auth })).json().transactions.length === 1);
  });
});

describe('versioned writes', () => {
  it('never lets an older balance overwrite a newer one, whatever order racing writers arrive in', async () => {
    const config = loadConfig({ REDIS_URL });
    const writers = [createCache(config), createCache(config), createCache(config)];
    await Promise.all(writers.map((w) => w.start()));
    const key = cacheKey.balance(`wal_race_${Date.now()}`);
    const versions = Array.from({ length: 60 }, (_, i) => BigInt(i + 1)).sort(() => Math.random() - 0.5);
    await Promise.all(versions.map((v, i) => writers[i % 3]!.putVersioned([{ key, value: { version: v, available: v * 10n } }])));
    const [v, d] = await redis.hmget(key, 'v', 'd');
    expect(v).toBe('60');
    expect(d).toContain('600');
    // a late writer with an old version changes nothing
    await writers[0]!.putVersioned([{ key, value: { version: 7n, available: 70n } }]);
    expect(await redis.hget(key, 'v')).toBe('60');
    // nor does any writer's L1 keep an older version than Redis
    for (const w of writers) expect(w.l1.get(key)?.version ?? 60n).toBe(60n);
    await writers[1]!.putVersioned([{ key, value: { version: 8n, available: 80n } }]);
    expect(writers[1]!.l1.get(key)).toBeUndefined();
    await Promise.all(writers.map((w) => w.close()));
    await redis.del(key);
  });

  it('does not put back a value loaded before an invalidation (tombstone)', async () => {
    const config = loadConfig({ REDIS_URL });
    const [reader, writer] = [createCache(config), createCache(config)];
    await Promise.all([reader.start(), writer.start()]);
    const key = cacheKey.paymentMethods(`usr_tomb_${Date.now()}`);
    let release!: () => void;
    const slowLoad = reader.get(key, () => new Promise<string[]>((ok) => (release = () => ok(['old'])))); // a read that started before the write
    await writer.invalidate([key]); // the write commits and invalidates
    release();
    expect(await slowLoad).toEqual(['old']); // that reader answers what it read...
    expect(await redis.get(key)).not.toContain('old'); // ...Redis kept the tombstone, not the old value...
    await until(() => reader.l1.get(key) === undefined); // ...the invalidation reached the reader's L1...
    expect(await reader.get(key, async () => ['new'])).toEqual(['new']); // ...so nobody is served it afterwards
    await Promise.all([reader.close(), writer.close()]);
  });
});

describe('when Redis fails', () => {
  it('answers every request correctly on a dead Redis, and reports it degraded', async () => {
    const t = await createTestPlatform({ REDIS_URL: 'redis://127.0.0.1:6390', CACHE_BREAKER_FAILURES: '1' });
    try {
      const [alice, bob] = [await signUp(t.app), await signUp(t.app)];
      await fund(t.app, alice, 500);
      expect((await moneyPost(t.app, alice, '/v1/transfers', { to: bob.id, amount: 200, currency: 'USD' })).statusCode).toBe(201);
      expect((await walletsVia(t.app, alice.auth)).available).toBe(300);
      expect((await walletsVia(t.app, bob.auth)).available).toBe(200);
      expect((await t.app.inject({ method: 'GET', url: '/v1/transactions', headers: bob.auth })).json().transactions).toHaveLength(1);
      expect(t.platform.cache.redisStatus()).toBe('degraded');
    } finally {
      await t.close();
    }
  });

  it('keeps answering when Redis dies mid-traffic, and serves nothing stale once it is back', async () => {
    const port = 26000 + Math.floor(Math.random() * 4000);
    const startRedis = () =>
      new Promise<ChildProcess>((ok, fail) => {
        const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'ignore'] });
        child.on('error', fail);
        child.stdout!.on('data', (c: Buffer) => c.toString().includes('Ready to accept connections') && ok(child));
      });
    let server = await startRedis();
    const url = `redis://127.0.0.1:${port}`;
    const t = await createTestPlatform({ REDIS_URL: url, CACHE_BREAKER_FAILURES: '1', CACHE_BREAKER_COOLDOWN_MS: '200', CACHE_REDIS_TIMEOUT_MS: '50' });
    const direct = new Redis(url, { maxRetriesPerRequest: 1 });
    try {
      const [alice, bob] = [await signUp(t.app), await signUp(t.app)];
      await fund(t.app, alice, 1_000);
      const wallet = await walletsVia(t.app, alice.auth); // cached in L1 and L2
      await until(async () => (await direct.exists(cacheKey.balance(wallet.id))) === 1);
      direct.disconnect();

      server.kill('SIGKILL');
      await new Promise((r) => server.once('exit', r));
      const started = Date.now();
      for (let i = 0; i < 5; i++) {
        expect((await moneyPost(t.app, alice, '/v1/transfers', { to: bob.id, amount: 10, currency: 'USD' })).statusCode).toBe(201);
        expect((await walletsVia(t.app, bob.auth)).available).toBe(10 * (i + 1));
      }
      expect(Date.now() - started).toBeLessThan(5_000); // nothing waited on the dead Redis for long
      expect(t.platform.cache.redisStatus()).toBe('degraded');

      // Redis returns (empty, as after a restart); put the old balance back in it to prove the
      // dirty key is deleted before the breaker closes, so the stale value is never served.
      server = await startRedis();
      const back = new Redis(url, { maxRetriesPerRequest: 1 });
      await back.hset(cacheKey.balance(wallet.id), 'v', '999999', 'd', 'stale');
      t.platform.cache.l1.clear();
      await until(async () => {
        await walletsVia(t.app, alice.auth);
        return t.platform.cache.redisStatus() === 'ok';
      }, 5_000);
      expect(await back.exists(cacheKey.balance(wallet.id))).toBe(0);
      expect((await walletsVia(t.app, alice.auth)).available).toBe(950);
      back.disconnect();
    } finally {
      await t.close();
      server.kill('SIGKILL');
    }
  });
});

describe('without Redis', () => {
  const config = loadConfig({});

  it("replaces a balance this process holds after a commit and leaves one it does not hold out", async () => {
    const cache = createCache(config);
    const [held, other] = [cacheKey.balance('wal_held'), cacheKey.balance('wal_other')];
    await cache.getVersioned([held], async () => new Map([[held, { version: 1n, available: 10n }]]));
    await cache.putVersioned([{ key: held, value: { version: 2n, available: 20n } }, { key: other, value: { version: 5n, available: 50n } }]);
    expect(cache.l1.get(held)?.value).toEqual({ version: 2n, available: 20n });
    expect(cache.l1.get(other)).toBeUndefined();
    await cache.close();
  });

  it('does not let a read that loaded before a commit put its older balance in', async () => {
    const cache = createCache(config);
    const key = cacheKey.balance('wal_racing');
    let release!: () => void;
    const slow = cache.getVersioned([key], () => new Promise<Map<string, { version: bigint }>>((ok) => (release = () => ok(new Map([[key, { version: 1n }]])))));
    await cache.putVersioned([{ key, value: { version: 2n } }]); // the commit, while the read waits on the database
    release();
    expect((await slow).get(key)).toEqual({ version: 1n }); // that reader answers what it read...
    expect(cache.l1.get(key)).toBeUndefined(); // ...and nobody else is served it
    await cache.close();
  });

  it('does not put an older balance in even when more commits than it remembers came during the read', async () => {
    const cache = createCache(config);
    const key = cacheKey.balance('wal_slow_read');
    let release!: () => void;
    const slow = cache.getVersioned([key], () => new Promise<Map<string, { version: bigint }>>((ok) => (release = () => ok(new Map([[key, { version: 1n }]])))));
    await cache.putVersioned([{ key, value: { version: 2n } }]);
    const others = Array.from({ length: EPOCHS_MAX }, (_, i) => ({ key: cacheKey.balance(`wal_busy_${i}`), value: { version: 1n } }));
    await cache.putVersioned(others); // the record of the commit above is evicted
    release();
    await slow;
    expect(cache.l1.get(key)).toBeUndefined();
    await cache.close();
  });
});

describe('L1', () => {
  it('expires entries after their TTL', async () => {
    const l1 = createL1(1_000_000);
    l1.set('user:x', { text: '"v"' }, 50);
    expect(l1.get('user:x')).toBeDefined();
    await new Promise((r) => setTimeout(r, 80));
    expect(l1.get('user:x')).toBeUndefined();
  });

  it('stays within its byte bound, evicting the least recently used first', () => {
    const evictions: string[] = [];
    const l1 = createL1(10_000, (reason) => evictions.push(reason));
    const value = 'x'.repeat(1000); // ~2 KB in memory
    for (let i = 0; i < 4; i++) l1.set(`user:${i}`, { text: value }, 60_000); // 4 fit
    l1.get('user:0'); // used recently: user:1 is now the least recently used
    l1.set('user:4', { text: value }, 60_000);
    expect(l1.bytes).toBeLessThanOrEqual(10_000);
    expect(evictions).toEqual(['evict']);
    expect(l1.get('user:1')).toBeUndefined();
    for (const k of ['user:0', 'user:2', 'user:3', 'user:4']) expect(l1.get(k), k).toBeDefined();
  });

  it('keeps the newer of two versions', () => {
    const l1 = createL1(1_000_000);
    l1.setIfNewer('balance:w', { text: 'new', version: 5n }, 60_000);
    l1.setIfNewer('balance:w', { text: 'old', version: 4n }, 60_000);
    expect(l1.get('balance:w')?.text).toBe('new');
  });
});

describe('L2 client', () => {
  it('opens its breaker on a dead Redis and stops waiting on it', async () => {
    const l2 = createL2({ url: 'redis://127.0.0.1:6390', cluster: false, timeoutMs: 50, breakerFailures: 2, breakerCooldownMs: 60_000, dirtyKeysMax: 10, maxTtlMs: 1000 });
    await l2.get('user:a');
    await l2.get('user:b');
    expect(l2.state).toBe('open');
    const started = performance.now();
    for (let i = 0; i < 100; i++) await l2.get('user:c');
    expect(performance.now() - started).toBeLessThan(100);
    await l2.close();
  });
});
