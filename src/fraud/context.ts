/**
 * What PostgreSQL knows about a user that fraud scoring needs: when the account was opened,
 * the last password or payment-method change, and the BIN country of each card. Indexed lookups
 * (users primary key, payment_methods_user_all from 007_fraud.sql), cached in
 * process for a short TTL so scoring does not query the database per request. The users missed
 * in one tick are loaded by one query per cluster (`id = any(...)`), so a burst of first
 * requests costs a statement per batch, not per user.
 *
 * Staleness: a card added after the entry was cached is caught at once (a request naming a
 * card the entry does not know reloads it); a password change or a card removal is seen after
 * at most ttlMs unless the code that makes it calls invalidate(userId) in the same process. An
 * entry used after refreshAfterMs is reloaded in the background, so active users never wait.
 */
import { LRUCache } from 'lru-cache';
import type { Db } from '../db/index.js';
import { createBatchLoader } from '../db/batch-loader.js';
import { shardOf } from '../shared/ids.js';

export interface UserContext {
  createdAtMs: number;
  /** the latest password change, card added or card removed; null: none since sign-up */
  credentialChangedAtMs: number | null;
  /** every card the user has had → its BIN country (null when the BIN was not in the table) */
  cardCountries: ReadonlyMap<string, string | null>;
}

export interface ContextLoader {
  /** the user's context; throws for an unknown user (scoring runs for authenticated users only) */
  load(userId: string, paymentMethodId?: string): Promise<UserContext>;
  /** drop the cached entry (after a password change or a card change in this process) */
  invalidate(userId: string): void;
}

export interface ContextLoaderOptions {
  db: Pick<Db, 'forShard'>;
  /** how long an entry serves without a reload (default 10 s) */
  ttlMs?: number;
  /** users cached (default 100,000, each a few hundred bytes) */
  maxUsers?: number;
  /** a request naming a card the cached entry does not know reloads it, at most this often per user (default 1 s) */
  unknownCardReloadMs?: number;
  /** an entry this old is reloaded in the background on its next use, still answering meanwhile (default ttlMs / 2) */
  refreshAfterMs?: number;
  /** users per query when concurrent misses are loaded together (default 500) */
  batchMax?: number;
}

interface Row {
  id: string;
  created_at: Date;
  credentials_changed_at: Date | null;
  card_ids: string[] | null;
  card_countries: (string | null)[] | null;
  cards_changed_at: Date | null;
}

export function createContextLoader(opts: ContextLoaderOptions): ContextLoader {
  const ttlMs = opts.ttlMs ?? 10_000;
  const unknownCardReloadMs = opts.unknownCardReloadMs ?? 1000;
  const refreshAfterMs = opts.refreshAfterMs ?? ttlMs / 2;
  const cache = new LRUCache<string, UserContext>({ max: opts.maxUsers ?? 100_000, ttl: ttlMs });
  /** loads in flight: concurrent misses for one user share one query */
  const loading = new Map<string, Promise<UserContext>>();

  // the users missed in one tick, one query per cluster
  const loadUsers = createBatchLoader<string, UserContext>({
    sqlOf: (userId) => opts.db.forShard(shardOf(userId)).sql,
    idOf: (userId) => userId,
    max: opts.batchMax,
    async load(sql, userIds) {
      // sign-up sets credentials_changed_at = created_at (same transaction): only a later value is a change
      const rows = await sql<Row[]>`
        select u.id, u.created_at,
               case when u.credentials_changed_at > u.created_at then u.credentials_changed_at end as credentials_changed_at,
               pm.card_ids, pm.card_countries, pm.cards_changed_at
        from users u
        left join lateral (
          select array_agg(id order by id) as card_ids,
                 array_agg(bin_country::text order by id) as card_countries,
                 max(greatest(created_at, deleted_at)) as cards_changed_at
          from payment_methods where user_id = u.id
        ) pm on true
        where u.id = any(${userIds}::text[])`;
      const found = new Map<string, UserContext>();
      for (const row of rows) {
        const changes = [row.credentials_changed_at, row.cards_changed_at].filter((d): d is Date => d !== null).map((d) => d.getTime());
        const cardCountries = new Map<string, string | null>();
        row.card_ids?.forEach((id, i) => cardCountries.set(id, row.card_countries?.[i] ?? null));
        found.set(row.id, { createdAtMs: row.created_at.getTime(), credentialChangedAtMs: changes.length ? Math.max(...changes) : null, cardCountries });
      }
      return found;
    },
  });

  async function query(userId: string): Promise<UserContext> {
    const ctx = await loadUsers(userId);
    if (!ctx) throw new Error(`fraud context: no user ${userId}`);
    return ctx;
  }

  function fetch(userId: string): Promise<UserContext> {
    let p = loading.get(userId);
    if (!p) {
      p = query(userId)
        .then((ctx) => {
          cache.set(userId, ctx);
          return ctx;
        })
        .finally(() => loading.delete(userId));
      loading.set(userId, p);
    }
    return p;
  }

  return {
    async load(userId, paymentMethodId) {
      const cached = cache.get(userId);
      if (!cached) return fetch(userId);
      // A card the entry does not know was added since: a credential change the score must see
      // now. Rate-limited per user, so unknown card ids cannot make every request a query.
      const age = ttlMs - cache.getRemainingTTL(userId);
      if (paymentMethodId !== undefined && !cached.cardCountries.has(paymentMethodId) && age >= unknownCardReloadMs) return fetch(userId);
      // Refresh ahead: an entry past half its TTL is reloaded in the background while it still
      // answers, so an active user's scoring never waits on PostgreSQL. Without it, every user
      // first seen in one burst expired in the same second, and the split path's checks of
      // that second all waited for their reloads (seconds with half the checks over budget).
      if (age >= refreshAfterMs && !loading.has(userId)) fetch(userId).catch(() => undefined); // a failed refresh leaves the entry to its TTL
      return cached;
    },
    invalidate(userId) {
      cache.delete(userId);
    },
  };
}
