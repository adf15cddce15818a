/**
 * Read routing on a real primary with a real streaming replica: balance reads go to the replica
 * unless it is behind the caller's own write, lagging beyond the bound, or down; money never
 * reads it. The L1 cache is off (CACHE_L1_MAX_BYTES=0, no Redis) so every read reaches the
 * database and the routing decides where.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import postgres from 'postgres';
import type { FastifyInstance } from 'fastify';
import { startTestClusters, type TestClusters } from '../test-support/clusters.js';
import { PERMISSIVE_FRAUD_RULES, balance, fund, moneyPost, signUp, until } from '../test-support/platform.js';
import { loadConfig } from '../config/index.js';
import { createPlatform, type Platform } from '../platform.js';
import { buildApp } from '../app.js';
import { createLogger } from '../observability/logger.js';

let clusters: TestClusters;
let platform: Platform;
let app: FastifyInstance;
let replicaAdmin: postgres.Sql;

const env = { NODE_ENV: 'test', LOG_LEVEL: 'silent', LEDGER_BATCH_WINDOW_MS: '1', DB_POOL_MAX: '5', PASSWORD_HASH_LOG2_COST: '10', FRAUD_RULES_FILE: PERMISSIVE_FRAUD_RULES, CACHE_L1_MAX_BYTES: '0', REPLICA_POLL_MS: '50', REPLICA_MAX_LAG_MS: '1000' };

async function start(extra: Record<string, string> = {}): Promise<{ platform: Platform; app: FastifyInstance }> {
  const config = loadConfig({ ...env, ...extra });
  const p = createPlatform(config, { topology: clusters.topology, log: createLogger('silent') });
  await p.ready();
  await p.db.pollReplicas();
  return { platform: p, app: await buildApp(p) };
}

/** balance reads by target, from the platform's own metrics */
async function reads(p: Platform, kind = 'balance'): Promise<{ replica: number; primary: Record<string, number> }> {
  const metric = await p.metrics.registry.getSingleMetric('db_reads_total')!.get();
  const out = { replica: 0, primary: {} as Record<string, number> };
  for (const v of metric.values) {
    if (v.labels.kind !== kind) continue;
    if (v.labels.target === 'replica') out.replica += v.value;
    else out.primary[String(v.labels.reason)] = (out.primary[String(v.labels.reason)] ?? 0) + v.value;
  }
  return out;
}

async function setApplyDelay(delay: string): Promise<void> {
  await replicaAdmin.unsafe(`alter system set recovery_min_apply_delay = '${delay}'`);
  await replicaAdmin`select pg_reload_conf()`;
}

beforeAll(async () => {
  clusters = await startTestClusters({ clusters: 1, replicas: 1 });
  ({ platform, app } = await start());
  replicaAdmin = postgres(clusters.topology.clusters[0]!.replicas![0]!.replace(/\/wallet(\?|$)/, '/postgres$1'), { max: 1, onnotice: () => undefined });
}, 60_000);

afterAll(async () => {
  await replicaAdmin?.end({ timeout: 1 });
  await app?.close();
  await platform?.close();
  await clusters?.close();
});

describe('read routing', () => {
  it('serves balance reads of a user with no recent write from the replica', async () => {
    const user = await signUp(app);
    await fund(app, user, 1_000);
    // another process (no memory of this user's write) without the header: the replica, once caught up
    const other = await start();
    try {
      await until(async () => (await balance(other.app, user)).available === 1_000, 5_000, 'the replica to replay the top-up');
      const before = await reads(other.platform);
      for (let i = 0; i < 20; i++) expect((await balance(other.app, user)).available).toBe(1_000);
      const after = await reads(other.platform);
      // the plan's share for balance reads is 90%; a poll that times out on a loaded machine
      // marks the replica down until the next one, and those reads rightly go to the primary
      expect(after.replica - before.replica, JSON.stringify([before, after])).toBeGreaterThanOrEqual(18);
      expect(Object.keys(after.primary).filter((r) => r !== 'replica_down' && (after.primary[r] ?? 0) > (before.primary[r] ?? 0))).toEqual([]);
    } finally {
      await other.app.close();
      await other.platform.close();
    }
  });

  it('never shows a client an older balance than its own write, with the replica held back', async () => {
    const user = await signUp(app);
    await fund(app, user, 5_000);
    await setApplyDelay('3s');
    const other = await start();
    try {
      const sent = await moneyPost(app, user, '/v1/transfers', { to: (await signUp(app)).id, amount: 1_200, currency: 'USD' });
      expect(sent.statusCode).toBe(201);
      const token = sent.headers['wallet-consistency'] as string;
      expect(token).toMatch(/@[a-z0-9-]+=[0-9A-F]+\/[0-9A-F]+/);
      // the process that wrote remembers; another process is told by the token
      expect((await balance(app, user)).available).toBe(3_800);
      const res = await other.app.inject({ method: 'GET', url: '/v1/wallets', headers: { ...user.auth, 'wallet-consistency': token } });
      expect(res.json().wallets[0].available).toBe(3_800);
      const routed = await reads(other.platform);
      expect(routed.primary.behind_caller ?? 0).toBeGreaterThanOrEqual(1);
    } finally {
      await setApplyDelay('0');
      await other.app.close();
      await other.platform.close();
    }
  });

  it("serves history from the replica, and the caller's own transfer with the replica held back", async () => {
    const user = await signUp(app);
    await fund(app, user, 2_000);
    await until(async () => platform.db.clusters[0]!.replicas[0]!.lagSeconds === 0 && platform.db.clusters[0]!.replicas[0]!.up, 5_000, 'the replica to catch up');
    const other = await start();
    try {
      const before = await reads(other.platform, 'history');
      const page = await other.app.inject({ method: 'GET', url: '/v1/transactions', headers: user.auth });
      expect(page.json().transactions).toHaveLength(1);
      expect((await reads(other.platform, 'history')).replica - before.replica).toBe(1);
      await setApplyDelay('3s');
      const sent = await moneyPost(app, user, '/v1/transfers', { to: (await signUp(app)).id, amount: 250, currency: 'USD' });
      const token = sent.headers['wallet-consistency'] as string;
      const mine = await other.app.inject({ method: 'GET', url: '/v1/transactions?type=transfer', headers: { ...user.auth, 'wallet-consistency': token } });
      expect(mine.json().transactions.map((t: { id: string }) => t.id)).toEqual([sent.json().id]);
    } finally {
      await setApplyDelay('0');
      await other.app.close();
      await other.platform.close();
    }
  });

  it('reads from the primary while the replica lags beyond the bound, and from the replica again once it catches up', async () => {
    const user = await signUp(app);
    await fund(app, user, 700);
    await setApplyDelay('2500ms');
    try {
      await fund(app, user, 300);
      await until(() => platform.db.clusters[0]!.replicas[0]!.lagSeconds > 1, 5_000, 'the replica lag to pass the bound');
      const before = await reads(platform);
      await balance(app, user);
      const during = await reads(platform);
      expect((during.primary.replica_lagging ?? 0) - (before.primary.replica_lagging ?? 0)).toBe(1);
    } finally {
      await setApplyDelay('0');
    }
    await until(() => platform.db.clusters[0]!.replicas[0]!.lagSeconds === 0, 10_000, 'the replica to catch up');
    const lag = await platform.metrics.registry.getSingleMetric('db_replica_lag_seconds')!.get();
    expect(lag.values[0]!.value).toBe(0);
  });

  it('falls back to the primary without an error while the replica is down', async () => {
    const user = await signUp(app);
    await fund(app, user, 900);
    const replica = clusters.nodes.find((n) => n.role === 'standby')!;
    await replica.stop();
    await until(() => !platform.db.clusters[0]!.replicas[0]!.up, 5_000, 'the monitor to see the replica down');
    const before = await reads(platform);
    expect((await balance(app, user)).available).toBe(900);
    const sent = await moneyPost(app, user, '/v1/transfers', { to: (await signUp(app)).id, amount: 100, currency: 'USD' });
    expect(sent.statusCode).toBe(201);
    const after = await reads(platform);
    expect((after.primary.replica_down ?? 0) - (before.primary.replica_down ?? 0)).toBeGreaterThanOrEqual(1);
  });
});
