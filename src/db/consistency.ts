/**
 * Read-your-writes across replicas, by WAL position. After a batch commits on a cluster with
 * replicas, the engine reads the primary's WAL position (it covers the commit) and every caller
 * of the batch gets it back in the Wallet-Consistency header as `@<cluster>=<LSN>`, next to the
 * wallet versions. A read that carries it goes to a replica only once that replica has replayed
 * the position (src/db/index.ts, Cluster.reader). The process also remembers the last position
 * of each user it wrote for (bounded LRU), so a client that does not echo the header still reads
 * its own writes when the same process answers.
 */
import { LRUCache } from 'lru-cache';
import { formatLsn, parseLsn } from './index.js';

const ITEM_RE = /^@([a-z0-9-]{1,40})=([0-9A-F]{1,8}\/[0-9A-F]{1,8})$/;
const MAX_ITEMS = 32;

/** the `@cluster=LSN` items of a Wallet-Consistency header; anything malformed is ignored */
export function positionsFrom(header: unknown): Map<string, bigint> {
  const out = new Map<string, bigint>();
  if (typeof header !== 'string' || header.length > 64 * MAX_ITEMS) return out;
  for (const part of header.split(',').slice(0, MAX_ITEMS)) {
    const m = ITEM_RE.exec(part.trim());
    if (!m) continue;
    const lsn = parseLsn(m[2]!);
    if (lsn > (out.get(m[1]!) ?? -1n)) out.set(m[1]!, lsn);
  }
  return out;
}

export function formatPosition(cluster: string, lsn: bigint): string {
  return `@${cluster}=${formatLsn(lsn)}`;
}

export interface RecentWrites {
  /** users whose money a commit on `cluster` changed, at WAL position `lsn` */
  note(userIds: Iterable<string>, cluster: string, lsn: bigint): void;
  /** the position a read of this user's data on `cluster` must not be older than */
  minLsn(userId: string, cluster: string, header?: unknown): bigint;
}

export function createRecentWrites(maxUsers: number): RecentWrites {
  const last = new LRUCache<string, { cluster: string; lsn: bigint }>({ max: Math.max(1, maxUsers) });
  return {
    note(userIds, cluster, lsn) {
      for (const id of userIds) {
        const prior = last.get(id);
        if (!prior || prior.cluster !== cluster || prior.lsn < lsn) last.set(id, { cluster, lsn });
      }
    },
    minLsn(userId, cluster, header) {
      const mine = last.get(userId);
      const local = mine && mine.cluster === cluster ? mine.lsn : 0n;
      const sent = positionsFrom(header).get(cluster) ?? 0n;
      return sent > local ? sent : local;
    },
  };
}
