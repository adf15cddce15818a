/**
 * Commands that met a shard move's fence (src/db/shard-map.ts) wait here, then run again where
 * the shard lives now, so a caller of the engine only waits while a shard moves.
 *
 * A batch refused by a fence rolled back whole; the engine parks the commands that name the
 * fenced shard (their own shard, or an id of one of their accounts, payments, holds, idempotency
 * user) and runs the others again at once. A parked command is released when this process's map
 * (refreshed from the clusters) no longer puts the shard on the cluster that refused it (the move
 * flipped), or when that cluster no longer fences the shard (the move was aborted). Released, it
 * is rebuilt by its `reroute` when it has one (a transfer decides same-cluster vs clearing by
 * routing) and queued on the cluster of its shard. One waiting loop per (cluster, shard) polls,
 * not one per command. A command that waits longer than SHARD_FENCE_WAIT_MS answers 503.
 */
import type { Cluster, Db } from '../db/index.js';
import { parseId } from '../shared/ids.js';
import type { Command, CommandResult } from './types.js';

export interface Parkable {
  cmd: Command;
  resolve(r: CommandResult): void;
  reject(e: Error): void;
  /** when the command first met a fence (ms since epoch) */
  fencedSince?: number;
}

/** whether a command names the shard: those are the commands a fence of that shard refuses */
export function touchesShard(cmd: Command, shard: number): boolean {
  if (cmd.shard === shard) return true;
  const ids = [...cmd.accounts, ...(cmd.payments ?? []), ...(cmd.pendingTransfers ?? [])];
  if (cmd.idempotency) ids.push(cmd.idempotency.userId);
  return ids.some((id) => parseId(id)?.shard === shard);
}

export interface FenceParking {
  park(items: Parkable[], shard: number, cluster: Cluster): void;
  size(): number;
  /** answers every parked command (the engine is stopping) */
  stop(): void;
}

/** polls of a waiting (cluster, shard): 25 ms, doubling to at most this */
const MAX_POLL_MS = 200;

export function createFenceParking(deps: {
  db: Pick<Db, 'forShard' | 'refreshShardMap'>;
  waitMs: number;
  /** parked commands at most; more are answered unavailable at once */
  maxParked: number;
  /** run a released command again (rebuilt, on the cluster of its shard) */
  resubmit(p: Parkable): void;
  unavailable(message: string, cause?: unknown): Error;
}): FenceParking {
  interface Lot {
    shard: number;
    cluster: Cluster;
    waiting: Parkable[];
    round: number;
    timer?: NodeJS.Timeout;
  }
  const lots = new Map<string, Lot>();
  let parked = 0;

  const stillFenced = async (cluster: Cluster, shard: number): Promise<boolean> => {
    try {
      const [row] = await cluster.sql<{ fenced: boolean }[]>`select exists (select 1 from shard_fences where shard = ${shard}) as fenced`;
      return row!.fenced;
    } catch {
      return true; // cannot tell: keep waiting (bounded by waitMs)
    }
  };

  const check = async (key: string, lot: Lot): Promise<void> => {
    lot.timer = undefined;
    await deps.db.refreshShardMap().catch(() => false);
    const released = deps.db.forShard(lot.shard) !== lot.cluster || !(await stillFenced(lot.cluster, lot.shard));
    const now = Date.now();
    const keep: Parkable[] = [];
    for (const p of lot.waiting) {
      if (released) deps.resubmit(p);
      else if (now - p.fencedSince! >= deps.waitMs) p.reject(deps.unavailable(`shard ${lot.shard} is moving; retry with the same Idempotency-Key`));
      else keep.push(p);
    }
    parked -= lot.waiting.length - keep.length;
    lot.waiting = keep;
    if (keep.length) schedule(key, lot);
    else lots.delete(key);
  };

  const schedule = (key: string, lot: Lot): void => {
    if (lot.timer) return;
    const delay = Math.min(MAX_POLL_MS, 25 * 2 ** lot.round++);
    lot.timer = setTimeout(() => void check(key, lot), delay);
  };

  return {
    park(items, shard, cluster) {
      const key = `${cluster.name}/${shard}`;
      let lot = lots.get(key);
      if (!lot) lots.set(key, (lot = { shard, cluster, waiting: [], round: 0 }));
      for (const p of items) {
        if (parked >= deps.maxParked) {
          p.reject(deps.unavailable('too many commands wait for moving shards'));
          continue;
        }
        if (p.fencedSince === undefined) {
          p.fencedSince = Date.now();
          // Rebuilt for another cluster, a command may no longer fit there (an account it names
          // stayed behind): the caller gets 503 and retries with its key, never a 500.
          const reject = p.reject;
          p.reject = (e) => reject(deps.unavailable(`shard ${shard} moved while this request ran; retry with the same Idempotency-Key`, e));
        }
        lot.waiting.push(p);
        parked++;
      }
      if (lot.waiting.length) schedule(key, lot);
      else lots.delete(key);
    },
    size: () => parked,
    stop() {
      for (const lot of lots.values()) {
        clearTimeout(lot.timer);
        for (const p of lot.waiting) p.reject(deps.unavailable('the ledger is shutting down'));
      }
      lots.clear();
      parked = 0;
    },
  };
}
