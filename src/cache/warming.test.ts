/**
 * Cache warming against the machine's Redis: the active users' keys land in L2 and L1, the
 * inactive ones stay cold, the hour-of-day prediction finds tomorrow's regulars, the time
 * budget and the user cap bound a round, and the server starts warming with the api role.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Redis } from 'ioredis';
import { createTestPlatform, fund, moneyPost, signUp, type TestPlatform, type TestUser } from '../test-support/platform.js';
import { loadConfig } from '../config/index.js';
import { startServer } from '../server.js';
import { seedUsers } from '../cli/seed.js';
import { newId, shardOf } from '../shared/ids.js';
import type { Platform } from '../platform.js';
import { cacheKey } from './index.js';
import { createWarmer, interleave, settleWithin } from './warming.js';

const REDIS_URL = 'redis://127.0.0.1:6379';
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

let redis: Redis;
beforeAll(() => {
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
});
afterAll(async () => {
  await redis.quit();
});

async function walletIds(p: Platform, userId: string): Promise<string[]> {
  const rows = await p.db.forShard(shardOf(userId)).sql<{ id: string }[]>`select id from accounts where user_id = ${userId} and kind = 'user'`;
  return rows.map((r) => r.id);
}

/** every key a request of this user fills */
async function keysOf(p: Platform, userId: string): Promise<string[]> {
  return [cacheKey.user(userId), cacheKey.recentTransactions(userId), ...(await walletIds(p, userId)).map(cacheKey.balance)];
}

/** out of both layers (and past any tombstone the writes left in Redis) */
async function forget(p: Platform, keys: string[]): Promise<void> {
  for (const k of keys) p.cache.l1.delete(k);
  await redis.del(...keys);
}

const inRedis = async (keys: string[]) => (await Promise.all(keys.map((k) => redis.exists(k)))).every((n) => n === 1);
const inL1 = (p: Platform, keys: string[]) => keys.every((k) => p.cache.l1.get(k) !== undefined);
const coldEverywhere = async (p: Platform, keys: string[]) => (await Promise.all(keys.map((k) => redis.exists(k)))).every((n) => n === 0) && keys.every((k) => p.cache.l1.get(k) === undefined);

/** a history row written straight into the table, as if the user had moved money at `at` */
async function historyRowAt(p: Platform, userId: string, at: Date): Promise<void> {
  const shard = shardOf(userId);
  const [wallet] = await walletIds(p, userId);
  await p.db.forShard(shard).sql`
    insert into transactions (id, user_id, shard, wallet_id, type, direction, amount, currency, status, created_at)
    values (${newId('txn', shard, at)}, ${userId}, ${shard}, ${wallet ?? newId('wal', shard)}, 'transfer', 'credit', 1, 'USD', 'completed', ${at})`;
}

describe('a warming round', () => {
  let t: TestPlatform;
  let alice: TestUser;
  let bob: TestUser;
  let carol: TestUser;
  beforeAll(async () => {
    t = await createTestPlatform({ REDIS_URL, CACHE_WARM_SHARE_PERCENT: '100' });
    [alice, bob, carol] = [await signUp(t.app), await signUp(t.app), await signUp(t.app)];
    await fund(t.app, alice, 10_000);
    const sent = await moneyPost(t.app, alice, '/v1/transfers', { to: bob.id, amount: 2_500, currency: 'USD' });
    expect(sent.statusCode, sent.body).toBe(201);
  });
  afterAll(() => t?.close());

  it("loads the active users' profile, balances and first history page into Redis and L1, and leaves inactive users cold", async () => {
    const p = t.platform;
    const [aliceKeys, bobKeys, carolKeys] = [await keysOf(p, alice.id), await keysOf(p, bob.id), await keysOf(p, carol.id)];
    expect(aliceKeys).toHaveLength(3);
    await forget(p, [...aliceKeys, ...bobKeys, ...carolKeys]);

    const round = await createWarmer(p).warmOnce();
    expect(round).toMatchObject({ users: 2, keys: 6, stoppedEarly: false });
    expect(round.ms).toBeGreaterThanOrEqual(0);
    // the fills of L2 go out without being awaited by the read path
    await vi.waitFor(async () => expect(await inRedis([...aliceKeys, ...bobKeys])).toBe(true));
    expect(inL1(p, [...aliceKeys, ...bobKeys])).toBe(true);
    expect(await coldEverywhere(p, carolKeys)).toBe(true);

    // what was warmed is what the API answers: alice's balance after the transfer
    const [aliceWallet] = await walletIds(p, alice.id);
    const [row] = await p.db.forShard(shardOf(alice.id)).sql<{ version: bigint }[]>`select version from accounts where id = ${aliceWallet!}`;
    expect(await redis.hget(cacheKey.balance(aliceWallet!), 'v')).toBe(String(row!.version));
    const wallets = await t.app.inject({ method: 'GET', url: '/v1/wallets', headers: alice.auth });
    expect(wallets.json().wallets[0].available).toBe(7_500);
  });

  it('warms only the profiles without Redis: balances and history would live a second in L1', async () => {
    const local = await createTestPlatform({ CACHE_WARM_SHARE_PERCENT: '100' });
    try {
      const dave = await signUp(local.app);
      await fund(local.app, dave, 1_000);
      const keys = await keysOf(local.platform, dave.id);
      for (const k of keys) local.platform.cache.l1.delete(k);

      const round = await createWarmer(local.platform).warmOnce();
      expect(round).toMatchObject({ users: 1, keys: 1, stoppedEarly: false });
      expect(inL1(local.platform, [cacheKey.user(dave.id)])).toBe(true);
      expect(keys.filter((k) => k !== cacheKey.user(dave.id)).some((k) => local.platform.cache.l1.get(k) !== undefined)).toBe(false);
    } finally {
      await local.close();
    }
  });

  it('predicts from the same hour of previous days: a user active at this hour 3 days ago is warmed, one active at another hour is not', async () => {
    const p = t.platform;
    const now = new Date();
    const [regular, other] = [await signUp(t.app), await signUp(t.app)];
    await historyRowAt(p, regular.id, new Date(now.getTime() - 3 * DAY_MS + 10 * 60_000)); // within now .. now + 1 h, 3 days ago
    await historyRowAt(p, other.id, new Date(now.getTime() - 3 * DAY_MS - 5 * HOUR_MS));
    const [regularKeys, otherKeys] = [await keysOf(p, regular.id), await keysOf(p, other.id)];
    await forget(p, [...regularKeys, ...otherKeys]);

    const round = await createWarmer(p).warmOnce(now);
    expect(round.stoppedEarly).toBe(false);
    await vi.waitFor(async () => expect(await inRedis(regularKeys)).toBe(true));
    expect(inL1(p, regularKeys)).toBe(true);
    expect(await coldEverywhere(p, otherKeys)).toBe(true);
  });

  it('starts with the api role: the first round warms the active users, and the server stops cleanly', async () => {
    const keys = await keysOf(t.platform, alice.id);
    await forget(t.platform, keys);
    const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', PASSWORD_HASH_LOG2_COST: '10', DATABASE_URL: t.databaseUrl, PORT: '0', REDIS_URL, CACHE_WARM_SHARE_PERCENT: '100', CACHE_WARM_READY_MAX_MS: '5000' });
    const server = await startServer(config, ['api']);
    try {
      await vi.waitFor(async () => expect(await inRedis(keys)).toBe(true));
      expect(inL1(server.platform, keys)).toBe(true);
      expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
    } finally {
      await server.stop();
    }
  });
});

describe('the bounds of a round', () => {
  const USERS = 1500;
  let t: TestPlatform;
  beforeAll(async () => {
    t = await createTestPlatform({ REDIS_URL, CACHE_WARM_SHARE_PERCENT: '100' });
    // every seeded user gets a top-up now: all of them are active
    await seedUsers(t.platform, { users: USERS, currency: 'USD', balanceMinor: 1_000n });
  });
  afterAll(() => t?.close());
  const withConfig = (changes: Partial<Platform['config']>): Platform => ({ ...t.platform, config: { ...t.platform.config, ...changes } });

  it('stops when the time budget is spent, without failing', async () => {
    const round = await createWarmer(withConfig({ cacheWarmBudgetMs: 30 })).warmOnce();
    expect(round.stoppedEarly).toBe(true);
    expect(round.users).toBeLessThan(USERS);
    // a user already started finishes: the overrun is one read, not the rest of the list
    expect(round.ms).toBeLessThan(30 + 2_000);

    const none = await createWarmer(withConfig({ cacheWarmBudgetMs: 0 })).warmOnce();
    expect(none).toMatchObject({ users: 0, keys: 0, stoppedEarly: true });
  });

  it('takes the configured share of the users, and never more than CACHE_WARM_MAX_USERS', async () => {
    const share = await createWarmer(withConfig({ cacheWarmShare: 10, cacheWarmBudgetMs: 60_000 })).warmOnce();
    expect(share).toMatchObject({ users: USERS / 10, stoppedEarly: false });
    const capped = await createWarmer(withConfig({ cacheWarmMaxUsers: 25, cacheWarmBudgetMs: 60_000 })).warmOnce();
    expect(capped).toMatchObject({ users: 25, keys: 75, stoppedEarly: false });
  });

  it('runs a first round at start and stops on demand', async () => {
    const warming = createWarmer(withConfig({ cacheWarmMaxUsers: 10 })).start();
    await warming.firstRound;
    await warming.stop();
  });
});

describe('helpers', () => {
  it('interleaves the active and the predicted users without duplicates, up to the cap', () => {
    expect(interleave(['a', 'b', 'c'], ['x', 'a', 'y'], 10)).toEqual(['a', 'x', 'b', 'c', 'y']);
    expect(interleave(['a', 'b', 'c'], ['x', 'y'], 3)).toEqual(['a', 'x', 'b']);
    expect(interleave([], [], 3)).toEqual([]);
  });

  it('waits for a promise at most the given time', async () => {
    expect(await settleWithin(Promise.resolve(1), 1_000)).toBe('settled');
    expect(await settleWithin(Promise.reject(new Error('x')), 1_000)).toBe('settled');
    const started = performance.now();
    expect(await settleWithin(new Promise(() => undefined), 50)).toBe('timed-out');
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});
