/**
 * Cache benchmark: a read-heavy mix over Zipf-distributed users, run twice in one process on the
 * same data: once with the cache bypassed (CACHE_L1_MAX_BYTES=0, no Redis) and once with L1 +
 * L2 (Redis), both through the read functions the API calls (no HTTP).
 *
 *   npm run bench:cache -- [--seconds 20] [--warmup 5] [--users 10000] [--concurrency 256]
 *                          [--zipf 1.1] [--write-share 2] [--history 3] [--instances 1]
 *
 * The mix, per operation: writes --write-share % (P2P transfers through the platform's engine
 * via the transfer service, so every commit writes balances through and invalidates history
 * pages as in the API), the rest reads: balances 50 % (profile + versioned balances, as GET
 * /v1/wallets), first history page 32 % (GET /v1/transactions), profile 10 % (GET /v1/me),
 * payment methods 8 %. Users (readers, senders and recipients) are drawn from a Zipf
 * distribution with exponent --zipf over a random ranking of the seeded users.
 *
 * Figures: reads/s of each run and their ratio, read latency p50/p99 (closed loop: --concurrency
 * operations in flight), and from the cached run's prom-client registry (cache_lookups_total by
 * layer, key type and result, counted over the measured seconds only) the L1 hit rate and the
 * L2 hit rate of L1 misses. The cached run starts the way a server does: one warming round.
 * --instances N builds N platforms for the cached run (N API processes: an L1 each, one Redis,
 * one database) and sends each operation to one of them at random, as a load balancer would.
 * The uncached run warms up at most 5 s: without a cache there is only the JIT and
 * PostgreSQL's buffers to warm.
 *
 * Database: a fresh `wallet_bench_cache` database at every run, on DATABASE_URL's server when it
 * is set, otherwise on the bench's embedded PostgreSQL (.data/bench/pg, port 15434). Redis:
 * REDIS_URL, default redis://127.0.0.1:6379; the bench stops (exit 3) when it does not answer.
 */
import { randomInt } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { setImmediate as yieldToIo } from 'node:timers/promises';
import { Redis } from 'ioredis';
import cliProgress from 'cli-progress';
import type { Counter, Histogram } from 'prom-client';
import { loadConfig, type Config } from '../src/config/index.js';
import { migrate } from '../src/db/migrate.js';
import { createPlatform, type Platform } from '../src/platform.js';
import { createLogger } from '../src/observability/logger.js';
import { requestHash } from '../src/ledger/engine.js';
import { createTransferService } from '../src/transfers/service.js';
import type { WalletDirectory } from '../src/ledger/wallet-directory.js';
import { createWalletReads } from '../src/wallets/service.js';
import { loadRecent } from '../src/history/service.js';
import { createPaymentMethodService } from '../src/payment-methods/service.js';
import { createWarmer, type WarmRound } from '../src/cache/warming.js';
import { seedUsers, type SeededUser } from '../src/cli/seed.js';
import { freshDatabase, log, percentile } from './support.js';

const BENCH_DB = 'wallet_bench_cache';
const CURRENCY = 'USD';
const TARGETS = { l1HitRate: 0.95, l2HitRateOfL1Misses: 0.9, speedup: 3 };
const UNCACHED_WARMUP_MAX_SECONDS = 5;
/** shares of the reads (they add up to 1) */
const READ_MIX = [
  ['balances', 0.5],
  ['history', 0.32],
  ['profile', 0.1],
  ['paymentMethods', 0.08],
] as const;
type Op = (typeof READ_MIX)[number][0] | 'transfer';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '5' },
    users: { type: 'string', default: '10000' },
    concurrency: { type: 'string', default: '256' },
    zipf: { type: 'string', default: '1.1' },
    'write-share': { type: 'string', default: '2' },
    history: { type: 'string', default: '3' },
    instances: { type: 'string', default: '1' },
  },
});
const num = (name: keyof typeof args, min: number, max: number, integer = true): number => {
  const n = Number(args[name]);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) throw new Error(`--${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}`);
  return n;
};
const seconds = num('seconds', 1, 3600);
const warmupSeconds = num('warmup', 0, 600);
const userCount = num('users', 2, 1_000_000);
const concurrency = num('concurrency', 1, 100_000);
const zipfExponent = num('zipf', 0, 5, false);
const writeShare = num('write-share', 0, 100, false) / 100;
const historyPerUser = num('history', 0, 100);
const instanceCount = num('instances', 1, 16);
const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379';


async function redisAnswers(url: string): Promise<string | undefined> {
  const probe = new Redis(url, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    await probe.ping();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  } finally {
    probe.disconnect();
  }
}



/** rank → user by a Zipf law over a random ranking: sample() is O(log n) */
function zipf<T>(items: T[], s: number): () => T {
  const ranked = [...items];
  for (let i = ranked.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [ranked[i], ranked[j]] = [ranked[j]!, ranked[i]!];
  }
  const cdf = new Float64Array(ranked.length);
  let total = 0;
  for (let r = 0; r < ranked.length; r++) cdf[r] = total += (r + 1) ** -s;
  return () => {
    const u = Math.random() * total;
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return ranked[lo]!;
  };
}

/** The wallet ids are known: the directory answers from memory (in the API it is a warm cache). */
function knownWallets(users: SeededUser[]): WalletDirectory {
  const walletOf = new Map(users.map((u) => [u.id, u.walletId]));
  return { find: async (userId) => walletOf.get(userId), userExists: async (userId) => walletOf.has(userId) };
}

let transferSeq = 0;
function transferer(p: Platform, users: SeededUser[]) {
  const transfers = createTransferService(p, knownWallets(users));
  return async (from: SeededUser, to: SeededUser): Promise<number> => {
    const input = { to: to.id, amountMinor: BigInt(1 + randomInt(100)), currency: CURRENCY };
    const hash = requestHash(['POST', '/v1/transfers', null, { to: input.to, amount: input.amountMinor, currency: input.currency }]);
    const result = await transfers.transfer({ userId: from.id, shard: from.shard, roles: [] }, input, { key: `bench-cache-${process.pid}-${++transferSeq}`, requestHash: hash });
    return result.status;
  };
}

/** History for everyone before the runs: --history transfers per user between uniform pairs. */
async function makeHistory(p: Platform, users: SeededUser[]): Promise<void> {
  const total = users.length * historyPerUser;
  if (!total) return;
  const send = transferer(p, users);
  const bar = new cliProgress.SingleBar({ format: 'writing history [{bar}] {value}/{total} transfers', hideCursor: true }, cliProgress.Presets.shades_classic);
  bar.start(total, 0);
  let next = 0;
  let done = 0;
  await Promise.all(
    Array.from({ length: 1000 }, async () => {
      while (next < total) {
        next++;
        const from = users[randomInt(users.length)]!;
        let to = users[randomInt(users.length - 1)]!;
        if (to === from) to = users[users.length - 1]!;
        await send(from, to);
        if (++done % 500 === 0) bar.update(done);
      }
    }),
  );
  bar.update(total);
  bar.stop();
}

type LookupCounts = Map<string, number>; // `${layer}/${kind}/${result}` → count
async function lookups(p: Platform): Promise<LookupCounts> {
  const metric = p.metrics.registry.getSingleMetric('cache_lookups_total') as Counter | undefined;
  const out: LookupCounts = new Map();
  for (const v of (await metric?.get())?.values ?? []) out.set(`${v.labels.layer}/${v.labels.kind}/${v.labels.result}`, v.value);
  return out;
}
async function redisCalls(p: Platform): Promise<{ count: number; sumSeconds: number }> {
  const metric = p.metrics.registry.getSingleMetric('cache_redis_duration_seconds') as Histogram | undefined;
  let count = 0;
  let sumSeconds = 0;
  for (const v of (await metric?.get())?.values ?? []) {
    if (v.metricName?.endsWith('_count')) count += v.value;
    if (v.metricName?.endsWith('_sum')) sumSeconds += v.value;
  }
  return { count, sumSeconds };
}

interface RunResult {
  name: string;
  reads: number;
  writes: number;
  writeRefusals: number;
  errors: number;
  readsPerSecond: number;
  byOp: Record<string, number>;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  nodeCpu: number;
  lookups: LookupCounts;
  redis: { count: number; sumSeconds: number };
  /** share of the measured time the Redis breaker was not closed (sampled every 500 ms) */
  redisDegradedShare: number;
}

async function drive(name: string, instances: Platform[], users: SeededUser[], warmupSecondsOfRun: number): Promise<RunResult> {
  const pick = zipf(users, zipfExponent);
  // one API process each: its own L1 and engine, the same Redis and database; every operation
  // goes to one of them at random, as behind a load balancer
  const apis = instances.map((p) => ({ p, reads: createWalletReads(p), paymentMethods: createPaymentMethodService(p), send: transferer(p, users) }));
  const run = async (op: Op, u: SeededUser): Promise<void> => {
    const { p, reads, paymentMethods, send } = apis[apis.length === 1 ? 0 : randomInt(apis.length)]!;
    switch (op) {
      case 'balances':
        await reads.balances(u.id, u.shard);
        return;
      case 'history':
        await loadRecent(p, u.id, u.shard);
        return;
      case 'profile':
        await reads.profile(u.id, u.shard);
        return;
      case 'paymentMethods':
        await paymentMethods.list(u.id, u.shard);
        return;
      case 'transfer': {
        let to = pick();
        while (to === u) to = pick();
        const status = await send(u, to);
        if (status !== 201) counts.writeRefusals++;
      }
    }
  };
  const chooseOp = (): Op => {
    let x = Math.random();
    if (x < writeShare) return 'transfer';
    x = (x - writeShare) / (1 - writeShare);
    for (const [op, share] of READ_MIX) {
      if (x < share) return op;
      x -= share;
    }
    return 'balances';
  };

  const redisSamples = { ok: 0, degraded: 0 };
  const counts = { reads: 0, writes: 0, writeRefusals: 0, errors: 0, byOp: {} as Record<string, number> };
  const latencies: number[] = [];
  const started = performance.now();
  const measureFrom = started + warmupSecondsOfRun * 1000;
  const end = measureFrom + seconds * 1000;
  // the counters are read when the measured window opens and when it closes (by the first
  // worker past each mark: timers would lag behind workers that never wait for I/O)
  type Snapshot = [LookupCounts, { count: number; sumSeconds: number }, NodeJS.CpuUsage];
  let atStart: Promise<Snapshot> | undefined;
  let atEnd: Promise<Snapshot> | undefined;
  const snapshot = async (): Promise<Snapshot> => {
    const cpu = process.cpuUsage();
    const all = await Promise.all(instances.map(async (p) => [await lookups(p), await redisCalls(p)] as const));
    const l: LookupCounts = new Map();
    for (const [counts] of all) for (const [k, v] of counts) l.set(k, (l.get(k) ?? 0) + v);
    return [l, { count: all.reduce((a, [, r]) => a + r.count, 0), sumSeconds: all.reduce((a, [, r]) => a + r.sumSeconds, 0) }, cpu];
  };

  const worker = async () => {
    for (;;) {
      const t0 = performance.now();
      if (t0 >= measureFrom) atStart ??= snapshot();
      if (t0 >= end) {
        atEnd ??= snapshot();
        return;
      }
      const op = chooseOp();
      try {
        await run(op, pick());
      } catch (err) {
        if (t0 >= measureFrom) counts.errors++;
        if (counts.errors <= 3) log(`${op} failed: ${(err as Error).message}`);
      }
      const t1 = performance.now();
      if (t0 >= measureFrom && t1 <= end) {
        if (op === 'transfer') counts.writes++;
        else {
          counts.reads++;
          latencies.push(t1 - t0);
        }
        counts.byOp[op] = (counts.byOp[op] ?? 0) + 1;
      }
      // a request arrives as I/O: let timers and replies of others run, as a server would
      await yieldToIo();
    }
  };
  const bar = new cliProgress.SingleBar({ format: `${name.padEnd(8)} [{bar}] {value}/{total} s | {rate} reads/s`, hideCursor: true }, cliProgress.Presets.shades_classic);
  bar.start(warmupSecondsOfRun + seconds, 0, { rate: '-' });
  const ticker = setInterval(() => {
    const now = performance.now();
    for (const { p } of apis) {
      const status = p.cache.redisStatus();
      if (status !== 'absent' && now >= measureFrom) redisSamples[status === 'ok' ? 'ok' : 'degraded']++;
    }
    const elapsed = (now - measureFrom) / 1000;
    bar.update(Math.min(warmupSecondsOfRun + seconds, Math.round((now - started) / 1000)), { rate: elapsed > 0 ? Math.round(counts.reads / elapsed).toLocaleString('en-US') : 'warming up' });
  }, 500);
  await Promise.all(Array.from({ length: concurrency }, worker));
  clearInterval(ticker);
  bar.update(warmupSecondsOfRun + seconds);
  bar.stop();
  const [[l0, r0, c0], [l1, r1, c1]] = await Promise.all([atStart!, atEnd!]);
  const delta: LookupCounts = new Map([...l1].map(([k, v]) => [k, v - (l0.get(k) ?? 0)]));
  const lat = Float64Array.from(latencies).sort();
  return {
    name,
    ...counts,
    readsPerSecond: counts.reads / seconds,
    latencyMs: { p50: percentile(lat, 50), p90: percentile(lat, 90), p99: percentile(lat, 99), max: lat.length ? lat[lat.length - 1]! : NaN },
    nodeCpu: (c1.user - c0.user + c1.system - c0.system) / 1000 / (seconds * 1000),
    lookups: delta,
    redis: { count: r1.count - r0.count, sumSeconds: r1.sumSeconds - r0.sumSeconds },
    redisDegradedShare: redisSamples.ok + redisSamples.degraded ? redisSamples.degraded / (redisSamples.ok + redisSamples.degraded) : 0,
  };
}

/** hits / lookups of one layer, over every key type or one */
function hitRate(l: LookupCounts, layer: 'l1' | 'l2', kind?: string): { hits: number; lookups: number; rate: number } {
  let hits = 0;
  let misses = 0;
  for (const [key, v] of l) {
    const [ly, k, result] = key.split('/');
    if (ly !== layer || (kind && k !== kind)) continue;
    if (result === 'hit') hits += v;
    else misses += v;
  }
  return { hits, lookups: hits + misses, rate: hits + misses ? hits / (hits + misses) : NaN };
}

async function main(): Promise<void> {
  const redisProblem = await redisAnswers(redisUrl);
  if (redisProblem) {
    process.stderr.write(`bench:cache needs Redis (the L2 under test) at ${redisUrl}, which does not answer: ${redisProblem}\nStart Redis there or set REDIS_URL.\n`);
    process.exit(3);
  }
  const { REDIS_URL: _ignored, ...env } = process.env;
  const overrides = {
    ...(env.WALLET_DATA_DIR ? {} : { dataDir: '.data/bench' }),
    ...(env.EMBEDDED_PG_PORT ? {} : { embeddedPgPort: 15434 }),
    ...(env.LOG_LEVEL ? {} : { logLevel: 'warn' }),
  };
  // the bypassed run: no L1 (0 bytes) and no Redis; the cached run: the configured L1 and L2
  const uncachedConfig = loadConfig(env, { ...overrides, cacheL1MaxBytes: 0 });
  const cachedConfig = loadConfig({ ...env, REDIS_URL: redisUrl }, overrides);
  const database = await freshDatabase(uncachedConfig, BENCH_DB);
  const logger = createLogger(uncachedConfig.logLevel);
  let platform: Platform | undefined;
  const cachedPlatforms: Platform[] = [];
  try {
    platform = createPlatform(uncachedConfig, { databaseUrl: database.url, log: logger });
    await platform.ready();
    const sql = platform.db.clusters[0]!.sql;
    await migrate(sql, { partitionsAheadMonths: uncachedConfig.partitionsAheadMonths });
    const [pg] = await sql<{ version: string; sb: string }[]>`select current_setting('server_version') as version, current_setting('shared_buffers') as sb`;

    const seedBar = new cliProgress.SingleBar({ format: 'funding wallets [{bar}] {value}/{total}', hideCursor: true }, cliProgress.Presets.shades_classic);
    seedBar.start(userCount, 0);
    const seeded = await seedUsers(platform, { users: userCount, currency: CURRENCY, balanceMinor: 10_000_000n, onProgress: (d) => seedBar.update(d) });
    seedBar.stop();
    await makeHistory(platform, seeded.all);
    await sql`analyze`;
    log(`${seeded.users.toLocaleString('en-US')} funded wallets, ${(userCount * historyPerUser).toLocaleString('en-US')} transfers of history`);

    // nothing to warm up without a cache but the JIT and PostgreSQL's buffers
    const uncached = await drive('uncached', [platform], seeded.all, Math.min(warmupSeconds, UNCACHED_WARMUP_MAX_SECONDS));
    await platform.close();
    platform = undefined;

    for (let i = 0; i < instanceCount; i++) {
      const p = createPlatform(cachedConfig, { databaseUrl: database.url, log: logger });
      cachedPlatforms.push(p);
      await p.ready(); // connected to Redis, subscribed to invalidations
    }
    // each instance starts the way a server does: one warming round
    const warm: WarmRound[] = [];
    for (const p of cachedPlatforms) warm.push(await createWarmer(p).warmOnce());
    log(`warming round${warm.length > 1 ? 's' : ''}: ${warm.map((w) => `${w.users} users, ${w.keys} keys in ${w.ms} ms${w.stoppedEarly ? ' (stopped early: budget)' : ''}`).join('; ')}`);
    const cached = await drive('cached', cachedPlatforms, seeded.all, warmupSeconds);
    const l1Bytes = cachedPlatforms.reduce((a, p) => a + p.cache.l1.bytes, 0);
    const l1Entries = cachedPlatforms.reduce((a, p) => a + p.cache.l1.size, 0);

    report({ uncached, cached, warm: warm[0]!, l1Bytes, l1Entries, redisTimeoutMs: cachedConfig.cacheRedisTimeoutMs, l1TtlSeconds: cachedConfig.cacheL1TtlSeconds, pg: pg! });
  } finally {
    await platform?.close();
    await Promise.all(cachedPlatforms.map((p) => p.close()));
    await database.stop();
  }
}

function report(r: { uncached: RunResult; cached: RunResult; warm: WarmRound; l1Bytes: number; l1Entries: number; redisTimeoutMs: number; l1TtlSeconds: number; pg: { version: string; sb: string } }): void {
  const { uncached, cached } = r;
  const n = (x: number, digits = 0) => x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
  const pct = (x: number) => `${n(x * 100, 1)} %`;
  const l1 = hitRate(cached.lookups, 'l1');
  const l2 = hitRate(cached.lookups, 'l2');
  // Every L1 miss asks L2 while the breaker is closed; with the breaker open, balance misses
  // skip L2 uncounted, so L1 misses are the denominator. Lookups in flight when the window
  // opens can count their L1 miss before it and their L2 hit inside: the larger of the two
  // counts keeps that edge from showing a rate above 100 %.
  const ofMisses = (l2Hits: number, l2Lookups: number, l1Misses: number) => (Math.max(l1Misses, l2Lookups) ? l2Hits / Math.max(l1Misses, l2Lookups) : NaN);
  const l1Misses = l1.lookups - l1.hits;
  const l2OfL1Misses = ofMisses(l2.hits, l2.lookups, l1Misses);
  const speedup = cached.readsPerSecond / uncached.readsPerSecond;
  const kinds = ['balance', 'user', 'transactions_recent', 'payment_methods'].map((kind) => {
    const a = hitRate(cached.lookups, 'l1', kind);
    const b = hitRate(cached.lookups, 'l2', kind);
    return { kind, l1Lookups: a.lookups, l1HitRate: a.rate, l1Misses: a.lookups - a.hits, l2Hits: b.hits, l2HitRateOfL1Misses: ofMisses(b.hits, b.lookups, a.lookups - a.hits) };
  });
  const met = { l1: l1.rate >= TARGETS.l1HitRate, l2: l2OfL1Misses >= TARGETS.l2HitRateOfL1Misses, speedup: speedup >= TARGETS.speedup };
  const runFigures = (x: RunResult) => ({ readsPerSecond: Math.round(x.readsPerSecond), reads: x.reads, writes: x.writes, writeRefusals: x.writeRefusals, errors: x.errors, byOp: x.byOp, latencyMs: x.latencyMs, nodeCpu: x.nodeCpu });
  const figures = {
    command: `npm run bench:cache -- --seconds ${seconds} --warmup ${warmupSeconds} --users ${userCount} --concurrency ${concurrency} --zipf ${zipfExponent} --write-share ${writeShare * 100} --history ${historyPerUser} --instances ${instanceCount}`,
    machine: `${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown'}), Node ${process.version}, PostgreSQL ${r.pg.version} (shared_buffers ${r.pg.sb}), Redis ${redisUrl}`,
    mix: { writeShare, reads: Object.fromEntries(READ_MIX), zipf: zipfExponent, users: userCount, concurrency, instances: instanceCount, seconds, warmupSeconds, l1TtlSeconds: r.l1TtlSeconds },
    uncached: runFigures(uncached),
    cached: {
      ...runFigures(cached),
      l1Bytes: r.l1Bytes,
      l1Entries: r.l1Entries,
      redisCalls: cached.redis.count,
      redisMeanMs: cached.redis.count ? (cached.redis.sumSeconds / cached.redis.count) * 1000 : NaN,
      redisTimeoutMs: r.redisTimeoutMs,
      redisDegradedShare: cached.redisDegradedShare,
    },
    speedup,
    l1HitRate: l1.rate,
    l2HitRateOfL1Misses: l2OfL1Misses,
    byKind: kinds,
    warming: r.warm,
    targets: { ...TARGETS, met },
  };
  mkdirSync('bench/results', { recursive: true });
  const file = `bench/results/cache-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
  writeFileSync(file, JSON.stringify(figures, null, 2));

  const line = (x: RunResult) =>
    `${n(x.readsPerSecond).padStart(9)} reads/s  p50 ${n(x.latencyMs.p50, 2)} ms, p99 ${n(x.latencyMs.p99, 2)} ms  (${n(x.writes)} transfers, ${n(x.errors)} errors; Node CPU ${n(x.nodeCpu * 100)}% of a core)`;
  const mark = (ok: boolean) => (ok ? 'met' : 'MISSED');
  process.stdout.write(
    [
      '',
      `$ ${figures.command}`,
      figures.machine,
      `${n(userCount)} users, Zipf s=${zipfExponent}, ${n(concurrency)} operations in flight, ${n(writeShare * 100, 1)} % writes; ${seconds} s measured after ${Math.min(warmupSeconds, UNCACHED_WARMUP_MAX_SECONDS)} s (uncached) / ${warmupSeconds} s (cached) of warm-up`,
      `  uncached (L1 0 bytes, no Redis) ${line(uncached)}`,
      `  cached   (L1 + Redis L2${instanceCount > 1 ? `, ${instanceCount} instances` : ''}) ${line(cached)}`,
      `  cached / uncached: ${n(speedup, 1)}x                               target ≥ ${TARGETS.speedup}x: ${mark(met.speedup)}`,
      `  L1 hit rate: ${pct(l1.rate)} of ${n(l1.lookups)} lookups                 target ≥ ${TARGETS.l1HitRate * 100} %: ${mark(met.l1)}`,
      `  L2 hit rate of L1 misses: ${pct(l2OfL1Misses)} of ${n(l1Misses)}           target ≥ ${TARGETS.l2HitRateOfL1Misses * 100} %: ${mark(met.l2)}`,
      '  by key type:            L1 lookups   L1 hits   L1 misses   L2 hits of those',
      ...kinds.map((k) => `    ${k.kind.padEnd(20)} ${n(k.l1Lookups).padStart(12)} ${pct(k.l1HitRate).padStart(9)} ${n(k.l1Misses).padStart(11)} ${pct(k.l2HitRateOfL1Misses).padStart(18)}`),
      `  L1 TTL ${r.l1TtlSeconds} s: ${warmupSeconds + seconds < r.l1TtlSeconds ? 'the run is shorter than the TTL, so no L1 entry expired (the misses L2 serves in production); use --warmup 70 for steady state' : 'entries expire during the run'}`,
      `  L1 at the end: ${n(r.l1Entries)} entries, ${n(r.l1Bytes / 1024 / 1024, 1)} MiB; Redis: ${n(cached.redis.count)} calls, mean ${n(figures.cached.redisMeanMs, 2)} ms`,
      ...(cached.redisDegradedShare > 0
        ? [`  WARNING: the Redis breaker was open ${pct(cached.redisDegradedShare)} of the measured time (L2 unused meanwhile): calls exceeded CACHE_REDIS_TIMEOUT_MS=${r.redisTimeoutMs} ms, see bench/README.md`]
        : [`  the Redis breaker stayed closed (CACHE_REDIS_TIMEOUT_MS=${r.redisTimeoutMs} ms)`]),
      `  warming at start: ${n(r.warm.users)} users, ${n(r.warm.keys)} keys in ${n(r.warm.ms)} ms${r.warm.stoppedEarly ? ' (stopped early: budget)' : ''}`,
      `(figures saved to ${file})`,
      '',
    ].join('\n'),
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
