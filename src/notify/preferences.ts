/**
 * Notification preferences (email on/off, push on/off, muted event types) and the recipient
 * directory the fan-out reads them through: a user's address, name and preferences in one
 * cached value, loaded for cache misses with one query per cluster for all the users asked for
 * at about the same time (the concurrent events of a consumer batch together).
 */
import type { Platform } from '../platform.js';
import type { Cluster } from '../db/index.js';
import { shardOf } from '../shared/ids.js';
import { NOTIFIABLE_EVENT_TYPES, type NotifiableEventType } from './templates.js';

export interface NotificationPreferences {
  email: boolean;
  push: boolean;
  mutedEventTypes: NotifiableEventType[];
}

export const DEFAULT_PREFERENCES: Readonly<NotificationPreferences> = Object.freeze({ email: true, push: true, mutedEventTypes: [] });

/** What the fan-out needs of a user. */
export interface Recipient {
  id: string;
  name: string;
  email: string;
  preferences: NotificationPreferences;
}

/**
 * The recipient's cache key. Under the user's prefix, so it is counted with user profiles and
 * shares their TTLs; PATCH preferences invalidates it. A name change (PATCH /v1/me) does not
 * (yet): a renamed user is greeted by the old name until the entry expires.
 */
export const recipientCacheKey = (userId: string) => `user:${userId}:notify`;

/** users asked for in one query at most */
export const RECIPIENT_BATCH_MAX = 500;

const canonicalOrder = (types: readonly string[]): NotifiableEventType[] => NOTIFIABLE_EVENT_TYPES.filter((t) => types.includes(t));

type PrefsRow = { email: boolean; push: boolean; muted_event_types: string[] };
const prefsFromRow = (r: PrefsRow): NotificationPreferences => ({ email: r.email, push: r.push, mutedEventTypes: canonicalOrder(r.muted_event_types) });

export function createPreferenceService(p: Pick<Platform, 'db' | 'cache'>) {
  return {
    /** the defaults when the user never changed anything (uses the primary key) */
    async get(userId: string, shard: number): Promise<NotificationPreferences> {
      const [row] = await p.db.forShard(shard).sql<PrefsRow[]>`select email, push, muted_event_types from notification_preferences where user_id = ${userId}`;
      return row ? prefsFromRow(row) : { ...DEFAULT_PREFERENCES, mutedEventTypes: [] };
    },

    /** changes the fields given, keeps the others; the result as stored */
    async update(userId: string, shard: number, patch: Partial<NotificationPreferences>): Promise<NotificationPreferences> {
      const muted = patch.mutedEventTypes ? canonicalOrder(patch.mutedEventTypes) : null;
      const sql = p.db.forShard(shard).sql;
      const [row] = await sql<PrefsRow[]>`
        insert into notification_preferences (user_id, shard, email, push, muted_event_types)
        values (${userId}, ${shard}, ${patch.email ?? DEFAULT_PREFERENCES.email}, ${patch.push ?? DEFAULT_PREFERENCES.push}, ${muted ?? []}::text[])
        on conflict (user_id) do update set
          email = coalesce(${patch.email ?? null}::boolean, notification_preferences.email),
          push = coalesce(${patch.push ?? null}::boolean, notification_preferences.push),
          muted_event_types = coalesce(${muted}::text[], notification_preferences.muted_event_types),
          updated_at = now()
        returning email, push, muted_event_types`;
      await p.cache.invalidate([recipientCacheKey(userId)]);
      return prefsFromRow(row!);
    },
  };
}

export type PreferenceService = ReturnType<typeof createPreferenceService>;

export interface RecipientDirectory {
  /** the recipients found (a user id with no user is left out) */
  get(userIds: readonly string[]): Promise<Map<string, Recipient>>;
}

interface Waiter {
  resolve(r: Recipient | null): void;
  reject(err: unknown): void;
}

export function createRecipientDirectory(p: Pick<Platform, 'db' | 'cache'>, batchMax = RECIPIENT_BATCH_MAX): RecipientDirectory {
  /** misses waiting for the next flush, by cluster; a flush runs one query per cluster */
  let pending = new Map<Cluster, Map<string, Waiter[]>>();
  let scheduled = false;

  const query = async (cluster: Cluster, waiting: Map<string, Waiter[]>) => {
    try {
      const ids = [...waiting.keys()];
      // users: primary key; notification_preferences: primary key
      const rows = await cluster.sql<(PrefsRow & { id: string; name: string; address: string; has_prefs: boolean })[]>`
        select u.id, u.name, u.email as address, np.user_id is not null as has_prefs, np.email, np.push, np.muted_event_types
        from users u left join notification_preferences np on np.user_id = u.id
        where u.id = any(${ids}::text[])`;
      const found = new Map(rows.map((r) => [r.id, { id: r.id, name: r.name, email: r.address, preferences: r.has_prefs ? prefsFromRow(r) : { ...DEFAULT_PREFERENCES, mutedEventTypes: [] } }]));
      for (const [id, waiters] of waiting) for (const w of waiters) w.resolve(found.get(id) ?? null);
    } catch (err) {
      for (const waiters of waiting.values()) for (const w of waiters) w.reject(err);
    }
  };

  const flush = () => {
    scheduled = false;
    const batch = pending;
    pending = new Map();
    for (const [cluster, waiting] of batch) void query(cluster, waiting);
  };

  const load = (userId: string): Promise<Recipient | null> =>
    new Promise((resolve, reject) => {
      const cluster = p.db.forShard(shardOf(userId));
      let waiting = pending.get(cluster);
      if (!waiting) pending.set(cluster, (waiting = new Map()));
      const list = waiting.get(userId);
      if (list) list.push({ resolve, reject });
      else waiting.set(userId, [{ resolve, reject }]);
      if (waiting.size >= batchMax) {
        pending.delete(cluster);
        void query(cluster, waiting);
      } else if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    });

  return {
    async get(userIds) {
      const unique = [...new Set(userIds)];
      const found = await Promise.all(unique.map((id) => p.cache.get<Recipient | null>(recipientCacheKey(id), () => load(id))));
      const out = new Map<string, Recipient>();
      unique.forEach((id, i) => {
        if (found[i]) out.set(id, found[i]!);
      });
      return out;
    },
  };
}
