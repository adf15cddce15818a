import { afterEach, describe, expect, it } from 'vitest';
import postgres from 'postgres';
import { createFailoverManager, resolveFailoverMode, type FailoverManager, type FailoverMode } from './failover.js';
import { syncStandbyNames, type Durability } from './durability.js';
import { ConfigError, loadConfig } from '../config/index.js';
import { within, startTestClusters, type TestClusters } from '../test-support/clusters.js';
import { createLogger } from '../observability/logger.js';
import { createMetrics, type Metrics } from '../observability/metrics.js';

const CHECK_INTERVAL_MS = 100;
const FAILURES = 3;


async function eventually(check: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function metricValue(metrics: Metrics, name: string, cluster: string): Promise<number | undefined> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  return (metric?.values as { value: number; labels: Record<string, string> }[] | undefined)?.find((v) => v.labels.cluster === cluster)?.value;
}

let clusters: TestClusters | undefined;
let manager: FailoverManager | undefined;
const clients: postgres.Sql[] = [];

function client(url: string, max = 1): postgres.Sql {
  const sql = postgres(url, { max, onnotice: () => undefined, connect_timeout: 2 });
  clients.push(sql);
  return sql;
}

function manage(set: TestClusters, mode: FailoverMode, durability: Durability, metrics: Metrics): FailoverManager {
  manager = createFailoverManager(
    set.clusters.map((c) => ({ name: c.name, url: set.topology.clusters.find((t) => t.name === c.name)!.primary, managed: c })),
    { mode, durability, checkIntervalMs: CHECK_INTERVAL_MS, checkTimeoutMs: 1000, failures: FAILURES, log: createLogger('silent'), metrics: metrics.failover },
  );
  manager.start();
  return manager;
}

afterEach(async () => {
  await manager?.stop();
  manager = undefined;
  await Promise.all(clients.splice(0).map((c) => c.end({ timeout: 0 }).catch(() => undefined)));
  await clusters?.close();
  clusters = undefined;
});

describe('failover of embedded clusters', () => {
  it('promotes the most advanced replica after a SIGKILLed primary; every acknowledged write survives and the pool writes again (sync-replica)', async () => {
    clusters = await startTestClusters({ clusters: 1, replicas: 2, durability: 'sync-replica' });
    const cluster = clusters.clusters[0]!;
    const url = clusters.topology.clusters[0]!.primary;
    const [old, r1, r2] = cluster.nodes;
    const pool = client(url, 4);
    await within(5000, 'create', () => pool`create table acked (n int primary key)`);
    // replica_2 stops receiving WAL: replica_1 alone is then the most advanced
    const lagging = client(r2!.url());
    await lagging.unsafe(`alter system set primary_conninfo = ''`);
    await lagging`select pg_reload_conf()`;
    await eventually(async () => (await lagging`select 1 from pg_stat_wal_receiver`).length === 0, 5000, 'replica_2 to stop streaming');

    const metrics = createMetrics();
    manage(clusters, 'promote', 'sync-replica', metrics);

    // a writer that keeps going through the failover: an error is an unknown outcome, so the
    // same row is tried again (idempotently) until it is acknowledged
    const acked: number[] = [];
    let killedAt = 0;
    let failedAfterKill = false;
    let firstAckAfterKill = 0;
    const writer = (async () => {
      const deadline = Date.now() + 30_000;
      let afterKill = 0;
      for (let n = 1; Date.now() < deadline && afterKill < 100; ) {
        try {
          await within(1000, 'insert', () => pool`insert into acked values (${n}) on conflict do nothing`);
          acked.push(n++);
          if (failedAfterKill) {
            afterKill++;
            firstAckAfterKill ||= Date.now();
          }
        } catch {
          if (killedAt) failedAfterKill = true;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    })();
    await eventually(() => acked.length >= 100, 10_000, '100 acknowledged writes');
    old!.kill('SIGKILL');
    killedAt = Date.now();
    await writer;

    expect(firstAckAfterKill, 'the pool wrote again after the promotion').toBeGreaterThan(0);
    // FAILURES checks CHECK_INTERVAL_MS apart, then the promotion: seconds, not the writer's 30 s
    expect(firstAckAfterKill - killedAt).toBeLessThan(10_000);
    expect(cluster.primary().name).toBe('replica_1');
    expect(r1!.role).toBe('primary');
    expect(old!.role).toBe('failed');
    await eventually(() => manager!.status()[0]!.up === true, 5000, 'the failover to finish');
    expect(manager!.status()[0]).toMatchObject({ up: true, failovers: 1, syncReplicaMissing: false });
    expect(await metricValue(metrics, 'db_failovers_total', cluster.name)).toBe(1);
    expect(await metricValue(metrics, 'db_primary_up', cluster.name)).toBe(1);

    const promoted = client(r1!.url('wallet'));
    const rows = await within(5000, 'read', () => promoted<{ n: number }[]>`select n from acked order by n`);
    const present = new Set(rows.map((r) => r.n));
    expect(acked.filter((n) => !present.has(n))).toEqual([]);

    // replica_2 follows the new primary, synchronously
    const [settings] = await promoted<{ names: string; recovery: boolean }[]>`select current_setting('synchronous_standby_names') as names, pg_is_in_recovery() as recovery`;
    expect(settings).toEqual({ names: 'ANY 1 ("replica_2")', recovery: false });
    await eventually(async () => (await promoted`select 1 from pg_stat_replication where application_name = 'replica_2' and sync_state = 'quorum'`).length === 1, 10_000, 'replica_2 streaming from the new primary');
    await within(5000, 'write', () => pool`insert into acked values (-1)`);
    const follower = client(r2!.url('wallet'));
    await eventually(async () => (await follower`select 1 from acked where n = -1`).length === 1, 5000, 'a new write on replica_2');
    console.log(`failover: ${firstAckAfterKill - killedAt} ms from SIGKILL to the next acknowledged write (checks every ${CHECK_INTERVAL_MS} ms, ${FAILURES} failures)`);
  });

  it('promotes the only replica, reports that sync-replica no longer holds until the old primary rejoins as a copy; the other cluster is untouched', async () => {
    clusters = await startTestClusters({ clusters: 2, replicas: 1, durability: 'sync-replica' });
    const [a, b] = clusters.clusters;
    const metrics = createMetrics();
    const urlA = clusters.topology.clusters[0]!.primary;
    const pool = client(urlA, 2);
    await within(5000, 'create', () => pool`create table before_kill (v text)`);
    await within(5000, 'write', () => pool`insert into before_kill values ('acknowledged')`);
    manage(clusters, 'promote', 'sync-replica', metrics);
    await eventually(() => manager!.status().every((s) => s.up === true), 5000, 'first checks');

    a!.nodes[0]!.kill('SIGKILL');
    // up again once the promotion is done (new primary configured, replicas re-pointed)
    await eventually(() => manager!.status()[0]!.failovers === 1 && manager!.status()[0]!.up === true, 10_000, 'the promotion');
    const [row] = await within(10_000, 'read after failover', () => pool<{ v: string }[]>`select v from before_kill`);
    expect(row!.v).toBe('acknowledged');
    await within(10_000, 'write after failover', () => pool`insert into before_kill values ('after')`);

    const promoted = client(a!.nodes[1]!.url());
    const [names] = await promoted<{ names: string }[]>`select current_setting('synchronous_standby_names') as names`;
    expect(names!.names).toBe('');
    expect(manager!.status()[0]).toMatchObject({ name: a!.name, failovers: 1, syncReplicaMissing: true });
    expect(await metricValue(metrics, 'db_sync_replica_missing', a!.name)).toBe(1);
    expect(manager!.status()[1]).toMatchObject({ name: b!.name, up: true, failovers: 0, syncReplicaMissing: false });
    expect(b!.primary().name).toBe('primary');
    expect(await metricValue(metrics, 'db_failovers_total', b!.name)).toBeUndefined();

    // the failed primary rejoins as a fresh copy of the new one, and counts as synchronous again
    await a!.rebuild('primary');
    expect(a!.nodes.map((n) => [n.name, n.role, n.running])).toEqual([
      ['primary', 'standby', true],
      ['replica_1', 'primary', true],
    ]);
    // another session sees the reloaded setting once its backend has processed the reload
    let names2 = '';
    await eventually(async () => (names2 = (await promoted<{ names: string }[]>`select current_setting('synchronous_standby_names') as names`)[0]!.names) === 'ANY 1 ("primary")', 5000, 'the synchronous standby list');
    expect(names2).toBe('ANY 1 ("primary")');
    await within(10_000, 'write with the rejoined replica', () => pool`insert into before_kill values ('rejoined')`);
    const rejoined = client(a!.nodes[0]!.url('wallet'));
    await eventually(async () => (await rejoined`select 1 from before_kill where v = 'rejoined'`).length === 1, 5000, 'the write on the rejoined replica');
    await eventually(() => manager!.status()[0]!.syncReplicaMissing === false, 5000, 'the flag to clear');
  });

  it('in follow mode detects a dead primary and promotes nothing', async () => {
    clusters = await startTestClusters({ clusters: 1, replicas: 1 });
    const cluster = clusters.clusters[0]!;
    const metrics = createMetrics();
    manage(clusters, 'follow', 'local', metrics);
    await eventually(() => manager!.status()[0]!.up === true, 5000, 'first check');
    cluster.nodes[0]!.kill('SIGKILL');
    // one check past the threshold: checks of a cluster run one after the other, so a promotion
    // (which promote mode starts at the threshold) would be over by then
    await eventually(() => manager!.status()[0]!.consecutiveFailures >= FAILURES + 1, 15_000, 'failed checks');
    expect(manager!.status()[0]).toMatchObject({ up: false, failovers: 0 });
    expect(await metricValue(metrics, 'db_primary_up', cluster.name)).toBe(0);
    const replica = client(cluster.nodes[1]!.url());
    const [r] = await replica<{ recovery: boolean }[]>`select pg_is_in_recovery() as recovery`;
    expect(r!.recovery).toBe(true);
    expect(cluster.nodes[1]!.role).toBe('standby');
  });
});

describe('failover and durability settings', () => {
  it('promotes only where this process runs the nodes; follows an operator elsewhere', () => {
    expect(resolveFailoverMode({ failoverMode: undefined }, true)).toBe('promote');
    expect(resolveFailoverMode({ failoverMode: undefined }, false)).toBe('follow');
    expect(resolveFailoverMode({ failoverMode: 'off' }, true)).toBe('off');
    expect(() => resolveFailoverMode({ failoverMode: 'promote' }, false)).toThrow(ConfigError);
  });

  it('asks for one synchronous replica among the named ones, and for none when local or none is left', () => {
    expect(syncStandbyNames('sync-replica', ['replica_1', 'replica_2'])).toBe('ANY 1 ("replica_1", "replica_2")');
    expect(syncStandbyNames('sync-replica', ['*'])).toBe('ANY 1 (*)');
    expect(syncStandbyNames('sync-replica', [])).toBe('');
    expect(syncStandbyNames('local', ['replica_1'])).toBe('');
  });

  it('reads the settings from the environment and refuses unknown values', () => {
    const config = loadConfig({ EMBEDDED_CLUSTERS: '4', DB_DURABILITY: 'sync-replica', DB_DURABILITY_APPLY: 'true', FAILOVER_MODE: 'follow', FAILOVER_CHECK_INTERVAL_MS: '250' });
    expect(config).toMatchObject({ embeddedClusters: 4, embeddedReplicas: 1, dbDurability: 'sync-replica', dbDurabilityApply: true, failoverMode: 'follow', failoverCheckIntervalMs: 250, failoverFailures: 3 });
    expect(() => loadConfig({ DB_DURABILITY: 'remote' })).toThrow(/DB_DURABILITY/);
    expect(() => loadConfig({ FAILOVER_MODE: 'auto' })).toThrow(/FAILOVER_MODE/);
  });
});
