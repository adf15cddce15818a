/**
 * Reads of the user's profile and balances through the cache. The profile (user:{id}) carries
 * the wallet list; each balance (balance:{walletId}) is versioned by its account row, so the
 * Wallet-Consistency token a money response carried keeps its owner from ever reading an older
 * balance, whichever process answers.
 */
import type { Platform } from '../platform.js';
import { cacheKey, type Loaded } from '../cache/index.js';
import type { Sql } from '../db/index.js';
import type { WalletSnapshot } from '../ledger/types.js';
import { WALLET_COLUMNS, walletFromRow } from '../ledger/accounts.js';
import type { User } from '../users/service.js';

export interface Profile {
  user: User;
  wallets: { id: string; currency: string }[];
}

export const CONSISTENCY_HEADER = 'wallet-consistency';
const TOKEN_RE = /^wal_[0-9A-Z]{29}=\d{1,19}$/;
const TOKEN_MAX_ENTRIES = 32;

/** `wal_x=17,wal_y=4` → minimum versions by cache key; anything malformed is ignored. */
export function parseConsistency(header: unknown): Map<string, bigint> {
  const out = new Map<string, bigint>();
  if (typeof header !== 'string' || header.length > 64 * TOKEN_MAX_ENTRIES) return out;
  for (const part of header.split(',').slice(0, TOKEN_MAX_ENTRIES)) {
    const item = part.trim();
    if (!TOKEN_RE.test(item)) continue;
    const [id, v] = item.split('=') as [string, string];
    out.set(cacheKey.balance(id), BigInt(v));
  }
  return out;
}

export function formatConsistency(versions: Map<string, bigint>): string {
  return [...versions].map(([id, v]) => `${id}=${v}`).join(',');
}

export function createWalletReads(p: Platform) {
  const sqlOf = (shard: number) => p.db.forShard(shard).sql;

  const query = async (sql: Sql, keys: string[]): Promise<Map<string, WalletSnapshot>> => {
    const ids = keys.map((k) => k.slice('balance:'.length));
    const rows = await sql`select ${sql.unsafe(WALLET_COLUMNS)} from accounts where id = any(${ids}::text[]) and kind = 'user'`;
    return new Map(rows.map((r) => [cacheKey.balance(r.id as string), walletFromRow(r)]));
  };

  /**
   * Cache misses: from a replica when one qualifies (up, within the lag bound, past the caller's
   * last write), answered but not cached; anything it has older than a version the caller names
   * is read again from the primary.
   */
  const loadBalances = async (shard: number, keys: string[], minLsn: bigint | undefined, minVersions?: Map<string, bigint>): Promise<Loaded<WalletSnapshot>> => {
    const cluster = p.db.forShard(shard);
    const sql = minLsn === undefined ? cluster.sql : cluster.reader('balance', minLsn);
    if (sql === cluster.sql) return query(sql, keys);
    const values = await query(sql, keys);
    const stale = keys.filter((k) => !values.has(k) || values.get(k)!.version < (minVersions?.get(k) ?? -1n));
    if (stale.length) for (const [k, v] of await query(cluster.sql, stale)) values.set(k, v);
    return { values, store: false };
  };

  return {
    profile(userId: string, shard: number): Promise<Profile | undefined> {
      return p.cache.get(cacheKey.user(userId), async () => {
        const sql = sqlOf(shard);
        const [[user], wallets] = await Promise.all([
          sql`select id, email, name, kind, region, created_at from users where id = ${userId}`,
          sql<{ id: string; currency: string }[]>`select id, currency from accounts where user_id = ${userId} and kind = 'user' order by created_at, id`,
        ]);
        if (!user) return undefined;
        const profile: Profile = {
          user: { id: user.id, email: user.email, name: user.name, kind: user.kind, region: user.region, createdAt: user.created_at },
          wallets: wallets.map((w) => ({ id: w.id, currency: w.currency })),
        };
        return profile;
      });
    },

    /**
     * The user's wallets with balances, none older than minVersions. With `read` (the API) a cache
     * miss may be served by a replica; without (the cache warmer), the primary fills the cache.
     */
    async balances(userId: string, shard: number, minVersions?: Map<string, bigint>, read?: { consistency: unknown }): Promise<WalletSnapshot[]> {
      const profile = await this.profile(userId, shard);
      if (!profile) return [];
      const keys = profile.wallets.map((w) => cacheKey.balance(w.id));
      const minLsn = read ? p.consistency.minLsn(userId, p.db.forShard(shard).name, read.consistency) : undefined;
      const found = await p.cache.getVersioned(keys, (missing) => loadBalances(shard, missing, minLsn, minVersions), minVersions);
      return keys.map((k) => found.get(k)).filter((w): w is WalletSnapshot => w !== undefined);
    },

    /** profile changes (name, region, a new wallet) */
    forget(userId: string): Promise<void> {
      return p.cache.invalidate([cacheKey.user(userId)]);
    },
  };
}
export type WalletReads = ReturnType<typeof createWalletReads>;
