/**
 * The routing seam: every database access names a shard and gets the cluster that owns it.
 * `db.forShard(shard)` is the only way to a connection; nothing imports a pool directly.
 *
 * Each cluster has a primary pool (every money decision reads and writes there) and a pool per
 * read replica. `cluster.reader(kind, minLsn)` picks where a balance or history read goes: a
 * replica that is up, within the configured lag bound and has replayed at least `minLsn` (the
 * caller's own last write, see src/db/consistency.ts), otherwise the primary. A monitor polls
 * each replica's replay position (pg_last_wal_replay_lsn) and the primary's WAL position every
 * `replicaPollMs`; a replica whose poll fails or times out is down until a poll succeeds.
 */
import postgres from 'postgres';
import type { Topology } from './topology.js';
import { createShardRouter, type ShardOverride } from './shard-map.js';
import { SHARD_COUNT } from '../shared/ids.js';
import { within } from '../shared/deadline.js';

export type Sql = postgres.Sql<{ bigint: bigint }>;
/** a pool or a transaction: what a function that only runs queries takes */
export type Queryable = Sql | postgres.TransactionSql<{ bigint: bigint }>;

export type ReadKind = 'balance' | 'history';
export type ReadTarget = 'replica' | 'primary';
/** why a read went to the primary */
export type PrimaryReason = 'no_replica' | 'replica_down' | 'replica_lagging' | 'behind_caller';

export interface Replica {
  readonly name: string;
  readonly sql: Sql;
  /** last poll answered */
  up: boolean;
  /** WAL position replayed at the last poll (a lower bound of the position now) */
  replayLsn: bigint;
  /** seconds since the oldest primary position it has not replayed was observed (0 when caught up) */
  lagSeconds: number;
  /** bytes of WAL the primary had at the last poll that it had not replayed */
  lagBytes: bigint;
}

export interface Cluster {
  readonly name: string;
  readonly region: string;
  /** The primary: every money decision reads and writes here. */
  readonly sql: Sql;
  readonly replicas: readonly Replica[];
  /**
   * The pool for a balance or history read: a replica that is up, within the lag bound and has
   * replayed `minLsn` (the caller's last write on this cluster), else the primary.
   */
  reader(kind: ReadKind, minLsn?: bigint): Sql;
  /** the primary's WAL position now: after a commit has returned, it covers that commit */
  position(): Promise<bigint>;
  /**
   * The primary pool reached a server that is not the primary (SQLSTATE 25006 after a failover):
   * its connections are replaced by fresh ones, which find the primary again through the URL's
   * target_session_attrs. At most once a second; the old pool ends in the background (its
   * connections are destroyed after 5 s, failing whatever still runs on them).
   */
  recyclePrimary(): void;
}

/** a database step that did not settle within its deadline (see `unlessStuck`) */
export class DatabaseStuck extends Error {
  readonly code = 'DATABASE_STUCK';
  constructor(cluster: string, what: string, ms: number) {
    super(`${what} on cluster ${cluster} did not finish within ${ms} ms; its primary pool was replaced`);
    this.name = 'DatabaseStuck';
  }
}

/**
 * `work` on the cluster's primary, with a deadline. Work that has not settled by then is taken for
 * a stuck connection, which no server-side timeout ends: seen after failovers, a postgres.js
 * connection whose server waits in the middle of an extended-protocol message for the rest,
 * while the client waits for an answer. The primary pool is replaced (Cluster.recyclePrimary):
 * the old pool's connections are destroyed a few seconds later, so the abandoned work fails and
 * its transaction's locks are released; the caller gets DatabaseStuck at once and retries.
 * For background work only (relay, audit appender), whose callers retry; the ledger engine has
 * its own deadline with the same recovery.
 */
export function unlessStuck<T>(cluster: Pick<Cluster, 'name' | 'recyclePrimary'>, what: string, ms: number, work: Promise<T>): Promise<T> {
  const stuck = () => {
    cluster.recyclePrimary();
    return new DatabaseStuck(cluster.name, what, ms);
  };
  return within(work, ms, stuck);
}

/**
 * An error that says the connection to PostgreSQL is gone or never came (postgres.js's
 * CONNECT_TIMEOUT, CONNECTION_CLOSED / _ENDED / _DESTROYED; the socket's own errors, EPIPE
 * included: a write to a server that was killed). What was sent may or may not have committed;
 * money requests are retried under their idempotency keys, which makes either safe.
 */
export function isConnectionLoss(err: unknown): boolean {
  const e = err as { code?: unknown; errno?: unknown } | undefined;
  const code = typeof e?.code === 'string' ? e.code : typeof e?.errno === 'string' ? e.errno : undefined;
  return code !== undefined && (code.startsWith('CONNECT') || SOCKET_LOSS.has(code));
}
const SOCKET_LOSS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT']);

/** an error that says a primary pool's connection is on a read-only server */
export function onReadOnlyServer(err: unknown): boolean {
  return (err as { code?: unknown })?.code === '25006';
}

/** `16/B374D848` → bigint */
export function parseLsn(text: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (!m) throw new RangeError(`not an LSN: ${text}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

export interface Db {
  forShard(shard: number): Cluster;
  readonly clusters: readonly Cluster[];
  /** Checks that every cluster answers; returns the names of those that do not. */
  unreachable(timeoutMs?: number): Promise<string[]>;
  /** polls every replica now (the monitor does it every replicaPollMs) */
  pollReplicas(): Promise<void>;
  /**
   * Reads the routing overrides of shard moves (src/db/shard-map.ts) from every cluster now; true
   * when a shard's cluster changed. A poller does it every shardMapPollMs.
   */
  refreshShardMap(): Promise<boolean>;
  /** the overrides applied: shard → the cluster a move put it on */
  shardOverrides(): ReadonlyMap<number, ShardOverride>;
  close(): Promise<void>;
}

export interface DbOptions {
  poolMax: number;
  /** per replica pool; default poolMax */
  replicaPoolMax?: number;
  statementTimeoutMs: number;
  /** replica reads only while the replica is at most this far behind; default 1000 ms */
  replicaMaxLagMs?: number;
  /** how often replica positions are polled (a poll times out after max(this, 1 s)); default 200 ms */
  replicaPollMs?: number;
  onNotice?: (n: postgres.Notice) => void;
  metrics?: DbMetrics;
  /** how often the routing overrides of shard moves are read (0: on demand only); default 1000 ms */
  shardMapPollMs?: number;
}

export interface DbMetrics {
  read(cluster: string, kind: ReadKind, target: ReadTarget, reason?: PrimaryReason): void;
  replica(cluster: string, replica: string, up: boolean, lagSeconds: number, lagBytes: bigint): void;
}

export function connect(url: string, opts: DbOptions): Sql {
  return postgres(url, {
    max: opts.poolMax,
    types: { bigint: postgres.BigInt },
    connection: { statement_timeout: opts.statementTimeoutMs, application_name: 'wallet' },
    idle_timeout: 60,
    connect_timeout: 10,
    onnotice: opts.onNotice ?? (() => undefined),
  }) as unknown as Sql;
}

/** the host:port list of a URL, for naming a replica without its credentials */
function hostsOf(url: string): string {
  return url.replace(/^postgres(ql)?:\/\/([^@/]*@)?/, '').replace(/[/?].*$/, '');
}

class ClusterPools implements Cluster {
  private primary: Sql;
  private recycledAt = 0;
  private retired: Promise<unknown>[] = [];
  readonly replicas: Replica[];
  private next = 0;
  /** primary positions seen by the monitor, oldest first: [time ms, lsn] */
  private samples: [number, bigint][] = [];
  private readonly maxLagSeconds: number;

  constructor(
    readonly name: string,
    readonly region: string,
    private readonly primaryUrl: string,
    replicaUrls: string[],
    private readonly opts: DbOptions,
    private readonly poolMax: number,
  ) {
    this.primary = connect(primaryUrl, { ...opts, poolMax });
    this.replicas = replicaUrls.map((url) => ({
      name: hostsOf(url),
      sql: connect(url, { ...opts, poolMax: opts.replicaPoolMax ?? poolMax }),
      // until the first poll answers, nothing is known: reads stay on the primary
      up: false,
      replayLsn: 0n,
      lagSeconds: 0,
      lagBytes: 0n,
    }));
    this.maxLagSeconds = (opts.replicaMaxLagMs ?? 1000) / 1000;
  }

  get sql(): Sql {
    return this.primary;
  }

  recyclePrimary(): void {
    if (Date.now() - this.recycledAt < 1000) return;
    this.recycledAt = Date.now();
    const old = this.primary;
    this.primary = connect(this.primaryUrl, { ...this.opts, poolMax: this.poolMax });
    // kept until it has closed (end() waits for it), then forgotten: a cluster that keeps
    // missing deadlines recycles once a second for as long as it lasts
    const closing: Promise<unknown> = old.end({ timeout: 5 }).catch(() => undefined).then(() => {
      const i = this.retired.indexOf(closing);
      if (i >= 0) this.retired.splice(i, 1);
    });
    this.retired.push(closing);
  }

  reader(kind: ReadKind, minLsn = 0n): Sql {
    const n = this.replicas.length;
    let reason: PrimaryReason = n === 0 ? 'no_replica' : 'replica_down';
    for (let i = 0; i < n; i++) {
      const r = this.replicas[(this.next + i) % n]!;
      if (!r.up) continue;
      if (r.lagSeconds > this.maxLagSeconds) {
        reason = 'replica_lagging';
        continue;
      }
      if (r.replayLsn < minLsn) {
        if (reason !== 'replica_lagging') reason = 'behind_caller';
        continue;
      }
      this.next = (this.next + i + 1) % n;
      this.opts.metrics?.read(this.name, kind, 'replica');
      return r.sql;
    }
    this.opts.metrics?.read(this.name, kind, 'primary', reason);
    return this.sql;
  }

  async position(): Promise<bigint> {
    const [row] = await this.sql<{ lsn: string }[]>`select pg_current_wal_lsn()::text as lsn`;
    return parseLsn(row!.lsn);
  }

  /** one poll of the primary's position and every replica's replay position */
  async poll(timeoutMs: number): Promise<void> {
    if (this.replicas.length === 0) return;
    const now = Date.now();
    const primary = await withDeadline(this.position(), timeoutMs).catch(() => undefined);
    if (primary !== undefined) {
      this.samples.push([now, primary]);
      // keep what is needed to measure a lag up to a few times the bound
      const horizon = now - Math.max(10_000, this.maxLagSeconds * 4000);
      while (this.samples.length > 1 && this.samples[0]![0] < horizon) this.samples.shift();
    }
    await Promise.all(
      this.replicas.map(async (r) => {
        try {
          const [row] = await withDeadline(r.sql<{ lsn: string | null }[]>`select pg_last_wal_replay_lsn()::text as lsn`, timeoutMs);
          // null: not in recovery (a promoted node is the primary now; it is never behind it)
          r.replayLsn = row?.lsn ? parseLsn(row.lsn) : (primary ?? r.replayLsn);
          r.up = true;
          const unreplayed = this.samples.find(([, lsn]) => lsn > r.replayLsn);
          r.lagSeconds = unreplayed ? (Date.now() - unreplayed[0]) / 1000 : 0;
          const newest = this.samples[this.samples.length - 1]?.[1] ?? r.replayLsn;
          r.lagBytes = newest > r.replayLsn ? newest - r.replayLsn : 0n;
        } catch (err) {
          if (process.env.DEBUG_POLL) console.error('poll', r.name, err);
          r.up = false;
        }
        this.opts.metrics?.replica(this.name, r.name, r.up, r.lagSeconds, r.lagBytes);
      }),
    );
  }

  end(): Promise<void> {
    return Promise.all([this.primary.end({ timeout: 5 }), ...this.retired, ...this.replicas.map((r) => r.sql.end({ timeout: 5 }))]).then(() => undefined);
  }
}

function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  return within(p, ms, () => new Error(`no answer within ${ms} ms`));
}

export function createDb(topology: Topology, opts: DbOptions): Db {
  const clusters = topology.clusters.map((c) => new ClusterPools(c.name, c.region, c.primary, c.replicas ?? [], opts, c.poolMax ?? opts.poolMax));
  const pollMs = opts.replicaPollMs ?? 200;
  // a replica that cannot answer a trivial query within a second is down for reads; a slow
  // poll delays the next one rather than overlapping it
  const pollTimeoutMs = Math.max(pollMs, 1000);
  let polling: Promise<unknown> | undefined;
  const monitor = clusters.some((c) => c.replicas.length)
    ? setInterval(() => {
        polling ??= Promise.all(clusters.map((c) => c.poll(pollTimeoutMs))).finally(() => (polling = undefined));
      }, pollMs)
    : undefined;
  monitor?.unref();
  const byShard = new Array<Cluster>(SHARD_COUNT);
  topology.clusters.forEach((c, i) => {
    for (let s = c.shards[0]; s <= c.shards[1]; s++) byShard[s] = clusters[i]!;
  });
  // the topology's owners, overridden where a shard move has put a shard elsewhere
  const router = createShardRouter(clusters, byShard, { pollMs: opts.shardMapPollMs ?? 1000 });
  return {
    clusters,
    forShard: (shard) => router.forShard(shard),
    refreshShardMap: () => router.refresh(),
    shardOverrides: () => router.overrides(),
    async unreachable(timeoutMs = 2000) {
      const results = await Promise.all(
        clusters.map(async (c) => {
          try {
            await within(c.sql`select 1`, timeoutMs, () => new Error('timeout'));
            return undefined;
          } catch {
            return c.name;
          }
        }),
      );
      return results.filter((n): n is string => n !== undefined);
    },
    async pollReplicas() {
      await Promise.all(clusters.map((c) => c.poll(pollTimeoutMs)));
    },
    async close() {
      clearInterval(monitor);
      await router.stop();
      await polling?.catch(() => undefined);
      await Promise.all(clusters.map((c) => c.end()));
    },
  };
}
