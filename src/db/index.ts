/**
 * The routing seam: every database access names a shard and gets the cluster that owns it.
 * `db.forShard(shard)` is the only way to a connection; nothing imports a pool directly.
 */
import postgres from 'postgres';
import type { Topology } from './topology.js';
import { SHARD_COUNT } from '../shared/ids.js';

export type Sql = postgres.Sql<{ bigint: bigint }>;
/** a pool or a transaction: what a function that only runs queries takes */
export type Queryable = Sql | postgres.TransactionSql<{ bigint: bigint }>;

export interface Cluster {
  readonly name: string;
  readonly region: string;
  /** The primary: every money decision reads and writes here. */
  readonly sql: Sql;
}

export interface Db {
  forShard(shard: number): Cluster;
  readonly clusters: readonly Cluster[];
  /** Checks that every cluster answers; returns the names of those that do not. */
  unreachable(timeoutMs?: number): Promise<string[]>;
  close(): Promise<void>;
}

export interface DbOptions {
  poolMax: number;
  statementTimeoutMs: number;
  onNotice?: (n: postgres.Notice) => void;
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

export function createDb(topology: Topology, opts: DbOptions): Db {
  const clusters: Cluster[] = topology.clusters.map((c) => ({
    name: c.name,
    region: c.region,
    sql: connect(c.primary, { ...opts, poolMax: c.poolMax ?? opts.poolMax }),
  }));
  const byShard = new Array<Cluster>(SHARD_COUNT);
  topology.clusters.forEach((c, i) => {
    for (let s = c.shards[0]; s <= c.shards[1]; s++) byShard[s] = clusters[i]!;
  });
  return {
    clusters,
    forShard(shard) {
      const c = byShard[shard];
      if (!c) throw new RangeError(`no cluster for shard ${shard}`);
      return c;
    },
    async unreachable(timeoutMs = 2000) {
      const results = await Promise.all(
        clusters.map(async (c) => {
          let timer: NodeJS.Timeout | undefined;
          try {
            await Promise.race([c.sql`select 1`, new Promise((_, fail) => (timer = setTimeout(() => fail(new Error('timeout')), timeoutMs)))]);
            return undefined;
          } catch {
            return c.name;
          } finally {
            clearTimeout(timer);
          }
        }),
      );
      return results.filter((n): n is string => n !== undefined);
    },
    async close() {
      await Promise.all(clusters.map((c) => c.sql.end({ timeout: 5 })));
    },
  };
}
