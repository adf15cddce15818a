/**
 * (user, currency) -> wallet id, cached in process. A wallet is never deleted nor moved to
 * another id, so a cached id can never be wrong; the cache is bounded and only saves a query
 * on the hot path (balances are always read under the batch's row lock). The misses of one tick
 * are looked up together, one statement per cluster (src/db/batch-loader.ts).
 */
import type { Db } from '../db/index.js';
import { createBatchLoader } from '../db/batch-loader.js';
import { shardOf } from '../shared/ids.js';
import { LRUCache } from 'lru-cache';

export interface WalletDirectory {
  /** the wallet id, or undefined when the user has no wallet in that currency */
  find(userId: string, currency: string): Promise<string | undefined>;
  /** does the user exist? (to tell an unknown recipient from a missing currency) */
  userExists(userId: string): Promise<boolean>;
}

interface WalletKey {
  userId: string;
  currency: string;
}

const idOf = (k: WalletKey) => `${k.userId}/${k.currency}`;

export function createWalletDirectory(db: Db, maxEntries = 100_000): WalletDirectory {
  // LRUCache, not a Map evicted with keys().next(): a full Map's deleted slots pile up at its
  // front until V8 rehashes, and every eviction walked them (~50 µs an insert at 100,000 entries)
  const cache = new LRUCache<string, string>({ max: maxEntries });
  const lookup = createBatchLoader<WalletKey, string>({
    sqlOf: (k) => db.forShard(shardOf(k.userId)).sql,
    idOf,
    async load(sql, keys) {
      const rows = await sql<{ user_id: string; currency: string; id: string }[]>`
        select k.user_id, k.currency, a.id
        from unnest(${keys.map((k) => k.userId)}::text[], ${keys.map((k) => k.currency)}::text[]) as k(user_id, currency)
        cross join lateral (
          select id from accounts a where a.user_id = k.user_id and a.currency = k.currency and a.kind = 'user' limit 1
        ) a`; // one probe of accounts_one_wallet_per_currency per key, never a scan (see findIdempotencyRecords)
      return new Map(rows.map((r) => [idOf({ userId: r.user_id, currency: r.currency }), r.id]));
    },
  });
  return {
    async find(userId, currency) {
      const key = { userId, currency };
      const hit = cache.get(idOf(key));
      if (hit) return hit;
      const id = await lookup(key);
      if (id === undefined) return undefined;
      cache.set(idOf(key), id);
      return id;
    },
    async userExists(userId) {
      const [row] = await db.forShard(shardOf(userId)).sql`select 1 from users where id = ${userId}`;
      return row !== undefined;
    },
  };
}
