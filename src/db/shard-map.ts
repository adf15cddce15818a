/**
 * Routing overrides: where a shard lives when a move (src/db/shard-move.ts) has taken it off the
 * cluster the topology file names. Every cluster holds the whole map (table shard_map); a process
 * reads it from all clusters and, per shard, the highest version wins, so one cluster that does
 * not answer hides nothing another one knows. src/db/index.ts applies it in `db.forShard`.
 *
 * The fence: while a shard moves, and for good once it has left, its old cluster refuses every
 * write of its rows with SQLSTATE 23514 and the constraint name `shard_fence_<shard>`. A process
 * whose map is stale therefore cannot write there: it learns, refreshes its map and goes again.
 */
import type { Sql } from './index.js';
import { within } from '../shared/deadline.js';

export interface ShardOverride {
  cluster: string;
  version: bigint;
  movedAt: Date;
}

const FENCE_RE = /^shard_fence_(\d{1,3})$/;

/** the shard a write was refused for by a move's fence; undefined for any other error */
export function fencedShardOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; constraint_name?: unknown };
  if (e?.code !== '23514' || typeof e.constraint_name !== 'string') return undefined;
  const m = FENCE_RE.exec(e.constraint_name);
  return m ? Number(m[1]) : undefined;
}

/** undefined_table: a cluster not migrated to 011 yet has no overrides */
const UNDEFINED_TABLE = '42P01';

/**
 * The overrides as the clusters that answer know them, highest version per shard. Throws only when
 * no cluster answers (the caller keeps what it had).
 */
export async function readShardMap(clusters: readonly { name: string; sql: Sql }[], timeoutMs: number): Promise<Map<number, ShardOverride>> {
  const results = await Promise.allSettled(
    clusters.map((c) =>
      deadline(
        c.sql<{ shard: number; cluster: string; version: bigint; moved_at: Date }[]>`select shard, cluster, version, moved_at from shard_map`.catch((err: { code?: string }) => {
          if (err?.code === UNDEFINED_TABLE) return [];
          throw err;
        }),
        timeoutMs,
      ),
    ),
  );
  if (results.every((r) => r.status === 'rejected')) throw (results[0] as PromiseRejectedResult).reason;
  const map = new Map<number, ShardOverride>();
  for (const r of results) {
    if (r.status !== 'fulfilled') continue;
    for (const row of r.value) {
      const known = map.get(row.shard);
      if (!known || row.version > known.version) map.set(row.shard, { cluster: row.cluster, version: row.version, movedAt: row.moved_at });
    }
  }
  return map;
}

function deadline<T>(p: Promise<T>, ms: number): Promise<T> {
  return within(p, ms, () => new Error(`no answer within ${ms} ms`));
}

export interface ShardRouter<C> {
  forShard(shard: number): C;
  /** reads the map from every cluster now; true when a shard's cluster changed */
  refresh(): Promise<boolean>;
  overrides(): ReadonlyMap<number, ShardOverride>;
  stop(): Promise<void>;
}

/**
 * The topology's owners with the overrides on top. Refreshed every `pollMs` (0: only on demand,
 * `refresh()`, which the ledger engine and the HTTP error handler call when they meet a fence).
 * Concurrent refreshes share one read. A version lower than the one applied is ignored (a cluster
 * that answers late or has missed a flip never takes a shard back).
 */
export function createShardRouter<C extends { name: string; sql: Sql }>(clusters: readonly C[], owners: readonly C[], opts: { pollMs: number; timeoutMs?: number }): ShardRouter<C> {
  const route = owners.slice();
  const applied = new Map<number, ShardOverride>();
  const byName = new Map(clusters.map((c) => [c.name, c]));
  let reading: Promise<boolean> | undefined;
  const refresh = (): Promise<boolean> =>
    (reading ??= (async () => {
      const map = await readShardMap(clusters, opts.timeoutMs ?? Math.max(1000, opts.pollMs));
      let changed = false;
      for (const [shard, o] of map) {
        const known = applied.get(shard);
        if (known && known.version >= o.version) continue;
        // a cluster this process's topology does not know cannot be routed to: keep the route
        const target = byName.get(o.cluster);
        if (!target || shard < 0 || shard >= route.length) continue;
        applied.set(shard, o);
        if (route[shard] !== target) changed = true;
        route[shard] = target;
      }
      return changed;
    })().finally(() => (reading = undefined)));
  const timer = opts.pollMs > 0 ? setInterval(() => void refresh().catch(() => undefined), opts.pollMs) : undefined;
  timer?.unref();
  return {
    forShard(shard) {
      const c = route[shard];
      if (!c) throw new RangeError(`no cluster for shard ${shard}`);
      return c;
    },
    refresh,
    overrides: () => applied,
    async stop() {
      clearInterval(timer);
      await reading?.catch(() => undefined);
    },
  };
}
