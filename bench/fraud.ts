/**
 * Fraud scoring benchmark.
 *
 *   npm run bench:fraud -- [--pure 2000000] [--checks 50000] [--concurrency 64] [--split-seconds 10]
 *                          [--split-in-flight 256] [--split-rate 10000] [--split-budget-ms 50]
 *
 * 1. Pure scoring, one core: features + rules + the lr-v1 model (`decide()`) over --pure
 *    requests with varied precomputed signals. Target ≥ 100,000 scorings/s per core.
 * 2. Added latency: `platform.fraud.check()` as a money service calls it, in process, with the
 *    velocity features in Redis (REDIS_URL, default redis://127.0.0.1:6379) and the user context
 *    from PostgreSQL, --checks checks from --concurrency concurrent callers over 10,000 users.
 *    The check's own latency is what it adds to a transfer: p50/p99. Target p99 ≤ 1 ms.
 * 3. Split role: the fraud role in a child process (`wallet serve --roles fraud`, FRAUD_PORT)
 *    and this process as the api side (FRAUD_URL), closed loop with --split-in-flight (256) checks in flight for
 *    --split-seconds: the most it answers. Target ≥ 10,000 checks/s on this 2-core machine.
 * 4. The same split, open loop: --split-rate checks/s offered for --split-seconds whatever the
 *    answers do (an API's requests arrive on their own), latency from each check's due time.
 *    Only checks scored within --split-budget-ms count in both: the others got the fail policy.
 * The child runs without the bench's 64 MB young generation, as `wallet serve` runs in production
 * (with it, its scavenges took 20–35 ms); BENCH_FRAUD_NODE_ARGS adds flags (`--cpu-prof …`).
 *
 * Database: a fresh `wallet_bench_fraud` database (DATABASE_URL's server or the embedded one).
 * Results: bench/results/fraud-<time>.json.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config/index.js';
import { migrate } from '../src/db/migrate.js';
import { createPlatform, type Platform } from '../src/platform.js';
import { createLogger } from '../src/observability/logger.js';
import { decide } from '../src/fraud/scorer.js';
import { BUNDLED_RULES } from '../src/fraud/index.js';
import { DEFAULT_RULES } from '../src/fraud/rules.js';
import { defaultModel } from '../src/fraud/model/logistic.js';
import { FEATURE_NAMES, type FraudRequest, type RawSignals } from '../src/fraud/types.js';
import { newId, newShard } from '../src/shared/ids.js';
import { dropRedisKeys, freshDatabase, log, percentile } from './support.js';

const { values: args } = parseArgs({
  options: {
    pure: { type: 'string', default: '2000000' },
    checks: { type: 'string', default: '50000' },
    concurrency: { type: 'string', default: '64' },
    'split-seconds': { type: 'string', default: '10' },
    'split-in-flight': { type: 'string', default: '256' },
    'split-budget-ms': { type: 'string', default: '50' },
    'split-rate': { type: 'string', default: '10000' },
  },
});
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pureScoring(n: number) {
  const model = defaultModel();
  const variants: { req: FraudRequest; raw: RawSignals }[] = [];
  for (let i = 0; i < 1024; i++) {
    const amount = 100 + ((i * 7919) % 500_000);
    const raw: RawSignals = {
      count1m: i % 7, count1h: i % 23, count24h: i % 61, value1m: amount * (i % 3), value1h: amount * (i % 9), value24h: amount * (i % 30),
      newCounterparty: i % 5 === 0, msSinceCredentialChange: i % 11 === 0 ? 3_600_000 : null, firstAfterCredentialChange: i % 22 === 0,
      historyCount: i % 40, historyMean: 5000 + i, historyStd: 1000 + (i % 300), accountAgeMs: (i % 400) * 86_400_000, countryMismatch: i % 17 === 0,
      msSinceTopup: i % 4 === 0 ? 600_000 : null, topupValue1h: i % 4 === 0 ? amount : 0, counterpartyDistinctSenders1h: 1 + (i % 6), amount, kind: i % 3 === 0 ? 'topup' : i % 3 === 1 ? 'transfer' : 'payment',
    };
    variants.push({ raw, req: { requestId: `r${i}`, kind: raw.kind, userId: `usr_${i}`, amountMinor: BigInt(amount), currency: 'USD', counterpartyId: `usr_c${i % 50}`, at: new Date() } });
  }
  const scratch = new Float64Array(FEATURE_NAMES.length);
  let flagged = 0;
  for (let i = 0; i < 50_000; i++) decide(DEFAULT_RULES, model, variants[i & 1023]!.req, variants[i & 1023]!.raw, scratch); // warm-up
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const v = variants[i & 1023]!;
    if (decide(DEFAULT_RULES, model, v.req, v.raw, scratch).outcome !== 'approve') flagged++;
  }
  const seconds = (performance.now() - start) / 1000;
  return { scorings: n, perSecondOneCore: Math.round(n / seconds), flaggedShare: +(flagged / n).toFixed(3) };
}

async function seedUsers(p: Platform, n: number): Promise<string[]> {
  const ids = Array.from({ length: n }, () => newId('usr', newShard()));
  const sql = p.db.clusters[0]!.sql;
  for (let i = 0; i < n; i += 5000) {
    const part = ids.slice(i, i + 5000);
    const old = new Date(Date.now() - 400 * 86_400_000);
    await sql`insert into users (id, shard, email, name, kind, region, password_hash, credentials_changed_at, created_at)
      select id, substr(id, 5, 3)::smallint, id || '@bench.local', 'Bench', 'person', 'us-east', 'x', ${old}, ${old} from unnest(${part}::text[]) as id`;
  }
  return ids;
}

async function closedLoop(check: (i: number) => Promise<unknown>, total: number | undefined, seconds: number | undefined, inFlight: number) {
  const latencies: number[] = [];
  let next = 0;
  const end = seconds ? performance.now() + seconds * 1000 : Infinity;
  const start = performance.now();
  const worker = async () => {
    while ((total === undefined || next < total) && performance.now() < end) {
      const i = next++;
      const t0 = performance.now();
      await check(i);
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const secs = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return { checks: latencies.length, perSecond: Math.round(latencies.length / secs), p50Ms: +percentile(latencies, 50).toFixed(3), p99Ms: +percentile(latencies, 99).toFixed(3), maxMs: +latencies.at(-1)!.toFixed(3) };
}

/**
 * Open loop: check k is due at k/rate s whatever happened before, and its latency counts from
 * when it was due (no coordinated omission). Checks are started on a 1 ms tick, all those due.
 */
async function openLoop(check: (i: number) => Promise<unknown>, rate: number, seconds: number, maxOutstanding: number) {
  const latencies: number[] = [];
  let issued = 0;
  let outstanding = 0;
  let dropped = 0;
  const start = performance.now();
  const total = Math.round(rate * seconds);
  while (issued < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
    for (; issued < due; issued++) {
      const dueAt = start + (issued * 1000) / rate;
      // a generator that cannot keep up says so instead of slowing the arrivals down
      if (outstanding >= maxOutstanding) {
        dropped++;
        continue;
      }
      outstanding++;
      void check(issued).then(() => {
        outstanding--;
        latencies.push(performance.now() - dueAt);
      });
    }
    await sleep(1);
  }
  while (outstanding > 0) await sleep(1);
  const secs = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return { offeredPerSecond: rate, checks: latencies.length, notSent: dropped, perSecond: Math.round(latencies.length / secs), p50Ms: +percentile(latencies, 50).toFixed(3), p99Ms: +percentile(latencies, 99).toFixed(3), maxMs: +latencies.at(-1)!.toFixed(3) };
}

async function main() {
  log('1. pure scoring (features + rules + model), one core');
  const pure = pureScoring(Number(args.pure));
  log(`   ${pure.perSecondOneCore.toLocaleString()} scorings/s`);

  const config = loadConfig({ ...process.env, LOG_LEVEL: 'warn', REDIS_URL, BUS_NAMESPACE: `bench${process.pid}` });
  const db = await freshDatabase(config, 'wallet_bench_fraud');
  const p = createPlatform(config, { databaseUrl: db.url, log: createLogger('warn') });
  let child: ReturnType<typeof spawn> | undefined;
  try {
    await p.ready();
    await migrate(p.db.clusters[0]!.sql, { partitionsAheadMonths: 1 });
    const users = await seedUsers(p, 10_000);
    const request = (i: number, tag: string): FraudRequest => ({
      requestId: `${tag}-${i}`, kind: i % 3 === 0 ? 'payment' : 'transfer', userId: users[i % users.length]!, amountMinor: BigInt(500 + (i % 20_000)), currency: 'USD', counterpartyId: users[(i * 31 + 7) % users.length], at: new Date(),
    });
    log(`2. check() in process with Redis velocity, ${args.checks} checks, ${args.concurrency} concurrent`);
    await closedLoop((i) => p.fraud.check(request(i, 'warm')), 10_000, undefined, Number(args.concurrency)); // warm caches
    const inProcess = await closedLoop((i) => p.fraud.check(request(i, 'inproc')), Number(args.checks), undefined, Number(args.concurrency));
    log(`   ${inProcess.perSecond.toLocaleString()} checks/s, added latency p50 ${inProcess.p50Ms} ms, p99 ${inProcess.p99Ms} ms`);
    const single = await closedLoop((i) => p.fraud.check(request(i, 'single')), 5000, undefined, 1);
    log(`   one at a time: p50 ${single.p50Ms} ms, p99 ${single.p99Ms} ms`);

    log(`3. split role: the fraud role in a child process, ${args['split-in-flight']} checks in flight for ${args['split-seconds']} s`);
    const port = 18_081;
    child = spawn(process.execPath, [...(process.env.BENCH_FRAUD_NODE_ARGS ?? '').split(' ').filter(Boolean), '--import', 'tsx', 'bin/wallet.js', 'serve', '--roles', 'fraud'], {
      env: { ...process.env, DATABASE_URL: db.url, REDIS_URL, FRAUD_PORT: String(port), LOG_LEVEL: 'warn', BUS_NAMESPACE: `bench${process.pid}`, WALLET_ROLES: 'fraud' },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    for (let i = 0; i < 100; i++) {
      if (await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false)) break;
      await sleep(200);
    }
    // across processes the budget must cover a network round trip: the api side reads the same
    // rules with the budget raised to --split-budget-ms
    const splitRules = join(tmpdir(), `wallet-bench-rules-${process.pid}.json`);
    writeFileSync(splitRules, JSON.stringify({ ...JSON.parse(readFileSync(BUNDLED_RULES, 'utf8')), policy: { budgetMs: Number(args['split-budget-ms']), onFailure: { approveBelowMinor: 10_000, above: 'review' } } }));
    const apiSide = createPlatform(loadConfig({ ...process.env, LOG_LEVEL: 'warn', FRAUD_URL: `http://127.0.0.1:${port}`, FRAUD_RULES_FILE: splitRules }), { databaseUrl: db.url, log: createLogger('warn') });
    await closedLoop((i) => apiSide.fraud.check(request(i, 'swarm')), 10_000, undefined, 256);
    const fallbacksNow = async () => {
      const values = (await apiSide.metrics.registry.getSingleMetric('fraud_fallbacks_total')?.get())?.values ?? [];
      return new Map(values.map((v) => [String(v.labels.reason), v.value]));
    };
    const before = await fallbacksNow();
    const split = await closedLoop((i) => apiSide.fraud.check(request(i, 'split')), undefined, Number(args['split-seconds']), Number(args['split-in-flight']));
    // a check past its budget is answered by the fail policy, not scored: only scored checks count
    const fallbacks = Object.fromEntries([...(await fallbacksNow())].map(([k, v]) => [k, v - (before.get(k) ?? 0)]));
    const fellBack = Object.values(fallbacks).reduce((a, b) => a + b, 0);
    const scoredPerSecond = Math.round((split.perSecond * (split.checks - fellBack)) / split.checks);
    log(`   ${scoredPerSecond.toLocaleString()} checks/s scored within the ${args['split-budget-ms']} ms budget (${split.perSecond.toLocaleString()}/s answered), p50 ${split.p50Ms} ms, p99 ${split.p99Ms} ms, fail-policy answers ${JSON.stringify(fallbacks)}`);

    const rate = Number(args['split-rate']);
    log(`4. split role, open loop: ${rate.toLocaleString()} checks/s offered for ${args['split-seconds']} s`);
    await sleep(2000); // the closed loop's checks past their budget are still being scored: let them finish
    const beforeOpen = await fallbacksNow();
    const open = await openLoop((i) => apiSide.fraud.check(request(i, 'open')), rate, Number(args['split-seconds']), 20_000);
    const openFallbacks = Object.fromEntries([...(await fallbacksNow())].map(([k, v]) => [k, v - (beforeOpen.get(k) ?? 0)]));
    const openFellBack = Object.values(openFallbacks).reduce((a, b) => a + b, 0);
    const openScoredPerSecond = Math.round((open.perSecond * (open.checks - openFellBack)) / Math.max(1, open.checks));
    log(`   ${openScoredPerSecond.toLocaleString()} checks/s scored within the budget (${open.perSecond.toLocaleString()}/s answered, ${open.notSent} not sent), latency from the due time p50 ${open.p50Ms} ms, p99 ${open.p99Ms} ms, max ${open.maxMs} ms, fail-policy answers ${JSON.stringify(openFallbacks)}`);
    await apiSide.close();

    const result = {
      at: new Date().toISOString(),
      machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
      redis: REDIS_URL,
      args,
      pure,
      inProcess: { ...inProcess, concurrency: Number(args.concurrency), oneAtATime: single },
      split: { ...split, scoredPerSecond, inFlight: Number(args['split-in-flight']), fallbacks },
      splitOpenLoop: { ...open, scoredPerSecond: openScoredPerSecond, fallbacks: openFallbacks },
      targets: { pureScoringsPerSecondPerCore: 100_000, addedP99Ms: 1, splitChecksPerSecond: 10_000 },
    };
    mkdirSync('bench/results', { recursive: true });
    const file = `bench/results/fraud-${result.at.replace(/[:.]/g, '-')}.json`;
    writeFileSync(file, JSON.stringify(result, null, 2));
    process.stdout.write(`${JSON.stringify(result, null, 2)}\nwritten to ${file}\n`);
  } finally {
    child?.kill('SIGTERM');
    await p.close();
    await db.stop();
    await dropRedisKeys(REDIS_URL, `fraud:bench${process.pid}:`).catch((err) => log(`could not delete the run's Redis keys: ${(err as Error).message}`));
  }
}

await main();
process.exit(0); // the Redis and HTTP clients of the two platforms would otherwise keep the process up
