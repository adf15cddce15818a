/**
 * Ledger engine throughput: P2P transfers among funded wallets, submitted straight to the
 * batching engine (no HTTP), for a fixed time, then `reconcile` on the result.
 *
 *   npm run bench:ledger -- [--seconds 10] [--warmup 2] [--users 10000] [--concurrency 2000]
 *
 * Each transfer is the command the API builds: src/transfers/service.ts itself runs here (with
 * the wallet ids known up front instead of looked up), so every transfer writes what a real one
 * writes: the ledger row, both balances, two history rows, an outbox event and the idempotency
 * record. Engine settings come from the usual variables (LEDGER_BATCH_MAX_SIZE,
 * LEDGER_BATCH_WINDOW_MS, LEDGER_CONCURRENT_BATCHES, DB_POOL_MAX, ...).
 *
 * Database: a fresh `wallet_bench` database, dropped and created at every run, on DATABASE_URL's
 * server when it is set, otherwise on an embedded PostgreSQL of its own (.data/bench/pg, port
 * 15434; durable settings: fsync and synchronous_commit on).
 */
import { randomInt } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { loadConfig, type Config } from '../src/config/index.js';
import { migrate } from '../src/db/migrate.js';
import { createPlatform, type Platform } from '../src/platform.js';
import { createLogger } from '../src/observability/logger.js';
import { createLedgerEngine, EngineUnavailable, requestHash, type EngineMetrics } from '../src/ledger/engine.js';
import { createTransferService } from '../src/transfers/service.js';
import type { WalletDirectory } from '../src/ledger/wallet-directory.js';
import { reconcile, formatReport } from '../src/ledger/reconcile.js';
import { seedUsers, type SeededUser } from '../src/cli/seed.js';
import { freshDatabase, log, percentile } from './support.js';
import { writeBenchFraudRules } from '../src/bench/fraud-rules.js';

const BENCH_DB = 'wallet_bench';
const CURRENCY = 'USD';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    users: { type: 'string', default: '10000' },
    concurrency: { type: 'string', default: '2000' },
    'amount-max': { type: 'string', default: '100' },
    'no-reconcile': { type: 'boolean', default: false },
  },
});
const int = (name: keyof typeof args, min: number, max: number): number => {
  const n = Number(args[name]);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be an integer from ${min} to ${max}`);
  return n;
};
const seconds = int('seconds', 1, 3600);
const warmupSeconds = int('warmup', 0, 600);
const userCount = int('users', 2, 1_000_000);
const concurrency = int('concurrency', 1, 100_000);
const amountMax = int('amount-max', 1, 1_000_000);




/** busy and total jiffies of the whole machine, from /proc/stat (Linux only) */
function machineCpu(): { busy: number; total: number } | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3]! + (f[4] ?? 0);
    const total = f.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

interface Run {
  ok: number;
  insufficient: number;
  otherRefusals: Map<string, number>;
  unavailable: number;
  errors: number;
  latencies: number[];
  batchSizes: number[];
  batchMs: number[];
  batchFailures: number;
}

async function drive(platform: Platform, users: SeededUser[]): Promise<{ run: Run; measuredMs: number; nodeCpu: number; machineCpu?: number }> {
  const run: Run = { ok: 0, insufficient: 0, otherRefusals: new Map(), unavailable: 0, errors: 0, latencies: [], batchSizes: [], batchMs: [], batchFailures: 0 };
  let measuring = false;
  const metrics: EngineMetrics = {
    batchCommitted(size, ms) {
      platform.metrics.batchCommitted(size, ms);
      if (measuring) {
        run.batchSizes.push(size);
        run.batchMs.push(ms);
      }
    },
    batchFailed(reason) {
      platform.metrics.batchFailed(reason);
      if (measuring) run.batchFailures++;
    },
    queueDepth: (c, d) => platform.metrics.queueDepth(c, d),
  };
  const { config } = platform;
  const engine = createLedgerEngine(
    platform.db,
    { batchMaxSize: config.ledgerBatchMaxSize, batchWindowMs: config.ledgerBatchWindowMs, queueMax: config.ledgerQueueMax, concurrentBatches: config.ledgerConcurrentBatches, retries: config.ledgerBatchRetries },
    metrics,
  );
  // The wallet ids are known: the directory answers from memory (in the API it is a warm cache).
  const walletOf = new Map(users.map((u) => [u.id, u.walletId]));
  const directory: WalletDirectory = { find: async (userId) => walletOf.get(userId), userExists: async (userId) => walletOf.has(userId) };
  const transfers = createTransferService({ ...platform, engine }, directory);

  let seq = 0;
  const started = performance.now();
  const measureFrom = started + warmupSeconds * 1000;
  const end = measureFrom + seconds * 1000;
  let cpuAtStart = process.cpuUsage();
  let machineAtStart = machineCpu();
  const startMeasuring = setTimeout(() => {
    measuring = true;
    cpuAtStart = process.cpuUsage();
    machineAtStart = machineCpu();
  }, warmupSeconds * 1000);
  let measuredCpu: NodeJS.CpuUsage | undefined;
  let machineAtEnd: ReturnType<typeof machineCpu>;
  const stopMeasuring = setTimeout(() => {
    measuring = false;
    measuredCpu = process.cpuUsage(cpuAtStart);
    machineAtEnd = machineCpu();
  }, (warmupSeconds + seconds) * 1000);

  const worker = async () => {
    for (;;) {
      const now = performance.now();
      if (now >= end) return;
      const from = users[randomInt(users.length)]!;
      let to = users[randomInt(users.length - 1)]!;
      if (to === from) to = users[users.length - 1]!;
      const input = { to: to.id, amountMinor: BigInt(1 + randomInt(amountMax)), currency: CURRENCY };
      const key = `bench-${++seq}`;
      // what the HTTP layer fingerprints: method, route, params, body
      const hash = requestHash(['POST', '/v1/transfers', null, { to: input.to, amount: input.amountMinor, currency: input.currency }]);
      const counted = now >= measureFrom;
      try {
        const result = await transfers.transfer({ userId: from.id, shard: from.shard, roles: [] }, input, { key, requestHash: hash });
        const t = performance.now();
        if (!counted || t > end) continue;
        run.latencies.push(t - now);
        if (result.status === 201) run.ok++;
        else {
          const code = String((result.body as { code?: string }).code ?? result.status);
          if (code === 'insufficient_funds') run.insufficient++;
          else run.otherRefusals.set(code, (run.otherRefusals.get(code) ?? 0) + 1);
        }
      } catch (err) {
        if (!counted) continue;
        if (err instanceof EngineUnavailable) {
          run.unavailable++;
          await new Promise((r) => setTimeout(r, 5)); // a client backs off on 503
        } else {
          run.errors++;
          if (run.errors <= 3) log(`transfer failed: ${(err as Error).message}`);
        }
      }
    }
  };
  const bar = new cliProgress.SingleBar({ format: 'driving transfers [{bar}] {value}/{total} s | {rate} transfers/s', hideCursor: true }, cliProgress.Presets.shades_classic);
  bar.start(warmupSeconds + seconds, 0, { rate: '-' });
  const ticker = setInterval(() => {
    const elapsed = (performance.now() - measureFrom) / 1000;
    bar.update(Math.min(warmupSeconds + seconds, Math.round((performance.now() - started) / 1000)), { rate: elapsed > 0 ? Math.round(run.ok / elapsed).toLocaleString('en-US') : 'warming up' });
  }, 500);
  await Promise.all(Array.from({ length: concurrency }, worker));
  clearInterval(ticker);
  clearTimeout(startMeasuring);
  clearTimeout(stopMeasuring);
  bar.update(warmupSeconds + seconds);
  bar.stop();
  await engine.stop();
  measuredCpu ??= process.cpuUsage(cpuAtStart);
  machineAtEnd ??= machineCpu();
  const measuredMs = seconds * 1000;
  const nodeCpu = (measuredCpu.user + measuredCpu.system) / 1000 / measuredMs;
  const machine = machineAtStart && machineAtEnd ? ((machineAtEnd.busy - machineAtStart.busy) / (machineAtEnd.total - machineAtStart.total)) * cpus().length : undefined;
  return { run, measuredMs, nodeCpu, machineCpu: machine };
}

async function main(): Promise<void> {
  const env = { ...process.env };
  const dataDir = env.WALLET_DATA_DIR ?? '.data/bench';
  // permissive fraud rules, as in the HTTP benchmark, unless FRAUD_RULES_FILE names others
  env.FRAUD_RULES_FILE ??= writeBenchFraudRules(dataDir);
  const config = loadConfig(env, {
    ...(env.WALLET_DATA_DIR ? {} : { dataDir }),
    ...(env.EMBEDDED_PG_PORT ? {} : { embeddedPgPort: 15434 }),
    ...(env.LOG_LEVEL ? {} : { logLevel: 'warn' }),
  });
  const database = await freshDatabase(config, BENCH_DB);
  const platform = createPlatform(config, { databaseUrl: database.url, log: createLogger(config.logLevel) });
  try {
    const sql = platform.db.clusters[0]!.sql;
    await migrate(sql, { partitionsAheadMonths: config.partitionsAheadMonths });
    const [pg] = await sql<{ version: string; fsync: string; sync: string; sb: string }[]>`
      select current_setting('server_version') as version, current_setting('fsync') as fsync, current_setting('synchronous_commit') as sync, current_setting('shared_buffers') as sb`;

    const seedBar = new cliProgress.SingleBar({ format: 'funding wallets [{bar}] {value}/{total}', hideCursor: true }, cliProgress.Presets.shades_classic);
    seedBar.start(userCount, 0);
    const seeded = await seedUsers(platform, { users: userCount, currency: CURRENCY, balanceMinor: 10_000_000n, onProgress: (d) => seedBar.update(d) });
    seedBar.stop();
    log(`${seeded.users.toLocaleString('en-US')} funded wallets in ${(seeded.durationMs / 1000).toFixed(1)} s`);

    const { run, measuredMs, nodeCpu, machineCpu: machine } = await drive(platform, seeded.all);
    const lat = Float64Array.from(run.latencies).sort();
    const sizes = Float64Array.from(run.batchSizes).sort();
    const batchMs = Float64Array.from(run.batchMs).sort();
    const mean = (xs: Float64Array) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
    const rate = run.ok / (measuredMs / 1000);

    let verdict = 'skipped';
    let reconcileMs = 0;
    if (!args['no-reconcile']) {
      const report = await reconcile(platform.db);
      reconcileMs = report.durationMs;
      verdict = report.ok ? 'OK' : 'VIOLATIONS';
      if (!report.ok) process.stdout.write(formatReport(report));
    }

    const n = (x: number, digits = 0) => x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
    const refusals = [`${n(run.insufficient)} insufficient funds`, ...[...run.otherRefusals].map(([c, k]) => `${n(k)} ${c}`), `${n(run.unavailable)} unavailable (queue full)`, `${n(run.errors)} errors`].join(', ');
    const figures = {
      command: `npm run bench:ledger -- --seconds ${seconds} --users ${userCount} --concurrency ${concurrency}`,
      machine: `${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown'}), Node ${process.version}, PostgreSQL ${pg!.version} (fsync ${pg!.fsync}, synchronous_commit ${pg!.sync}, shared_buffers ${pg!.sb})`,
      engine: { batchMaxSize: config.ledgerBatchMaxSize, batchWindowMs: config.ledgerBatchWindowMs, concurrentBatches: config.ledgerConcurrentBatches, poolMax: config.dbPoolMax },
      transfersPerSecond: Math.round(rate),
      latencyMs: { p50: percentile(lat, 50), p90: percentile(lat, 90), p99: percentile(lat, 99), max: lat.length ? lat[lat.length - 1]! : NaN },
      batches: { count: sizes.length, meanSize: mean(sizes), p50Size: percentile(sizes, 50), maxSize: sizes.length ? sizes[sizes.length - 1]! : NaN, meanMs: mean(batchMs), p99Ms: percentile(batchMs, 99), failures: run.batchFailures },
      refusals: { insufficientFunds: run.insufficient, other: Object.fromEntries(run.otherRefusals), unavailable: run.unavailable, errors: run.errors },
      cpu: { node: nodeCpu, machine },
      reconcile: { verdict, ms: reconcileMs },
    };
    mkdirSync('bench/results', { recursive: true });
    const file = `bench/results/ledger-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
    writeFileSync(file, JSON.stringify(figures, null, 2));

    process.stdout.write(
      [
        '',
        `$ ${figures.command}`,
        figures.machine,
        `${n(userCount)} funded wallets, ${n(concurrency)} transfers in flight, ${seconds} s measured after ${warmupSeconds} s warm-up;`,
        `engine: batches of at most ${config.ledgerBatchMaxSize}, window ${config.ledgerBatchWindowMs} ms, ${config.ledgerConcurrentBatches} in flight, pool ${config.dbPoolMax}`,
        `  ${n(rate)} transfers/s committed (each: ledger row, 2 balances, 2 history rows, outbox event, idempotency record)`,
        `  latency (submit → commit): p50 ${n(figures.latencyMs.p50, 1)} ms, p90 ${n(figures.latencyMs.p90, 1)} ms, p99 ${n(figures.latencyMs.p99, 1)} ms, max ${n(figures.latencyMs.max, 1)} ms`,
        `  batches: ${n(sizes.length)}, size mean ${n(figures.batches.meanSize, 1)} / p50 ${n(figures.batches.p50Size)} / max ${n(figures.batches.maxSize)}; time close → commit mean ${n(figures.batches.meanMs, 1)} ms, p99 ${n(figures.batches.p99Ms, 1)} ms; ${n(run.batchFailures)} failed batches`,
        `  refused: ${refusals}`,
        `  CPU: this Node process ${n(nodeCpu * 100)}% of one core${machine !== undefined ? `; whole machine ${n(machine * 100)}% of ${cpus().length * 100}%` : ''}`,
        `  reconcile: ${verdict}${args['no-reconcile'] ? '' : ` (${n(reconcileMs)} ms)`}`,
        `(figures saved to ${file})`,
        '',
      ].join('\n'),
    );
    if (verdict === 'VIOLATIONS') process.exitCode = 2;
  } finally {
    await platform.close();
    await database.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
