/**
 * Failover: health-checks every cluster's primary and, when this process manages the nodes
 * (the embedded cluster set: FAILOVER_MODE=promote), promotes the most advanced replica after
 * FAILOVER_FAILURES consecutive failed checks. In production (FAILOVER_MODE=follow) an operator
 * (Patroni, CloudNativePG) promotes; we only detect, log and count, and the pools follow the new
 * primary through their multi-host URLs (`target_session_attrs=primary`).
 *
 * It runs beside the maintenance role's rounds, not inside them: those take an advisory lock on
 * the primary, which a dead primary cannot grant. One active manager per deployment is enough
 * for the embedded profile (it is the process that owns the nodes).
 *
 * Split brain: before promoting, the old primary is fenced (its process group is killed), so a
 * primary that was merely hung or unreachable cannot take writes beside the promoted one.
 */
import postgres from 'postgres';
import { ConfigError, type Config } from '../config/index.js';
import type { Logger } from '../observability/logger.js';
import type { FailoverMetrics } from '../observability/metrics.js';
import { setSyncStandbyNames, sqlLiteral, syncStandbyNames, type Durability } from './durability.js';
import type { Topology } from './topology.js';
import { within } from '../shared/deadline.js';

export type FailoverMode = 'promote' | 'follow';

/** A PostgreSQL server this process manages. `name` is its application_name and its slot's name. */
export interface ManagedNode {
  readonly name: string;
  readonly port: number;
  url(database?: string): string;
  /** primary_conninfo for a standby named `standbyName` that follows this node */
  primaryConninfo(standbyName: string): string;
}

/** The nodes of one cluster, as the process that runs them sees them (see cluster-set.ts). */
export interface ManagedCluster {
  readonly name: string;
  primary(): ManagedNode;
  /** the standbys that run: the promotion candidates */
  standbys(): ManagedNode[];
  /** stops a node for good: a fenced primary never comes back as a primary */
  fence(node: ManagedNode): Promise<void>;
  /** recorded before and after pg_promote, so a restart starts the right primary */
  recordPromotion(candidate: ManagedNode, phase: 'begin' | 'done' | 'abort'): Promise<void>;
}

export interface FailoverTarget {
  readonly name: string;
  /** checked in follow mode: the topology's primary URL (multi-host, target_session_attrs=primary) */
  readonly url: string;
  /** set when this process manages the nodes (and may promote them) */
  readonly managed?: ManagedCluster;
}

export interface FailoverOptions {
  mode: FailoverMode;
  durability: Durability;
  checkIntervalMs: number;
  /** one check's deadline: connect and answer */
  checkTimeoutMs: number;
  /** consecutive failed checks before a promotion */
  failures: number;
  log: Logger;
  metrics?: FailoverMetrics;
}

export interface ClusterHealth {
  readonly name: string;
  /** undefined before the first check */
  readonly up: boolean | undefined;
  readonly consecutiveFailures: number;
  readonly failovers: number;
  /** sync-replica asked for, but the cluster runs without a synchronous replica */
  readonly syncReplicaMissing: boolean;
  /** `host:port` of the primary the last good check reached */
  readonly primaryAt?: string;
  readonly lastError?: string;
}

export interface FailoverManager {
  /** checks every cluster every checkIntervalMs until stop() */
  start(): void;
  /** one check of every cluster (and a promotion where one is due) */
  checkOnce(): Promise<void>;
  status(): ClusterHealth[];
  stop(): Promise<void>;
}

/** A promotion waits this long for pg_promote (the server's own wait is 60 s). */
const PROMOTE_DEADLINE_MS = 65_000;

/**
 * Runs fn on a fresh one-connection client with a deadline. A fresh client per check because
 * postgres.js, while no host of a multi-host URL qualifies, neither fails nor times out a query
 * (it reconnects in a loop): the deadline is ours, and end() stops the loop.
 */
async function withClient<T>(url: string, timeoutMs: number, fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(url, {
    max: 1,
    connect_timeout: timeoutMs / 1000,
    idle_timeout: 0,
    fetch_types: false,
    prepare: false,
    onnotice: () => undefined,
    connection: { application_name: 'wallet-failover' },
  });
  try {
    return await within(fn(sql), timeoutMs, () => new Error(`no answer within ${timeoutMs} ms`));
  } finally {
    sql.end({ timeout: 0 }).catch(() => undefined);
  }
}

interface State {
  up: boolean | undefined;
  failures: number;
  failovers: number;
  syncReplicaMissing: boolean;
  primaryAt?: string;
  lastError?: string;
}

interface Candidate {
  node: ManagedNode;
  lsn: bigint;
}

export function createFailoverManager(targets: readonly FailoverTarget[], opts: FailoverOptions): FailoverManager {
  const { log, metrics } = opts;
  const states = new Map<string, State>(targets.map((t) => [t.name, { up: undefined, failures: 0, failovers: 0, syncReplicaMissing: false }]));
  let stopped = false;
  const loops: Promise<void>[] = [];
  const sleepers = new Set<() => void>();

  /** A primary answers when it accepts a session and is not in recovery. */
  async function checkPrimary(url: string): Promise<{ at: string; syncNames: string }> {
    return withClient(url, opts.checkTimeoutMs, async (sql) => {
      const [row] = await sql<{ recovery: boolean; at: string; syncNames: string }[]>`
        select pg_is_in_recovery() as recovery,
               coalesce(host(inet_server_addr()), 'local') || ':' || coalesce(inet_server_port(), 0) as at,
               current_setting('synchronous_standby_names') as "syncNames"`;
      if (row!.recovery) throw new Error('the server is a standby');
      return { at: row!.at, syncNames: row!.syncNames };
    });
  }

  const checking = new Set<string>();

  /** one check (and promotion) of a cluster at a time, whoever asks */
  async function checkCluster(t: FailoverTarget): Promise<void> {
    if (checking.has(t.name)) return;
    checking.add(t.name);
    try {
      await checkAndAct(t);
    } finally {
      checking.delete(t.name);
    }
  }

  async function checkAndAct(t: FailoverTarget): Promise<void> {
    const s = states.get(t.name)!;
    const promoting = opts.mode === 'promote' && t.managed !== undefined;
    try {
      const { at, syncNames } = await checkPrimary(promoting ? t.managed!.primary().url() : t.url);
      const missing = opts.durability === 'sync-replica' && syncNames.trim() === '';
      if (missing && !s.syncReplicaMissing) log.error({ cluster: t.name }, 'DB_DURABILITY=sync-replica, but the primary has no synchronous standby configured');
      s.syncReplicaMissing = missing;
      metrics?.syncReplicaMissing(t.name, missing);
      if (s.up === false) log.warn({ cluster: t.name, at }, 'the primary answers again');
      if (!promoting && s.primaryAt !== undefined && s.primaryAt !== at) {
        // an operator's promotion, seen through the multi-host URL
        s.failovers++;
        metrics?.failover(t.name);
        log.warn({ cluster: t.name, from: s.primaryAt, to: at }, 'the primary moved');
      }
      s.up = true;
      s.failures = 0;
      s.primaryAt = at;
      s.lastError = undefined;
    } catch (err) {
      s.up = false;
      s.failures++;
      s.lastError = (err as Error).message;
      log.error({ cluster: t.name, failures: s.failures, err: s.lastError }, 'primary health check failed');
    }
    metrics?.primaryUp(t.name, s.up === true);
    if (s.up === false && promoting && s.failures >= opts.failures && !stopped) {
      try {
        await promote(t.managed!, s);
      } catch (err) {
        log.error({ cluster: t.name, err }, 'failover failed; retrying at the next check');
      }
    }
  }

  async function mostAdvancedStandby(m: ManagedCluster): Promise<{ best?: Candidate; others: ManagedNode[] }> {
    const answers = await Promise.all(
      m.standbys().map(async (node): Promise<Candidate | undefined> => {
        try {
          // received-and-flushed WAL counts: promotion replays all of it before accepting writes
          const [row] = await withClient(node.url(), opts.checkTimeoutMs, (sql) => sql<{ recovery: boolean; lsn: string | null }[]>`
            select pg_is_in_recovery() as recovery,
                   (greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) - '0/0'::pg_lsn)::text as lsn`);
          return row!.recovery && row!.lsn !== null ? { node, lsn: BigInt(row!.lsn) } : undefined;
        } catch (err) {
          log.warn({ cluster: m.name, node: node.name, err: (err as Error).message }, 'replica does not answer; not a promotion candidate');
          return undefined;
        }
      }),
    );
    const candidates = answers.filter((c): c is Candidate => c !== undefined);
    const best = candidates.reduce<Candidate | undefined>((a, c) => (a === undefined || c.lsn > a.lsn ? c : a), undefined);
    return { best, others: candidates.filter((c) => c !== best).map((c) => c.node) };
  }

  async function promote(m: ManagedCluster, s: State): Promise<void> {
    const old = m.primary();
    const { best, others } = await mostAdvancedStandby(m);
    if (!best) {
      log.error({ cluster: m.name }, 'primary down and no replica can be promoted');
      return;
    }
    log.warn({ cluster: m.name, from: old.name, to: best.node.name, lsn: best.lsn.toString() }, 'primary down: promoting the most advanced replica');
    const started = performance.now();
    await m.fence(old);
    await m.recordPromotion(best.node, 'begin');
    let promoted = false;
    try {
      const rows = await withClient(best.node.url(), PROMOTE_DEADLINE_MS, (sql) => sql<{ promoted: boolean }[]>`select pg_promote(true, 60) as promoted`);
      promoted = rows[0]?.promoted === true;
    } finally {
      await m.recordPromotion(best.node, promoted ? 'done' : 'abort');
    }
    if (!promoted) throw new Error(`pg_promote on ${best.node.name} did not finish within 60 s`);
    s.failovers++;
    metrics?.failover(m.name);

    // The new primary: the durability setting for the standbys left, a slot for each, no upstream.
    const syncNames = syncStandbyNames(opts.durability, others.map((o) => o.name));
    await withClient(best.node.url(), opts.checkTimeoutMs * 5, async (sql) => {
      await setSyncStandbyNames(sql, syncNames);
      for (const o of others) await sql`select pg_create_physical_replication_slot(${o.name}, true) where not exists (select 1 from pg_replication_slots where slot_name = ${o.name})`;
      await sql.unsafe('alter system reset primary_conninfo');
      await sql.unsafe('alter system reset primary_slot_name');
      await sql`select pg_reload_conf()`;
    });
    s.syncReplicaMissing = opts.durability === 'sync-replica' && syncNames === '';
    metrics?.syncReplicaMissing(m.name, s.syncReplicaMissing);
    if (s.syncReplicaMissing) log.error({ cluster: m.name }, 'DB_DURABILITY=sync-replica cannot hold: no replica is left, commits are acknowledged on the new primary alone');

    // The other standbys follow the new primary (a reload restarts their WAL receivers).
    await Promise.all(
      others.map((o) =>
        withClient(o.url(), opts.checkTimeoutMs * 5, async (sql) => {
          await sql.unsafe(`alter system set primary_conninfo = ${sqlLiteral(best.node.primaryConninfo(o.name))}`);
          await sql.unsafe(`alter system set primary_slot_name = ${sqlLiteral(o.name)}`);
          await sql`select pg_reload_conf()`;
        }).catch((err: unknown) => log.error({ cluster: m.name, node: o.name, err }, 'could not re-point a replica to the new primary; it needs a rebuild')),
      ),
    );
    s.up = true;
    s.failures = 0;
    s.lastError = undefined;
    metrics?.primaryUp(m.name, true);
    log.warn({ cluster: m.name, primary: best.node.name, followers: others.map((o) => o.name), ms: Math.round(performance.now() - started) }, 'failover done');
  }

  function sleep(ms: number): Promise<void> {
    return new Promise((ok) => {
      const wake = () => {
        clearTimeout(timer);
        sleepers.delete(wake);
        ok();
      };
      const timer = setTimeout(wake, ms);
      timer.unref();
      sleepers.add(wake);
    });
  }

  return {
    start() {
      for (const t of targets) {
        loops.push(
          (async () => {
            while (!stopped) {
              await checkCluster(t);
              if (!stopped) await sleep(opts.checkIntervalMs);
            }
          })(),
        );
      }
    },
    async checkOnce() {
      await Promise.all(targets.map(checkCluster));
    },
    status() {
      return targets.map((t) => {
        const s = states.get(t.name)!;
        return { name: t.name, up: s.up, consecutiveFailures: s.failures, failovers: s.failovers, syncReplicaMissing: s.syncReplicaMissing, primaryAt: s.primaryAt, lastError: s.lastError };
      });
    },
    async stop() {
      stopped = true;
      for (const wake of [...sleepers]) wake();
      await Promise.all(loops);
    },
  };
}

/**
 * FAILOVER_MODE: unset means promote where this process runs the nodes (the embedded cluster
 * set) and follow elsewhere. Promoting nodes another system runs would fight its operator.
 */
export function resolveFailoverMode(config: Pick<Config, 'failoverMode'>, managesNodes: boolean): FailoverMode | 'off' {
  const mode = config.failoverMode ?? (managesNodes ? 'promote' : 'follow');
  if (mode === 'promote' && !managesNodes) throw new ConfigError('FAILOVER_MODE=promote: this process does not run the database nodes (only an embedded cluster set is promoted by us; an operator such as Patroni or CloudNativePG promotes the others, use follow)');
  return mode;
}

/** One target per cluster of the topology; `managed` (the cluster set's clusters) by name. */
export function failoverTargets(topology: Topology, managed: readonly ManagedCluster[] = []): FailoverTarget[] {
  return topology.clusters.map((c) => ({ name: c.name, url: c.primary, managed: managed.find((m) => m.name === c.name) }));
}

/** The manager of a running server's config, or undefined when FAILOVER_MODE=off. */
export function failoverManagerFor(config: Config, topology: Topology, deps: { managed?: readonly ManagedCluster[]; log: Logger; metrics?: FailoverMetrics }): FailoverManager | undefined {
  const mode = resolveFailoverMode(config, deps.managed !== undefined);
  if (mode === 'off') return undefined;
  return createFailoverManager(failoverTargets(topology, deps.managed), {
    mode,
    durability: config.dbDurability,
    checkIntervalMs: config.failoverCheckIntervalMs,
    checkTimeoutMs: config.failoverCheckTimeoutMs,
    failures: config.failoverFailures,
    log: deps.log,
    metrics: deps.metrics,
  });
}
