/**
 * (user, currency) -> wallet id, cached in process. A wallet is never deleted nor moved to
 * another id, so a cached id can never be wrong; the cache is bounded and only saves a query
 * on the hot path (balances are always read under the batch's row lock).
 */
import type { Db } from '../db/index.js';
import { shardOf } from '../shared/ids.js';

export interface WalletDirectory {
  /** the wallet id, or undefined when the user has no wallet in that currency */
  find(userId: string, currency: string): Promise<string | undefined>;
  /** does the user exist? (to tell an unknown recipient from a missing currency) */
  userExists(userId: string): Promise<boolean>;
}

export function createWalletDirectory(db: Db, maxEntries = 100_000): WalletDirectory {
  const cache = new Map<string, string>();
  return {
    async find(userId, currency) {
      const key = `${userId}/${currency}`;
      const hit = cache.get(key);
      if (hit) return hit;
      const [row] = await db.forShard(shardOf(userId)).sql<{ id: string }[]>`select id from accounts where user_id = ${userId} and currency = ${currency} and kind = 'user'`;
      if (!row) return undefined;
      if (cache.size >= maxEntries) cache.delete(cache.keys().next().value!);
      cache.set(key, row.id);
      return row.id;
    },
    async userExists(userId) {
      const [row] = await db.forShard(shardOf(userId)).sql`select 1 from users where id = ${userId}`;
      return row !== undefined;
    },
  };
}
