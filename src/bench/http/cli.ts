/** `wallet bench` (and `npm run bench`): the HTTP throughput benchmark, see run.ts. */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { DEFAULT_OPTIONS, runHttpBench, type HttpBenchOptions } from './run.js';
import type { HttpBenchReport } from './report.js';
import { OPS } from './types.js';

const int = (name: string, min: number, max: number) => (raw: string) => {
  const v = Number(raw);
  if (!/^\d+$/.test(raw) || v < min || v > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
  return v;
};
const percent = (name: string) => (raw: string) => int(name, 0, 100)(raw) / 100;

function parseMix(raw: string): HttpBenchOptions['mix'] {
  const mix = { transfer: 0, balance: 0, history: 0, payment: 0 };
  for (const part of raw.split(',')) {
    const [k, v] = part.split('=');
    if (!k || !(k in mix) || !v || !/^\d+$/.test(v)) throw new InvalidArgumentError(`--mix: "${part}" is not one of transfer|balance|history|payment=<weight>`);
    mix[k as keyof typeof mix] = Number(v);
  }
  if (Object.values(mix).every((w) => w === 0)) throw new InvalidArgumentError('--mix: every weight is 0');
  return mix;
}

const d = DEFAULT_OPTIONS;
/** a spike is more clients at once: enough connections that the platform, not the generator's queue, sees the overload */
const SPIKE_CONNECTIONS = 1024;
// an eighth of what one API process serves closed-loop on the 2-core VM (~2,500 requests/s): 10x overloads it
const SPIKE_RATE = 300;

export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description('HTTP throughput benchmark: starts the platform (or targets --url), seeds funded users, drives transfers, reads and merchant payments, runs pgbench alongside, checks correctness, writes bench/results/http-*')
    .addOption(new Option('--scenario <name>', 'steady: one measured phase; spike: --seconds at --rate, --spike-seconds at --spike-factor × --rate, --seconds at --rate').choices(['steady', 'spike']).default(d.scenario))
    .option('--url <url>', 'target a running platform (DATABASE_URL must name its database; tokens are signed with JWT_SECRET)')
    .option('--database <name>', 'the fresh database created for the run (dropped and created again each time)', d.database)
    .option('--users <n>', 'users with funded wallets (1 in 50 is a merchant)', int('--users', 4, 1_000_000), d.users)
    .option('--seconds <n>', 'measured seconds (spike: before and after the spike, each)', int('--seconds', 1, 3600), d.seconds)
    .option('--warmup <n>', 'seconds of load before measuring', int('--warmup', 0, 600), d.warmupSeconds)
    .option('--rate <n>', `open loop: requests per second offered (all operations); 0: closed loop, as fast as answers come (spike default: ${SPIKE_RATE})`, int('--rate', 0, 10_000_000), d.rate)
    .option('--spike-seconds <n>', 'length of the spike', int('--spike-seconds', 1, 3600), d.spikeSeconds)
    .option('--spike-factor <n>', 'the spike rate as a multiple of --rate', int('--spike-factor', 1, 1000), d.spikeFactor)
    .option('--connections <n>', `HTTP connections, spread over the API processes (default ${d.connections}; spike: ${SPIKE_CONNECTIONS}, as a spike brings more clients)`, int('--connections', 1, 10_000))
    .option('--pipelining <n>', 'requests in flight per connection', int('--pipelining', 1, 256), d.pipelining)
    .option('--generators <n>', 'load generator processes', int('--generators', 1, 16), d.generators)
    .option('--processes <n>', 'API processes to start (wallet serve --roles api)', int('--processes', 1, 64), d.processes)
    .addOption(new Option('--background <where>', 'the relay, notify, workers and maintenance roles: in the first API process, in a process of their own, or not run (default: none; spike: first)').choices(['first', 'separate', 'none']))
    .option('--mix <weights>', `request mix, e.g. transfer=80,balance=8,history=7,payment=5 (payment: authorize, then the merchant captures)`, parseMix)
    .option('--hot-accounts <n>', 'how many hot accounts', int('--hot-accounts', 0, 1_000_000), d.hotAccounts)
    .option('--hot-share <percent>', 'percent of transfers with a hot account as a party', percent('--hot-share'), d.hotShare)
    .option('--cross-shard <percent>', 'percent of transfers between two logical shards (else both parties on one)', percent('--cross-shard'), d.crossShardShare)
    .option('--amount-max <minor>', 'amounts are uniform in 1..this many minor units', int('--amount-max', 1, 100_000), d.amountMax)
    .option('--pgbench-seconds <n>', 'pgbench TPC-B duration; 0 skips it', int('--pgbench-seconds', 0, 3600), d.pgbenchSeconds)
    .option('--pgbench-clients <n>', 'pgbench clients (default: the platform\'s connections, processes × DB_POOL_MAX)', int('--pgbench-clients', 1, 1000))
    .option('--pgbench-scale <n>', 'pgbench scale factor', int('--pgbench-scale', 1, 1000), d.pgbenchScale)
    .option('--timeout-ms <n>', 'an answer later than this counts as lost', int('--timeout-ms', 100, 600_000), d.timeoutMs)
    .option('--out <dir>', 'where the report files go', d.outDir)
    .option('--no-progress', 'no progress bars')
    .action(async (opts: Record<string, unknown>) => {
      const options: HttpBenchOptions = {
        ...d,
        scenario: opts.scenario as 'steady' | 'spike',
        url: opts.url as string | undefined,
        database: opts.database as string,
        users: opts.users as number,
        seconds: opts.seconds as number,
        warmupSeconds: opts.warmup as number,
        rate: opts.rate as number,
        spikeSeconds: opts.spikeSeconds as number,
        spikeFactor: opts.spikeFactor as number,
        connections: (opts.connections as number | undefined) ?? (opts.scenario === 'spike' ? SPIKE_CONNECTIONS : d.connections),
        pipelining: opts.pipelining as number,
        generators: opts.generators as number,
        processes: opts.processes as number,
        background: (opts.background as HttpBenchOptions['background'] | undefined) ?? (opts.scenario === 'spike' ? 'first' : 'none'),
        mix: (opts.mix as HttpBenchOptions['mix'] | undefined) ?? d.mix,
        hotAccounts: opts.hotAccounts as number,
        hotShare: opts.hotShare as number,
        crossShardShare: opts.crossShard as number,
        amountMax: opts.amountMax as number,
        pgbenchSeconds: opts.pgbenchSeconds as number,
        pgbenchClients: opts.pgbenchClients as number | undefined,
        pgbenchScale: opts.pgbenchScale as number,
        timeoutMs: opts.timeoutMs as number,
        outDir: opts.out as string,
        progress: opts.progress !== false && process.stderr.isTTY === true,
        command: `wallet bench ${process.argv.slice(3).join(' ')}`.trim(),
        env: process.env,
        log: (m) => process.stderr.write(`${m}\n`),
      };
      if (options.scenario === 'spike' && options.rate === 0) options.rate = SPIKE_RATE;
      const report = await runHttpBench(options);
      process.stdout.write(summary(report));
      if (!report.correctness.ok) process.exitCode = 2;
    });
}

export function summary(r: HttpBenchReport): string {
  const n = (x: number | undefined, digits = 0) => (x === undefined || !Number.isFinite(x) ? '–' : x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }));
  const out = ['', `$ ${r.command}`, `${r.machine.cores} cores (${r.machine.cpu}), Node ${r.machine.node}, PostgreSQL ${r.postgres.version} (${r.postgres.where}; fsync ${r.postgres.fsync}, synchronous_commit ${r.postgres.synchronousCommit})`];
  for (const [name, p] of Object.entries(r.phases)) {
    out.push(`${name} (${p.seconds} s, ${p.rate > 0 ? `${n(p.rate)} req/s offered` : 'closed loop'}):`);
    for (const op of OPS) {
      const f = p.ops[op];
      if (!f) continue;
      out.push(`  ${op.padEnd(9)} ${n(f.okPerSecond).padStart(8)} 2xx/s  p50 ${n(f.latency.p50Ms, 1)}  p95 ${n(f.latency.p95Ms, 1)}  p99 ${n(f.latency.p99Ms, 1)}  max ${n(f.latency.maxMs, 1)} ms  declined ${n(f.declined)}  shed ${n(f.shed)}  errors ${n(f.errors)}${f.unsent ? `  unsent ${n(f.unsent)}` : ''}`);
    }
  }
  const c = r.cpu;
  out.push(`CPU over ${n(c.windowSeconds, 1)} s: generator ${n(c.generatorCores, 2)}, platform ${n(c.apiCores, 2)}, PostgreSQL ${n(c.postgresCores, 2)}, other ${n(c.otherCores, 2)}, machine ${n(c.machineCores, 2)} of ${r.machine.cores} cores (generator share ${c.generatorShareOfMachine === undefined ? '–' : `${n(c.generatorShareOfMachine * 100)} %`})`);
  const b = r.limits.ledgerBatches;
  out.push(`limit: ${r.limits.verdict}`);
  if (r.limits.eventLoops.length || b) out.push(`  ${[...r.limits.eventLoops.map((e) => `event loop ${e.pid}: on a core ${n(e.onCore * 100)} %, waiting for one ${n(e.waitingForCore * 100)} %`), ...(b ? [`ledger batches: ${n(b.count)}, mean ${n(b.meanSize, 1)} commands, ${n(b.meanMs, 1)} ms close → commit`] : [])].join('; ')}`);
  out.push(r.pgbench.available ? `pgbench TPC-B: ${n(r.pgbench.tps)} tps (${r.pgbench.clients} clients); transfers/s ÷ tps = ${n(r.ratioToPgbench, 2)}` : `pgbench: NO FIGURE — ${r.pgbench.reason}`);
  const k = r.correctness;
  out.push(`correctness: transfers acknowledged ${n(k.transfers.acknowledged)} / in database ${n(k.transfers.inDatabase)}${k.transfers.unknown ? ` (${n(k.transfers.unknown)} unknown)` : ''}; authorizations ${n(k.authorizations.acknowledged)} / ${n(k.authorizations.inDatabase)}; captures ${n(k.captures.acknowledged)} / ${n(k.captures.inDatabase)}; reconcile ${k.reconcile.ok ? 'OK' : `${k.reconcile.findings.length} findings`} → ${k.ok ? 'OK' : 'FAILED'}`);
  out.push('targets:');
  for (const t of r.targets) out.push(`  ${t.met ? 'met    ' : 'NOT met'}  ${t.name}: ${t.measured} (goal ${t.target})`);
  if (r.files) out.push(`report: ${r.files.markdown} (JSON ${r.files.json}, chart ${r.files.svg})`);
  out.push('');
  return out.join('\n');
}
