/**
 * The velocity store on crafted sequences of requests with injected times; the same suite runs
 * against the in-process store and a real Redis, and a random sequence must give identical
 * answers from both. Concurrency: parallel calls from several connections count exactly.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { connectVelocityRedis, createMemoryVelocityStore, createRedisVelocityStore, type VelocityLimits, type VelocityStore } from './velocity.js';
import { consoleErrorsDuring } from '../test-support/console.js';
import type { FraudKind, FraudRequest } from './types.js';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `fraudtest:${randomBytes(4).toString('hex')}:`;
const clients: Redis[] = [];
// a logical database of their own: the shared Redis may hold millions of keys, and cleaning up
// by SCAN must not walk them all
const DB = 14;
const client = () => {
  const c = new Redis(REDIS_URL, { db: DB, maxRetriesPerRequest: 1, enableAutoPipelining: true });
  clients.push(c);
  return c;
};

beforeAll(async () => {
  try {
    await client().ping();
  } catch (err) {
    throw new Error(`these tests need Redis at ${REDIS_URL}: ${(err as Error).message}`);
  }
});
afterAll(async () => {
  const r = clients[0]!;
  let cursor = '0';
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', `${PREFIX}*`, 'COUNT', 1000);
    if (keys.length) await r.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  await Promise.all(clients.map((c) => c.quit()));
});

const T0 = Date.UTC(2030, 0, 1);
const SEC = 1000;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
let seq = 0;
const uid = (name: string) => `${name}-${randomBytes(4).toString('hex')}`;

function req(userId: string, atMs: number, o: { amount?: number; kind?: FraudKind; to?: string; id?: string } = {}): FraudRequest {
  const kind = o.kind ?? 'transfer';
  return {
    requestId: o.id ?? `req-${seq++}`,
    kind,
    userId,
    amountMinor: BigInt(o.amount ?? 100),
    currency: 'USD',
    counterpartyId: kind === 'topup' ? undefined : (o.to ?? 'merchant-x'),
    at: new Date(T0 + atMs),
  };
}

type Make = (limits?: Partial<VelocityLimits>) => VelocityStore;
const stores: [string, Make][] = [
  ['memory', (limits) => createMemoryVelocityStore({ limits })],
  ['redis', (limits) => createRedisVelocityStore({ redis: clients[0] ?? client(), prefix: PREFIX, limits })],
];

describe.each(stores)('velocity store (%s)', (_name, make) => {
  it('counts and sums each sliding window, the current request included', async () => {
    const v = make();
    const u = uid('windows');
    const a = await v.observe(req(u, 0, { amount: 100 }));
    expect([a.count1m, a.count1h, a.count24h, a.value1m, a.value1h, a.value24h]).toEqual([1, 1, 1, 100, 100, 100]);
    await v.observe(req(u, 30 * SEC, { amount: 200 }));
    const b = await v.observe(req(u, 61 * SEC, { amount: 300 }));
    // the first request (t=0) left the minute window at t=60 s
    expect([b.count1m, b.count1h, b.count24h, b.value1m, b.value1h, b.value24h]).toEqual([2, 3, 3, 500, 600, 600]);
    const c = await v.observe(req(u, HOUR + 31 * SEC, { amount: 1_000 }));
    // hour window: (31 s, 1 h 31 s] holds the 61 s request and this one
    expect([c.count1m, c.count1h, c.count24h, c.value1m, c.value1h, c.value24h]).toEqual([1, 2, 4, 1_000, 1_300, 1_600]);
    const d = await v.observe(req(u, DAY + 45 * SEC, { amount: 7 }));
    // day window: (45 s, 24 h 45 s] drops the 0 s and 30 s requests
    expect([d.count1m, d.count1h, d.count24h, d.value1m, d.value1h, d.value24h]).toEqual([1, 1, 3, 7, 7, 1_307]);
    const e = await v.observe(req(u, 3 * DAY, { amount: 5 }));
    expect([e.count1m, e.count1h, e.count24h, e.value24h]).toEqual([1, 1, 1, 5]);
  });

  it('counts a retried request once and answers the retry with the same windows', async () => {
    const v = make();
    const u = uid('retry');
    const first = await v.observe(req(u, 0, { id: 'same', amount: 250 }));
    const retry = await v.observe(req(u, 2 * SEC, { id: 'same', amount: 250 }));
    expect(retry.count1m).toBe(1);
    expect(retry.value1m).toBe(250);
    expect(retry.previousRequestAtMs).toBe(first.previousRequestAtMs);
    const next = await v.observe(req(u, 3 * SEC, { amount: 50 }));
    expect([next.count1m, next.value1m]).toEqual([2, 300]);
  });

  it('puts a late request where it belongs and never moves the windows backwards', async () => {
    const v = make();
    const u = uid('late');
    await v.observe(req(u, 10 * MIN, { amount: 100 }));
    // 2 minutes older than the latest: outside the minute window that ends at 10 min, inside the hour
    const late = await v.observe(req(u, 8 * MIN, { amount: 40 }));
    expect([late.count1m, late.count1h, late.value1m, late.value1h]).toEqual([1, 2, 100, 140]);
    // older than a day before the latest: not counted at all
    const ancient = await v.observe(req(u, 10 * MIN - DAY - SEC, { amount: 1 }));
    expect([ancient.count24h, ancient.value24h]).toEqual([2, 140]);
  });

  it('reports the previous request time, for first-after-credential-change', async () => {
    const v = make();
    const u = uid('prev');
    expect((await v.observe(req(u, 0))).previousRequestAtMs).toBeNull();
    expect((await v.observe(req(u, 5 * SEC, { id: 'p2' }))).previousRequestAtMs).toBe(T0);
    // a retry of the latest request reports what came before it, not itself
    expect((await v.observe(req(u, 6 * SEC, { id: 'p2' }))).previousRequestAtMs).toBe(T0);
    expect((await v.observe(req(u, 2 * DAY))).previousRequestAtMs).toBe(T0 + 5 * SEC);
  });

  it('sees a counterparty as new until a transfer to it completes', async () => {
    const v = make();
    const u = uid('newcp');
    const first = req(u, 0, { to: 'bob' });
    expect((await v.observe(first)).newCounterparty).toBe(true);
    // observed (even declined) requests do not make a counterparty known
    expect((await v.observe(req(u, SEC, { to: 'bob' }))).newCounterparty).toBe(true);
    await v.completed(first);
    expect((await v.observe(req(u, 2 * SEC, { to: 'bob' }))).newCounterparty).toBe(false);
    expect((await v.observe(req(u, 3 * SEC, { to: 'carol' }))).newCounterparty).toBe(true);
    expect((await v.observe(req(u, 4 * SEC, { kind: 'topup' }))).newCounterparty).toBe(false);
  });

  it('keeps the mean and standard deviation of completed amounts, before the current one', async () => {
    const v = make();
    const u = uid('history');
    const empty = await v.observe(req(u, 0, { amount: 100 }));
    expect([empty.historyCount, empty.historyMean, empty.historyStd]).toEqual([0, 0, 0]);
    const done = [req(u, 0, { amount: 100 }), req(u, MIN, { amount: 200 }), req(u, 2 * MIN, { amount: 600, kind: 'topup' })];
    for (const r of done) await v.completed(r);
    await v.completed(done[1]!); // a retried completion counts once
    const s = await v.observe(req(u, 3 * MIN, { amount: 5_000 }));
    expect(s.historyCount).toBe(3);
    expect(s.historyMean).toBeCloseTo(300, 9);
    expect(s.historyStd).toBeCloseTo(Math.sqrt((200 ** 2 + 100 ** 2 + 300 ** 2) / 3), 9);
  });

  it('knows the last completed top-up and the top-up value of the last hour (mule pattern)', async () => {
    const v = make();
    const u = uid('topup');
    expect((await v.observe(req(u, 0))).msSinceTopup).toBeNull();
    await v.completed(req(u, 0, { kind: 'topup', amount: 30_000 }));
    await v.completed(req(u, 50 * MIN, { kind: 'topup', amount: 20_000 }));
    const out = await v.observe(req(u, 55 * MIN, { amount: 45_000, to: 'mule' }));
    expect(out.msSinceTopup).toBe(5 * MIN);
    expect(out.topupValue1h).toBe(50_000);
    const later = await v.observe(req(u, HOUR + 10 * MIN));
    expect(later.topupValue1h).toBe(20_000);
    expect(later.msSinceTopup).toBe(20 * MIN);
    expect((await v.observe(req(u, 50 * MIN + DAY + SEC))).msSinceTopup).toBeNull();
  });

  it('counts distinct senders to one counterparty over the last hour (fan-in)', async () => {
    const v = make();
    const target = uid('target');
    const senders = [uid('s'), uid('s'), uid('s')];
    expect((await v.observe(req(senders[0]!, 0, { to: target }))).counterpartyDistinctSenders1h).toBe(1);
    expect((await v.observe(req(senders[0]!, MIN, { to: target }))).counterpartyDistinctSenders1h).toBe(1);
    expect((await v.observe(req(senders[1]!, 2 * MIN, { to: target }))).counterpartyDistinctSenders1h).toBe(2);
    expect((await v.observe(req(senders[2]!, 30 * MIN, { to: target }))).counterpartyDistinctSenders1h).toBe(3);
    // senders 0 (last at 1 min) and 1 (2 min) left the hour
    expect((await v.observe(req(senders[2]!, HOUR + 5 * MIN, { to: target }))).counterpartyDistinctSenders1h).toBe(1);
    expect((await v.observe(req(uid('t'), 0, { kind: 'topup' }))).counterpartyDistinctSenders1h).toBe(0);
  });

  it('keeps a fan-in sender for an hour from its latest payment, and drops it an hour after', async () => {
    const v = make();
    const target = uid('target');
    const [a, b] = [uid('s'), uid('s')];
    await v.observe(req(a, 0, { to: target }));
    await v.observe(req(a, 30 * MIN, { to: target }));
    // a's first payment left the hour, its second did not
    expect((await v.observe(req(b, HOUR + MIN, { to: target }))).counterpartyDistinctSenders1h).toBe(2);
    expect((await v.observe(req(b, HOUR + 30 * MIN, { to: target }))).counterpartyDistinctSenders1h).toBe(1);
    expect((await v.observe(req(a, 3 * HOUR, { to: target }))).counterpartyDistinctSenders1h).toBe(1);
  });

  it('bounds a user to maxEventsPerUser requests; counts and sums saturate consistently', async () => {
    const v = make({ maxEventsPerUser: 5 });
    const u = uid('cap');
    let last;
    for (let i = 1; i <= 9; i++) last = await v.observe(req(u, i * SEC, { amount: i }));
    expect([last!.count1m, last!.count24h, last!.value1m, last!.value24h]).toEqual([5, 5, 5 + 6 + 7 + 8 + 9, 35]);
    const after = await v.observe(req(u, 10 * MIN, { amount: 1 }));
    expect([after.count1m, after.count1h, after.value1h]).toEqual([1, 5, 6 + 7 + 8 + 9 + 1]);
  });
});

describe('in-process store bound', () => {
  it('forgets the least recently active users beyond maxEntries', async () => {
    const v = createMemoryVelocityStore({ maxEntries: 20 });
    const busy = uid('busy');
    const others = Array.from({ length: 30 }, () => uid('other'));
    await v.observe(req(busy, 0));
    for (let i = 0; i < 30; i++) {
      await v.observe(req(others[i]!, i * SEC));
      if (i % 5 === 0) await v.observe(req(busy, i * SEC)); // keeps busy recently used
    }
    expect((await v.observe(req(busy, MIN - 1))).count1m).toBe(8);
    // the first other user was forgotten: its request at 0 s is no longer in its minute
    expect((await v.observe(req(others[0]!, 30 * SEC))).count1m).toBe(1);
    expect((await v.observe(req(others[29]!, 30 * SEC))).count1m).toBe(2);
  });
});

describe('Redis and memory agree', () => {
  /** xorshift32: a fixed seed gives the same sequence on every run */
  function rng(seed: number) {
    let x = seed >>> 0 || 1;
    return () => {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >> 17;
      x ^= x << 5;
      x >>>= 0;
      return x / 2 ** 32;
    };
  }

  it.each([1, 2, 3])('gives identical answers on a random sequence with retries, late requests and small bounds (seed %i)', async (seed) => {
    const limits = { maxEventsPerUser: 8, maxFanInSenders: 3, maxCounterpartiesPerUser: 2 };
    const mem = createMemoryVelocityStore({ limits });
    const red = createRedisVelocityStore({ redis: clients[0]!, prefix: PREFIX, limits });
    const rand = rng(seed);
    const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)]!;
    const run = uid(`seed${seed}`);
    const users = [0, 1, 2].map((i) => `${run}-u${i}`);
    const counterparties = [...users, `${run}-m0`, `${run}-m1`, `${run}-m2`];
    const kinds: FraudKind[] = ['topup', 'transfer', 'payment'];
    const seen: FraudRequest[] = [];
    let clock = 0;
    for (let i = 0; i < 300; i++) {
      // mostly forward in steps from a second to two hours; sometimes late by up to an hour
      clock += Math.floor(rand() ** 3 * 2 * HOUR);
      const at = rand() < 0.1 ? clock - Math.floor(rand() * HOUR) : clock;
      const r: FraudRequest =
        rand() < 0.15 && seen.length ? pick(seen) : req(pick(users), at, { amount: 1 + Math.floor(rand() * 10_000), kind: pick(kinds), to: pick(counterparties), id: `${run}-${i}` });
      seen.push(r);
      if (rand() < 0.4) {
        await Promise.all([mem.completed(r), red.completed(r)]);
      } else {
        const [a, b] = await Promise.all([mem.observe(r), red.observe(r)]);
        expect(b, `step ${i}`).toEqual(a);
      }
    }
  });
});

describe('concurrent requests against real Redis', () => {
  it('counts parallel requests of one user exactly, from several connections', async () => {
    const stores = [0, 1, 2, 3].map(() => createRedisVelocityStore({ redis: client(), prefix: PREFIX }));
    const u = uid('parallel');
    const n = 200;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => stores[i % stores.length]!.observe(req(u, 0, { amount: 10, id: `p-${i}` }))));
    // atomic per call: every request saw a different count, 1..n
    expect(results.map((r) => r.count1m).sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    const after = await stores[0]!.observe(req(u, SEC, { amount: 10 }));
    expect([after.count1m, after.count1h, after.count24h, after.value1m]).toEqual([n + 1, n + 1, n + 1, (n + 1) * 10]);
  });

  it('counts parallel retries of one request once, and parallel completions once', async () => {
    const stores = [0, 1, 2].map(() => createRedisVelocityStore({ redis: client(), prefix: PREFIX }));
    const u = uid('retries');
    const r = req(u, 0, { amount: 500, id: 'only-once' });
    const seen = await Promise.all(Array.from({ length: 50 }, (_, i) => stores[i % 3]!.observe(r)));
    expect(new Set(seen.map((s) => s.count1m))).toEqual(new Set([1]));
    await Promise.all(Array.from({ length: 50 }, (_, i) => stores[i % 3]!.completed(r)));
    const after = await stores[0]!.observe(req(u, SEC, { amount: 1 }));
    expect([after.historyCount, after.historyMean, after.count1m]).toEqual([1, 500, 2]);
  });

  it('counts distinct parallel senders to one recipient exactly (fan-in)', async () => {
    const v = createRedisVelocityStore({ redis: client(), prefix: PREFIX });
    const target = uid('hub');
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => v.observe(req(`${target}-sender-${i}`, 0, { to: target }))));
    expect(results.map((r) => r.counterpartyDistinctSenders1h).sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
  });

  it('gives the same answers when fan-in runs as its own script (Redis Cluster layout)', async () => {
    const single = createRedisVelocityStore({ redis: client(), prefix: PREFIX });
    const split = createRedisVelocityStore({ redis: client(), prefix: `${PREFIX}split:`, splitFanIn: true });
    const target = uid('hub2');
    for (let i = 0; i < 5; i++) {
      const r = req(`${target}-s${i % 3}`, i * MIN, { to: target, id: `${target}-${i}` });
      expect(await split.observe(r)).toEqual(await single.observe(r));
    }
  });
});

describe('the velocity Redis client while Redis is down', () => {
  it('keeps its failures to the commands, writing nothing to stderr as it reconnects', async () => {
    const velocity = connectVelocityRedis('redis://127.0.0.1:1');
    try {
      const written = await consoleErrorsDuring(async () => {
        await expect(velocity.ping()).rejects.toThrow();
        await new Promise((r) => setTimeout(r, 400)); // a few reconnect attempts
      });
      expect(written.filter((w) => w.includes('ioredis'))).toEqual([]);
    } finally {
      velocity.disconnect();
    }
  });
});
