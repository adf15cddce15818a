/**
 * `wallet bench` / `npm run bench`: the HTTP throughput benchmark of the whole platform.
 *
 *   1. a database: a fresh one (`--database`, default wallet_bench_http) on DATABASE_URL's server
 *      or on the embedded PostgreSQL (.data/bench, port 15434), migrated; or, with `--url`, the
 *      running platform's own database (DATABASE_URL must name it);
 *   2. pgbench TPC-B on the same server, in a database of its own, while nothing else runs;
 *   3. N users with funded wallets (progress bar), seeded straight into the database;
 *   4. the platform: `--processes` × `wallet serve` (the first with every role, the others
 *      `api`), sharing that PostgreSQL; or the one at `--url`;
 *   5. the load from generator processes with real JWTs, unique Idempotency-Keys, realistic bodies;
 *   6. correctness: every acknowledged transfer, authorization and capture is in the database
 *      and nothing more (counted over this run's wallets), and `reconcile` finds nothing;
 *   7. the report: bench/results/http-<scenario>-<time>.{json,md,svg}.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import cliProgress from 'cli-progress';
import postgres from 'postgres';
import { loadConfig, type Config } from '../../config/index.js';
import { resolveDatabase } from '../../db/resolve.js';
import { migrate } from '../../db/migrate.js';
import { createPlatform, type Platform } from '../../platform.js';
import { createLogger } from '../../observability/logger.js';
import { createTokens } from '../../auth/tokens.js';
import { seedUsers, type SeededUser } from '../../cli/seed.js';
import { reconcile } from '../../ledger/reconcile.js';
import { forkGenerator, startApiProcess, type ApiProcess } from './processes.js';
import { runPgbench, withDatabase, type PgbenchResult } from './pgbench.js';
import { BENCH_FRAUD_RULES, writeBenchFraudRules } from '../fraud-rules.js';
import { cpuSecondsOf, describeMachine, machineCpuSeconds, postmasterPid, threadSchedSeconds } from './system.js';
import { batchesBetween, scrapeLedgerBatches, verdictOf, type LedgerBatchCounters } from './limits.js';
import { Histogram, summarize } from './histogram.js';
import { accumulate, addOutcomes, classify, emptyAccumulator, figures, toMarkdown, toSvg, type HttpBenchReport, type OpAccumulator, type OpFigures, type SecondFigures } from './report.js';
import { OPS, type BenchUser, type GeneratorPlan, type GeneratorResult, type Mix, type Op, type Outcomes, type Phase, type PhaseEvent, type Snapshot } from './types.js';

export interface HttpBenchOptions {
  scenario: 'steady' | 'spike';
  /** a running platform to target instead of starting one (DATABASE_URL must name its database) */
  url?: string;
  /** the fresh database the benchmark creates when it starts the platform */
  database: string;
  users: number;
  /** steady: the measured seconds; spike: the seconds before and after the spike, each */
  seconds: number;
  warmupSeconds: number;
  /** requests per second offered (open loop); 0: closed loop */
  rate: number;
  spikeSeconds: number;
  spikeFactor: number;
  connections: number;
  pipelining: number;
  generators: number;
  processes: number;
  /**
   * where the background roles (relay, notify, workers, maintenance) run: `first`: in the first
   * API process (as `wallet serve` with every role); `separate`: in a process of their own
   * beside the API processes; `none`: not at all (outbox rows wait, nothing is notified).
   * Steady runs default to `none`: on 2 cores the notify role's development mailbox (an .eml
   * file per party per transfer) alone takes most of a core. The spike defaults to `first`,
   * to show the deferred work queueing while the API sheds reads.
   */
  background: 'first' | 'separate' | 'none';
  mix: Mix;
  hotAccounts: number;
  hotShare: number;
  crossShardShare: number;
  amountMax: number;
  pgbenchSeconds: number;
  pgbenchClients?: number;
  pgbenchScale: number;
  timeoutMs: number;
  maxBacklog: number;
  /** where the report files go; undefined: not written */
  outDir?: string;
  progress: boolean;
  command: string;
  env: Record<string, string | undefined>;
  log: (msg: string) => void;
}

export const DEFAULT_OPTIONS: Omit<HttpBenchOptions, 'command' | 'env' | 'log'> = {
  scenario: 'steady',
  database: 'wallet_bench_http',
  users: 10_000,
  seconds: 20,
  warmupSeconds: 10,
  rate: 0,
  spikeSeconds: 60,
  spikeFactor: 10,
  connections: 240,
  pipelining: 1,
  generators: 1,
  processes: 1,
  background: 'none',
  mix: { transfer: 80, balance: 8, history: 7, payment: 5 },
  hotAccounts: 10,
  hotShare: 0.05,
  crossShardShare: 0.5,
  amountMax: 1000,
  pgbenchSeconds: 10,
  pgbenchScale: 10,
  timeoutMs: 10_000,
  maxBacklog: 1_000_000,
  outDir: 'bench/results',
  progress: true,
};

const BACKGROUND_ROLES = 'relay,notify,workers,maintenance';
const CURRENCY = 'USD';
const OPENING_BALANCE_MINOR = 10_000_000n;

export function phasesOf(o: Pick<HttpBenchOptions, 'scenario' | 'seconds' | 'warmupSeconds' | 'rate' | 'spikeSeconds' | 'spikeFactor'>): Phase[] {
  const phases: Phase[] = [];
  if (o.warmupSeconds > 0) phases.push({ name: 'warmup', seconds: o.warmupSeconds, rate: o.rate, measured: false });
  if (o.scenario === 'steady') phases.push({ name: 'steady', seconds: o.seconds, rate: o.rate, measured: true });
  else {
    if (o.rate <= 0) throw new Error('--scenario spike needs an open-loop --rate (the steady rate; the spike is --spike-factor times it)');
    phases.push({ name: 'before', seconds: o.seconds, rate: o.rate, measured: true });
    phases.push({ name: 'spike', seconds: o.spikeSeconds, rate: o.rate * o.spikeFactor, measured: true });
    phases.push({ name: 'after', seconds: o.seconds, rate: o.rate, measured: true });
  }
  return phases;
}

interface Database {
  url: string;
  where: string;
  /** drop what the benchmark created and stop what it started */
  stop(): Promise<void>;
}

async function prepareDatabase(o: HttpBenchOptions, config: Config): Promise<Database> {
  if (config.topologyFile) throw new Error('bench: runs on one cluster; unset WALLET_TOPOLOGY (use DATABASE_URL or the embedded default)');
  if (o.url) {
    if (!config.databaseUrl) throw new Error('--url: set DATABASE_URL to the database of the platform at that URL (the benchmark seeds its users there and counts what the load wrote)');
    return { url: config.databaseUrl, where: 'DATABASE_URL (the running platform\'s)', stop: async () => undefined };
  }
  if (!/^[a-z_][a-z0-9_]{0,50}$/.test(o.database)) throw new Error(`--database: ${o.database} is not a plain lower-case identifier`);
  const server = await resolveDatabase(config, o.log);
  const admin = postgres(withDatabase(server.url!, 'postgres'), { max: 1, onnotice: () => undefined });
  try {
    await admin.unsafe(`drop database if exists ${o.database} with (force)`);
    await admin.unsafe(`create database ${o.database}`);
  } finally {
    await admin.end({ timeout: 2 });
  }
  const url = withDatabase(server.url!, o.database);
  return {
    url,
    where: config.databaseUrl ? 'DATABASE_URL\'s server, fresh database' : `embedded, ${config.dataDir}/pg, port ${config.embeddedPgPort}`,
    stop: async () => {
      await server.stop();
    },
  };
}

/** The whole run; returns the report (also written under outDir). */
export async function runHttpBench(o: HttpBenchOptions): Promise<HttpBenchReport> {
  const phases = phasesOf(o);
  const startedAt = new Date().toISOString();
  const env = o.env;
  const config = loadConfig(env, {
    ...(env.WALLET_DATA_DIR ? {} : { dataDir: '.data/bench' }),
    ...(env.EMBEDDED_PG_PORT ? {} : { embeddedPgPort: 15434 }),
    ...(env.LOG_LEVEL ? {} : { logLevel: 'warn' }),
  });
  const database = await prepareDatabase(o, config);
  let platform: Platform | undefined;
  const apis: ApiProcess[] = [];
  const generators: ChildProcess[] = [];
  try {
    platform = createPlatform(config, { databaseUrl: database.url, log: createLogger('silent') });
    const sql = platform.db.clusters[0]!.sql;
    if (!o.url) await migrate(sql, { partitionsAheadMonths: config.partitionsAheadMonths });
    const [pg] = await sql<{ version: string; fsync: string; sync: string; sb: string }[]>`
      select current_setting('server_version') as version, current_setting('fsync') as fsync,
        current_setting('synchronous_commit') as sync, current_setting('shared_buffers') as sb`;
    const dataDirectory = await sql<{ d: string }[]>`select current_setting('data_directory') as d`.then((r) => r[0]?.d, () => undefined);

    // 2. the yardstick, while the server is otherwise idle
    const pgbenchClients = o.pgbenchClients ?? (o.url ? 32 : o.processes * config.dbPoolMax);
    const pgbench: PgbenchResult =
      o.pgbenchSeconds > 0
        ? await runPgbench(database.url, `${o.url ? 'wallet_bench' : o.database}_pgbench`, { clients: pgbenchClients, seconds: o.pgbenchSeconds, scale: o.pgbenchScale, log: o.log })
        : { available: false, reason: 'skipped (--pgbench-seconds 0)' };
    if (pgbench.available) o.log(`pgbench: ${pgbench.tps!.toFixed(0)} tps`);
    else o.log(`pgbench: NO FIGURE — ${pgbench.reason}`);

    // 3. users
    const seeded = await seed(platform, o);
    const persons = seeded.filter((u) => u.kind === 'person');
    const merchants = seeded.filter((u) => u.kind === 'merchant');
    const tokens = createTokens(config);
    const asBench = (u: SeededUser): BenchUser => ({ id: u.id, shard: u.shard, token: tokens.issue(u.id).accessToken });

    // 4. the platform
    const roles: string[] = o.url ? [] : Array.from({ length: o.processes }, (_, i) => (i === 0 && o.background === 'first' ? `api,fraud,${BACKGROUND_ROLES}` : 'api'));
    if (!o.url && o.background === 'separate') roles.unshift(BACKGROUND_ROLES);
    if (!o.url) {
      const rulesFile = writeBenchFraudRules(config.dataDir);
      // the printed URL must be where the process listens: no PUBLIC_BASE_URL of the caller's
      const childEnv: Record<string, string | undefined> = { DATABASE_URL: database.url, LOG_LEVEL: config.logLevel, WALLET_DATA_DIR: config.dataDir, PUBLIC_BASE_URL: undefined, ...(env.FRAUD_RULES_FILE ? {} : { FRAUD_RULES_FILE: rulesFile }) };
      o.log(`starting ${roles.length} platform process(es): ${roles.map((r) => `[${r}]`).join(' ')}`);
      apis.push(...(await Promise.all(roles.map((r) => startApiProcess(r, { ...env, ...childEnv })))));
    }
    const urls = o.url ? [o.url] : apis.filter((a) => a.url).map((a) => a.url!);
    const targets = urls.map((u) => {
      const parsed = new URL(u);
      if (parsed.protocol !== 'http:') throw new Error(`--url: only http:// is supported (got ${u})`);
      return { host: parsed.hostname, port: Number(parsed.port || 80) };
    });
    const first = asBench(persons[0]!);
    const me = await fetch(`${urls[0]}/v1/me`, { headers: { authorization: `Bearer ${first.token}` } });
    if (me.status !== 200) throw new Error(`GET /v1/me with a benchmark token answered ${me.status}: the platform at ${urls[0]} does not accept tokens signed with this JWT_SECRET/JWT_ISSUER/JWT_AUDIENCE`);

    // 5. the load
    const benchPersons = persons.map(asBench);
    const benchMerchants = merchants.map(asBench);
    const runTag = `b${Date.now().toString(36)}`;
    const load = await drive(o, phases, targets, benchPersons, benchMerchants, runTag, generators, {
      api: apis.map((a) => a.child.pid!).filter(Boolean),
      postmaster: postmasterPid(dataDirectory),
      // the queues live where the background roles run; without an HTTP port there, the first API process's
      metricsUrl: `${urls[0]}/metrics`,
      apiMetricsUrls: urls.map((u) => `${u}/metrics`),
    });

    // 6. correctness
    o.log('checking: acknowledged answers against the database, then reconcile');
    const counts = await countMovements(platform, persons, merchants);
    const ack = (op: Op) => Object.entries(load.all[op]).reduce((a, [k, v]) => a + (classify(k) === 'ok' ? v : 0), 0);
    const check = (op: Op, inDatabase: number) => {
      const acknowledged = ack(op);
      const unknown = load.lost[op];
      return { acknowledged, unknown, inDatabase, ok: inDatabase >= acknowledged && inDatabase <= acknowledged + unknown };
    };
    const rec = await reconcile(platform.db);
    const findings = rec.checks.flatMap((c) => c.findings.map((f) => ({ code: f.code, count: f.count, description: f.description })));
    const transfers = check('transfer', counts.p2p);
    const authorizations = check('authorize', counts.holds);
    const captures = check('capture', counts.captures);
    const correctness = { transfers, authorizations, captures, reconcile: { ok: rec.ok, findings, durationMs: rec.durationMs }, ok: transfers.ok && authorizations.ok && captures.ok && rec.ok };

    // 7. the report
    const measured = phases.filter((p) => p.measured);
    const phaseFigures: HttpBenchReport['phases'] = {};
    for (const p of phases) phaseFigures[p.name] = { seconds: p.seconds, rate: p.rate, ops: opsFigures(load.phases[p.name] ?? {}, p.seconds) };
    const totalSeconds = measured.reduce((a, p) => a + p.seconds, 0);
    const totalAcc: Partial<Record<Op, OpAccumulator>> = {};
    for (const p of measured) for (const op of OPS) if (load.phases[p.name]?.[op]) accumulateAcc((totalAcc[op] ??= emptyAccumulator()), load.phases[p.name]![op]!);
    const total = { seconds: totalSeconds, ops: opsFigures(totalAcc, totalSeconds) };
    const headline = o.scenario === 'steady' ? total.ops.transfer : phaseFigures.before?.ops.transfer;
    const transfersPerSecond = headline?.okPerSecond ?? 0;
    // a ratio of max throughput: the spike's phases run at offered rates, so it has none
    const ratio = o.scenario === 'steady' && pgbench.available && pgbench.tps ? Math.round((transfersPerSecond / pgbench.tps) * 100) / 100 : undefined;
    const nonDeclineErrors = OPS.reduce((a, op) => a + (total.ops[op]?.errors ?? 0) + (o.scenario === 'steady' ? (total.ops[op]?.shed ?? 0) : 0), 0);
    const fmt = (x: number, d = 0) => x.toLocaleString('en-US', { maximumFractionDigits: d });
    const p99 = headline?.latency.p99Ms ?? NaN;
    const targetsMet: HttpBenchReport['targets'] = [
      ...(o.scenario === 'steady'
        ? [
            { name: 'P2P transfers over HTTP, durable', target: '≥ 10,000/s', measured: `${fmt(transfersPerSecond)}/s`, met: transfersPerSecond >= 10_000 },
            { name: 'ratio to pgbench TPC-B tps (same run)', target: '≥ 2.5', measured: ratio === undefined ? `no pgbench figure (${pgbench.reason})` : fmt(ratio, 2), met: ratio !== undefined && ratio >= 2.5 },
          ]
        : []),
      { name: 'transfer latency p99', target: '≤ 50 ms', measured: `${fmt(p99, 1)} ms${o.scenario === 'spike' ? ' (before the spike)' : ''}`, met: p99 <= 50 },
      { name: o.scenario === 'steady' ? 'errors other than business declines (shed answers count)' : 'errors other than business declines and shed answers', target: '0', measured: fmt(nonDeclineErrors), met: nonDeclineErrors === 0 },
      { name: 'reconciliation findings; acknowledged = in the database', target: '0; equal', measured: `${findings.length}; ${correctness.transfers.ok && correctness.authorizations.ok && correctness.captures.ok ? 'equal' : 'NOT equal'}`, met: correctness.ok },
    ];
    if (o.scenario === 'spike') {
      const spikeOps = phaseFigures.spike?.ops ?? {};
      const moneyOk = (['transfer', 'authorize', 'capture'] as const).reduce((a, op) => a + (spikeOps[op]?.ok ?? 0), 0);
      const readsShed = (spikeOps.balance?.shed ?? 0) + (spikeOps.history?.shed ?? 0);
      targetsMet.push({ name: 'spike: payments keep succeeding while reads are shed', target: 'money 2xx > 0, reads shed > 0', measured: `money 2xx ${fmt(moneyOk)}, reads shed ${fmt(readsShed)}`, met: moneyOk > 0 && readsShed > 0 });
    }

    const report: HttpBenchReport = {
      kind: 'http',
      command: o.command,
      scenario: o.scenario,
      startedAt,
      machine: describeMachine(),
      postgres: { version: pg!.version, fsync: pg!.fsync, synchronousCommit: pg!.sync, sharedBuffers: pg!.sb, where: database.where },
      platform: {
        started: !o.url,
        processes: o.url ? 1 : roles.length,
        roles,
        urls,
        settings: o.url
          ? {}
          : { LEDGER_BATCH_MAX_SIZE: config.ledgerBatchMaxSize, LEDGER_BATCH_WINDOW_MS: config.ledgerBatchWindowMs, LEDGER_CONCURRENT_BATCHES: config.ledgerConcurrentBatches, DB_POOL_MAX: config.dbPoolMax, HTTP_READS_PER_SECOND: config.httpReadsPerSecond, HTTP_SHED_READS_AT_IN_FLIGHT: config.httpShedReadsAtInFlight, REDIS_URL: config.redisUrl ? 'set' : 'unset', NATS_URL: config.natsUrl ? 'set' : 'unset', fraudRules: env.FRAUD_RULES_FILE ?? BENCH_FRAUD_RULES.version },
      },
      load: {
        users: seeded.length,
        persons: persons.length,
        merchants: merchants.length,
        connections: o.connections,
        pipelining: o.pipelining,
        generators: o.generators,
        mix: { ...o.mix },
        hotAccounts: o.hotAccounts,
        hotShare: o.hotShare,
        crossShardShare: o.crossShardShare,
        crossShardSent: load.crossShardSent,
        openLoop: o.rate > 0,
        phases,
      },
      phases: phaseFigures,
      total,
      series: load.series,
      cpu: load.cpu,
      limits: load.limits,
      pgbench,
      ratioToPgbench: ratio,
      correctness,
      targets: targetsMet,
    };
    if (o.outDir) {
      mkdirSync(o.outDir, { recursive: true });
      const base = join(o.outDir, `http-${o.scenario}-${startedAt.replace(/[:.]/g, '-')}`);
      report.files = { json: `${base}.json`, markdown: `${base}.md`, svg: `${base}.svg` };
      writeFileSync(report.files.json, JSON.stringify(report, null, 2));
      writeFileSync(report.files.markdown, toMarkdown(report));
      writeFileSync(report.files.svg, toSvg(report));
    }
    return report;
  } finally {
    for (const g of generators) if (g.exitCode === null) g.kill('SIGKILL');
    await Promise.all(apis.map((a) => a.stop()));
    await platform?.close();
    await database.stop();
  }
}

async function seed(platform: Platform, o: HttpBenchOptions): Promise<SeededUser[]> {
  const bar = o.progress ? new cliProgress.SingleBar({ format: 'funding wallets [{bar}] {value}/{total} | ETA {eta_formatted}', hideCursor: true, stream: process.stderr }, cliProgress.Presets.shades_classic) : undefined;
  bar?.start(o.users, 0);
  try {
    const seeded = await seedUsers(platform, { users: o.users, currency: CURRENCY, balanceMinor: OPENING_BALANCE_MINOR, onProgress: (d) => bar?.update(d) });
    bar?.stop();
    o.log(`${seeded.users.toLocaleString('en-US')} users with funded wallets (${seeded.merchants} merchants) in ${(seeded.durationMs / 1000).toFixed(1)} s`);
    return seeded.all;
  } finally {
    bar?.stop();
  }
}

/** ledger rows this run's wallets originated, by kind: P2P transfers, holds (authorizations) and captures */
async function countMovements(platform: Platform, persons: SeededUser[], merchants: SeededUser[]): Promise<{ p2p: number; holds: number; captures: number }> {
  const sql = platform.db.clusters[0]!.sql;
  const payers = persons.map((u) => u.walletId);
  const [row] = await sql<{ p2p: string; holds: string; captures: string }[]>`
    select count(*) filter (where t.kind = 'p2p') as p2p,
           count(*) filter (where t.kind = 'payment') as holds,
           count(*) filter (where t.kind = 'capture') as captures
    from ledger_transfers t join unnest(${payers}::text[]) as w(id) on w.id = t.debit_account_id
    where t.kind in ('p2p', 'payment', 'capture')`;
  void merchants;
  return { p2p: Number(row!.p2p), holds: Number(row!.holds), captures: Number(row!.captures) };
}

function accumulateAcc(into: OpAccumulator, from: OpAccumulator): void {
  addOutcomes(into.outcomes, from.outcomes);
  into.histogram.add(from.histogram);
  into.lost += from.lost;
  into.unsent += from.unsent;
}

function opsFigures(accs: Partial<Record<Op, OpAccumulator>>, seconds: number): Partial<Record<Op, OpFigures>> {
  const out: Partial<Record<Op, OpFigures>> = {};
  for (const op of OPS) if (accs[op]) out[op] = figures(accs[op]!, seconds);
  return out;
}

interface LoadResult {
  phases: Record<string, Partial<Record<Op, OpAccumulator>>>;
  all: Record<Op, Outcomes>;
  lost: Record<Op, number>;
  series: SecondFigures[];
  cpu: HttpBenchReport['cpu'];
  limits: HttpBenchReport['limits'];
  crossShardSent: number;
}

/** Runs the generator processes through the phases; samples CPU and the platform's queues every second. */
async function drive(
  o: HttpBenchOptions,
  phases: Phase[],
  targets: { host: string; port: number }[],
  persons: BenchUser[],
  merchants: BenchUser[],
  runTag: string,
  children: ChildProcess[],
  watch: { api: number[]; postmaster?: number; metricsUrl: string; apiMetricsUrls: string[] },
): Promise<LoadResult> {
  const totalSeconds = phases.reduce((a, p) => a + p.seconds, 0);
  const bar = o.progress ? new cliProgress.SingleBar({ format: 'load [{bar}] {value}/{total} s | {phase} | transfers {rate}/s, p99 {p99} ms | other errors {errors}', hideCursor: true, stream: process.stderr }, cliProgress.Presets.shades_classic) : undefined;
  const seconds = new Map<number, { phase: string; ops: Partial<Record<Op, { outcomes: Outcomes; hist: Histogram }>>; backlog: number; generatorCores: number; reported: number }>();
  const results: GeneratorResult[] = [];
  const cpuSample = () => ({ at: performance.now(), generator: cpuSecondsOf(children.map((c) => c.pid!).filter(Boolean)), api: watch.api.length ? cpuSecondsOf(watch.api) : undefined, postgres: watch.postmaster ? cpuSecondsOf([watch.postmaster], true) : undefined, machine: machineCpuSeconds(), loops: watch.api.map((pid) => threadSchedSeconds(pid)) });
  // the ledger's batch counters of every API process at the window's ends
  const batchCounters = () => Promise.all(watch.apiMetricsUrls.map(scrapeLedgerBatches));
  let batchesAtStart: Promise<(LedgerBatchCounters | undefined)[]> | undefined;
  let batchesAtEnd: Promise<(LedgerBatchCounters | undefined)[]> | undefined;
  let windowStart: ReturnType<typeof cpuSample> | undefined;
  let windowEnd: ReturnType<typeof cpuSample> | undefined;
  const perSecondCpu = new Map<number, { api?: number; postgres?: number; machine?: number }>();
  const platformSeries = new Map<number, SecondFigures['platform']>();
  let errorsSoFar = 0;

  const done = Promise.all(
    Array.from({ length: o.generators }, (_, index) => {
      const child = forkGenerator();
      children.push(child);
      const share = (total: number) => Math.floor(total / o.generators) + (index < total % o.generators ? 1 : 0);
      const plan: GeneratorPlan = {
        index,
        targets,
        connections: Math.max(1, share(o.connections)),
        pipelining: o.pipelining,
        phases: phases.map((p) => ({ ...p, rate: p.rate / o.generators })),
        mix: o.mix,
        persons,
        merchants,
        hotAccounts: Math.min(o.hotAccounts, persons.length),
        hotShare: o.hotShare,
        crossShardShare: o.crossShardShare,
        amountMax: o.amountMax,
        currency: CURRENCY,
        keyPrefix: `${runTag}g${index}-`,
        timeoutMs: o.timeoutMs,
        maxBacklog: o.maxBacklog,
      };
      return new Promise<void>((resolve, reject) => {
        child.on('message', (msg: Snapshot | GeneratorResult | PhaseEvent) => {
          if (msg.type === 'phase') {
            if (msg.generator !== 0) return;
            if (msg.event === 'start' && msg.measured && !windowStart) {
              windowStart = cpuSample();
              batchesAtStart = batchCounters();
            }
            if (msg.event === 'end' && msg.measured) {
              windowEnd = cpuSample();
              batchesAtEnd = batchCounters();
            }
          } else if (msg.type === 'second') {
            onSecond(msg);
          } else {
            results.push(msg);
            resolve();
          }
        });
        child.once('exit', (code) => (results.some((r) => r.generator === index) ? resolve() : reject(new Error(`generator ${index} exited (${code}) before its result`))));
        child.send(plan);
      });
    }),
  );

  let last = cpuSample();
  let secondNo = 0;
  // the platform's own view every second: CPU by process group, and (first process) its queues
  const sampler = setInterval(() => {
    const now = cpuSample();
    secondNo++;
    const dt = (now.at - last.at) / 1000;
    const rate = (a?: number, b?: number) => (a !== undefined && b !== undefined && dt > 0 ? (a - b) / dt : undefined);
    perSecondCpu.set(secondNo, { api: rate(now.api, last.api), postgres: rate(now.postgres, last.postgres), machine: now.machine && last.machine ? rate(now.machine.busy, last.machine.busy) : undefined });
    last = now;
    const mine = secondNo;
    scrapeQueues(watch.metricsUrl).then((q) => platformSeries.set(mine, q), () => undefined);
  }, 1000);

  function onSecond(s: Snapshot): void {
    const entry = seconds.get(s.second) ?? { phase: s.phase, ops: {}, backlog: 0, generatorCores: 0, reported: 0 };
    seconds.set(s.second, entry);
    entry.backlog += s.backlog;
    entry.generatorCores += s.cpuCores;
    entry.reported++;
    for (const op of OPS) {
      const x = s.ops[op];
      if (!x) continue;
      const slot = (entry.ops[op] ??= { outcomes: {}, hist: new Histogram() });
      addOutcomes(slot.outcomes, x.outcomes);
      slot.hist.add(new Histogram(x.histogram));
      for (const [k, v] of Object.entries(x.outcomes)) if (classify(k) === 'error') errorsSoFar += v;
    }
    if (entry.reported === o.generators && bar) {
      const t = entry.ops.transfer;
      const ok = t ? Object.entries(t.outcomes).reduce((a, [k, v]) => a + (k.startsWith('2') ? v : 0), 0) : 0;
      bar.update(Math.min(totalSeconds, s.second), { phase: s.phase, rate: ok.toLocaleString('en-US'), p99: t ? summarize(t.hist).p99Ms.toFixed(1) : '-', errors: errorsSoFar });
    }
  }

  bar?.start(totalSeconds, 0, { phase: 'connecting', rate: '-', p99: '-', errors: 0 });
  try {
    await done;
  } finally {
    clearInterval(sampler);
    bar?.stop();
  }
  windowEnd ??= cpuSample();
  batchesAtEnd ??= batchCounters();

  const phaseAcc: LoadResult['phases'] = {};
  const all = Object.fromEntries(OPS.map((op) => [op, {}])) as Record<Op, Outcomes>;
  const lost = Object.fromEntries(OPS.map((op) => [op, 0])) as Record<Op, number>;
  let crossWeighted = 0;
  let transfersSent = 0;
  for (const r of results) {
    for (const [name, ops] of Object.entries(r.phases)) {
      for (const op of OPS) {
        const t = ops[op];
        if (!t) continue;
        accumulate(((phaseAcc[name] ??= {})[op] ??= emptyAccumulator()), t);
      }
    }
    for (const op of OPS) {
      addOutcomes(all[op], r.allOutcomes[op]);
      lost[op] += r.lostAll[op];
    }
    crossWeighted += r.crossShardSent * r.transfersSent;
    transfersSent += r.transfersSent;
  }

  const series: SecondFigures[] = [...seconds.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([second, e]) => {
      const ops: SecondFigures['ops'] = {};
      for (const op of OPS) {
        const x = e.ops[op];
        if (!x) continue;
        let ok = 0;
        let shed = 0;
        let errors = 0;
        let answers = 0;
        for (const [k, v] of Object.entries(x.outcomes)) {
          const c = classify(k);
          if (!k.startsWith('lost')) answers += v;
          if (c === 'ok') ok += v;
          else if (c === 'shed') shed += v;
          else if (c === 'error') errors += v;
        }
        const l = summarize(x.hist);
        ops[op] = { okPerSecond: ok, answers, shed, errors, p50Ms: l.p50Ms, p95Ms: l.p95Ms, p99Ms: l.p99Ms, maxMs: l.maxMs };
      }
      const cpu = perSecondCpu.get(second) ?? {};
      return { second, phase: e.phase, ops, backlog: e.backlog, cpuCores: { generator: round2(e.generatorCores) ?? 0, api: round2(cpu.api), postgres: round2(cpu.postgres), machine: round2(cpu.machine) }, platform: platformSeries.get(second) };
    });

  const ws = windowStart ?? windowEnd;
  const windowSeconds = (windowEnd.at - ws.at) / 1000;
  const cores = (a?: number, b?: number) => (a !== undefined && b !== undefined && windowSeconds > 0 ? round2((a - b) / windowSeconds) : undefined);
  const generatorCores = round2(results.reduce((a, r) => a + r.cpuSeconds, 0) / Math.max(1e-9, Math.max(...results.map((r) => r.wallSeconds)))) ?? 0;
  const machineCores = ws.machine && windowEnd.machine ? cores(windowEnd.machine.busy, ws.machine.busy) : undefined;
  const we = windowEnd;
  const eventLoops = watch.api.flatMap((pid, i) => {
    const a = ws.loops[i];
    const b = we.loops[i];
    return a && b && windowSeconds > 0 ? [{ pid, onCore: round2((b.onCore - a.onCore) / windowSeconds)!, waitingForCore: round2((b.waitingForCore - a.waitingForCore) / windowSeconds)! }] : [];
  });
  const ledgerBatches = batchesBetween((await batchesAtStart) ?? [], await batchesAtEnd);
  const cpuCount = describeMachine().cores;
  return {
    phases: phaseAcc,
    all,
    lost,
    series,
    cpu: (() => {
      const apiCores = cores(windowEnd.api, ws.api);
      const postgresCores = cores(windowEnd.postgres, ws.postgres);
      // what the rest of the machine used meanwhile (this process, other users of a shared machine)
      const otherCores = machineCores !== undefined && apiCores !== undefined && postgresCores !== undefined ? round2(Math.max(0, machineCores - generatorCores - apiCores - postgresCores)) : undefined;
      return { windowSeconds: round2(windowSeconds) ?? 0, generatorCores, apiCores, postgresCores, otherCores, machineCores, generatorShareOfMachine: machineCores ? round2(generatorCores / machineCores) : undefined };
    })(),
    limits: { eventLoops, ledgerBatches, verdict: verdictOf({ eventLoops, machineCores, cores: cpuCount, openLoop: phases.some((p) => p.measured && p.rate > 0), connections: o.connections }) },
    crossShardSent: transfersSent ? crossWeighted / transfersSent : 0,
  };
}

const round2 = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? undefined : Math.round(x * 100) / 100);

/** the queues that show deferred work: the ledger's, the relay's backlog (outbox not yet published), the job queues */
async function scrapeQueues(url: string): Promise<SecondFigures['platform']> {
  const res = await fetch(url, { signal: AbortSignal.timeout(900) });
  const text = await res.text();
  const sum = (name: string) => {
    let total: number | undefined;
    for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, 'gm'))) total = (total ?? 0) + Number(m[1]);
    return total;
  };
  return { ledgerQueue: sum('ledger_queue_depth'), relayBacklog: sum('relay_backlog_events'), jobsQueued: sum('work_queue_depth') };
}
