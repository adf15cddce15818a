/**
 * The multi-layer cache: L1 in process → L2 Redis → the database (L3 is HTTP caching, in the
 * routes). Read-through for everything; balances are versioned by their account row's version
 * and written through after every ledger commit with a compare-and-set, so an older balance
 * never replaces a newer one in either layer, and a reader that names the version it wrote
 * (the Wallet-Consistency token) never gets an older one. Other keys are invalidated after
 * commit: a tombstone in Redis and a message every process applies to its L1; a lost message
 * is bounded by the L1 TTL. Nothing here can fail a request: Redis errors and timeouts fall
 * through to the database (see redis.ts for the breaker).
 */
import { randomUUID } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Config } from '../config/index.js';
import { createL1, type L1 } from './l1.js';
import { createL2, type BreakerState, type L2 } from './redis.js';
import { decode, encode } from './codec.js';
import { kindOf, type KeyKind } from './keys.js';

export { cacheKey } from './keys.js';

const CHANNEL = 'wallet:cache:invalidate';
/** how long an invalidated key refuses fills: reads that loaded before the write finish well within it */
const TOMBSTONE_MS = 1_000;
/** invalidations remembered per process for racing L1 fills (see epochOf) */
export const EPOCHS_MAX = 100_000;

/** Cached values are shared by every reader of a process: frozen, so none can change them for the others. */
function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value) && !(value instanceof Date)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

export interface CacheMetrics {
  lookup(layer: 'l1' | 'l2', kind: KeyKind, hit: boolean): void;
  eviction(layer: 'l1', reason: string): void;
  l1Bytes(bytes: number): void;
  redisLatency(op: string, seconds: number): void;
  breaker(state: BreakerState): void;
}

export interface Versioned {
  version: bigint;
}

/**
 * What a versioned load returns: the values, stored in the cache; or values read from a replica
 * (`store: false`), answered but never stored: a replica may be behind a write whose
 * write-through already happened, and the cache must not keep an older value past its lag.
 */
export type Loaded<T> = Map<string, T> | { values: Map<string, T>; store: false };

export interface Cache {
  /** read-through for an unversioned key */
  get<T>(key: string, load: () => Promise<T>): Promise<T>;
  /**
   * Read-through for versioned keys (one L2 round trip for all of them): never returns a value
   * older than minVersions names; `load` gets the keys still missing and returns their values.
   */
  getVersioned<T extends Versioned>(keys: string[], load: (missing: string[]) => Promise<Loaded<T>>, minVersions?: Map<string, bigint>): Promise<Map<string, T>>;
  /**
   * After a commit: the new values in, unless a newer one is there; other processes' L1 told.
   * Without Redis only the keys this process's L1 already holds are replaced; the others stay
   * out (and no load in flight may put an older value back).
   */
  putVersioned<T extends Versioned>(entries: { key: string; value: T }[]): Promise<void>;
  /** after a commit: these keys are stale everywhere */
  invalidate(keys: string[]): Promise<void>;
  /**
   * After a commit that moved versioned keys from version `before` to `after`: where this
   * process holds the `before` value, `update` computes the `after` value (no reload) and it is
   * stored like putVersioned; elsewhere a tombstone at `after` keeps older values out, and
   * every other process drops its copy.
   */
  revise<T extends Versioned>(items: { key: string; before: bigint; after: bigint; update: (current: T) => T }[]): Promise<void>;
  /** 'absent' without REDIS_URL, 'degraded' while Redis cannot be used */
  redisStatus(): 'absent' | 'ok' | 'degraded';
  readonly l1: L1;
  start(): Promise<void>;
  close(): Promise<void>;
}

type CacheConfig = Pick<
  Config,
  'redisUrl' | 'redisCluster' | 'cacheL1MaxBytes' | 'cacheL1TtlSeconds' | 'cacheBalanceTtlSeconds' | 'cacheL2TtlSeconds' | 'cacheRedisTimeoutMs' | 'cacheBreakerFailures' | 'cacheBreakerCooldownMs' | 'cacheDirtyKeysMax'
>;

export function createCache(config: CacheConfig, metrics?: CacheMetrics): Cache {
  const origin = randomUUID();
  const l1 = createL1(config.cacheL1MaxBytes, (reason) => metrics?.eviction('l1', reason));
  const l2TtlMs = (kind: KeyKind) => (kind === 'balance' ? config.cacheBalanceTtlSeconds : config.cacheL2TtlSeconds) * 1000;
  const l2: L2 | undefined = config.redisUrl
    ? createL2({
        url: config.redisUrl,
        cluster: config.redisCluster,
        timeoutMs: config.cacheRedisTimeoutMs,
        breakerFailures: config.cacheBreakerFailures,
        breakerCooldownMs: config.cacheBreakerCooldownMs,
        dirtyKeysMax: config.cacheDirtyKeysMax,
        maxTtlMs: Math.max(config.cacheBalanceTtlSeconds, config.cacheL2TtlSeconds) * 1000,
        onLatency: metrics?.redisLatency,
        onBreaker: (state) => {
          // other processes' invalidations may be lost from now on: start over with short-lived entries
          if (state === 'open') l1.clear();
          metrics?.breaker(state);
        },
      })
    : undefined;
  // Without Redis no invalidation reaches the other processes: money keys then live at most a
  // second in L1, which keeps API.md's promise that a recipient sees a credit within a second.
  // The same while Redis is unusable: invalidations cannot reach other processes then either.
  const l1TtlFor = (kind: KeyKind) =>
    (kind === 'balance' || kind === 'transactions_recent') && (!l2 || l2.state !== 'closed') ? Math.min(1000, config.cacheL1TtlSeconds * 1000) : config.cacheL1TtlSeconds * 1000;

  // An L1 fill must not put back a value that an invalidation removed while it was loading:
  // every invalidation bumps the key's epoch, and a fill happens only if the epoch it saw at
  // the start of the load is still current. The table is bounded; a key whose epoch it evicted
  // reads as the highest epoch evicted so far, so a load that started before an invalidation
  // whose record is gone still sees a different epoch (and one that started before any eviction
  // merely skips its fill).
  let evictedEpoch = 0;
  const epochs = new LRUCache<string, number>({
    max: EPOCHS_MAX,
    dispose: (epoch, _key, reason) => {
      if (reason === 'evict' && epoch > evictedEpoch) evictedEpoch = epoch;
    },
  });
  let epochCounter = 0;
  const epochOf = (key: string) => epochs.get(key) ?? evictedEpoch;
  const dropLocal = (key: string) => {
    l1.delete(key);
    epochs.set(key, ++epochCounter);
  };
  const reportBytes = () => metrics?.l1Bytes(l1.bytes);
  /** loads in progress by key: concurrent misses of one key share one database read */
  const loading = new Map<string, Promise<unknown>>();

  return {
    l1,
    redisStatus: () => (!l2 ? 'absent' : l2.state === 'closed' ? 'ok' : 'degraded'),

    async get<T>(key: string, load: () => Promise<T>): Promise<T> {
      const kind = kindOf(key);
      const local = l1.get(key);
      metrics?.lookup('l1', kind, local !== undefined);
      if (local) return (local.value ?? decode<T>(local.text)) as T;
      const inFlight = loading.get(key);
      if (inFlight) return inFlight as Promise<T>;
      const epoch = epochOf(key);
      const fetch = (async () => {
        if (l2) {
          const text = await l2.get(key);
          metrics?.lookup('l2', kind, text !== undefined);
          if (text !== undefined) {
            const value = deepFreeze(decode<T>(text));
            if (epochOf(key) === epoch) l1.set(key, { text, value }, l1TtlFor(kind));
            return value;
          }
        }
        const value = deepFreeze(await load());
        // nothing found is not cached: it has no text (encode(undefined) is undefined), and the
        // thing may exist a moment later
        if (value !== undefined && epochOf(key) === epoch && (config.cacheL1MaxBytes > 0 || l2)) {
          const text = encode(value);
          l1.set(key, { text, value }, l1TtlFor(kind));
          reportBytes();
          void l2?.fill(key, text, l2TtlMs(kind));
        }
        return value;
      })();
      loading.set(key, fetch);
      try {
        return await fetch;
      } finally {
        loading.delete(key);
      }
    },

    async getVersioned<T extends Versioned>(keys: string[], load: (missing: string[]) => Promise<Loaded<T>>, minVersions = new Map<string, bigint>()): Promise<Map<string, T>> {
      const out = new Map<string, T>();
      const fresh = (key: string, version: bigint) => version >= (minVersions.get(key) ?? -1n);
      let missing: string[] = [];
      for (const key of keys) {
        const local = l1.get(key);
        const ok = local?.version !== undefined && fresh(key, local.version);
        metrics?.lookup('l1', kindOf(key), ok);
        if (ok) out.set(key, (local!.value ?? decode<T>(local!.text)) as T);
        else missing.push(key);
      }
      if (missing.length && l2?.readable()) {
        const found = await Promise.all(missing.map((k) => l2.getVersioned(k)));
        const still: string[] = [];
        missing.forEach((key, i) => {
          const hit = found[i];
          const ok = hit !== undefined && fresh(key, hit.version);
          metrics?.lookup('l2', kindOf(key), ok);
          if (ok) {
            const value = deepFreeze(decode<T>(hit!.text));
            out.set(key, value);
            l1.setIfNewer(key, { text: hit!.text, value, version: hit!.version }, l1TtlFor(kindOf(key)));
          } else still.push(key);
        });
        missing = still;
      }
      if (missing.length) {
        const seen = new Map(missing.map((k) => [k, epochOf(k)]));
        const result = await load(missing);
        const store = result instanceof Map;
        const loaded = result instanceof Map ? result : result.values;
        for (const [key, value] of loaded) {
          out.set(key, deepFreeze(value));
          if (!store || (config.cacheL1MaxBytes === 0 && !l2)) continue;
          const text = encode(value);
          // a newer version announced while we loaded: leave L1 to the next read
          if (epochOf(key) === seen.get(key)) l1.setIfNewer(key, { text, value, version: value.version }, l1TtlFor(kindOf(key)));
          void l2?.setIfNewer(key, value.version, text, l2TtlMs(kindOf(key)));
        }
        reportBytes();
      }
      return out;
    },

    async putVersioned(entries) {
      if (!entries.length) return;
      if (!l2) {
        // Only this process's L1 to keep right: a key it holds gets the new value; a key it does
        // not hold stays out (every commit writing through every wallet it moved cost the HTTP
        // benchmark an encode per wallet, for balances that live a second in L1 and are rarely
        // read in it), and its epoch moves on so that a read loading it now cannot put back what
        // it read before this commit.
        for (const { key, value } of entries) {
          if (l1.get(key)) l1.setIfNewer(key, { text: encode(value), value: deepFreeze(value), version: value.version }, l1TtlFor(kindOf(key)));
          else dropLocal(key);
        }
        reportBytes();
        return;
      }
      const texts = entries.map(({ value }) => encode(value));
      const keep = (i: number) => l1.setIfNewer(entries[i]!.key, { text: texts[i]!, value: deepFreeze(entries[i]!.value), version: entries[i]!.value.version }, l1TtlFor(kindOf(entries[i]!.key)));
      const outcomes = await Promise.all(entries.map(({ key, value }, i) => l2.setIfNewer(key, value.version, texts[i]!, l2TtlMs(kindOf(key)))));
      // Redis holds a newer version: our L1 must not keep this one either (the next read takes
      // the newest). Redis unreachable: L1 keeps it, short-lived while the breaker is open.
      outcomes.forEach((o, i) => (o === 'older' ? dropLocal(entries[i]!.key) : keep(i)));
      await l2.publish(CHANNEL, JSON.stringify({ o: origin, k: entries.map((e) => e.key) }));
      reportBytes();
    },

    async revise<T extends Versioned>(items: { key: string; before: bigint; after: bigint; update: (current: T) => T }[]) {
      if (!items.length) return;
      const computed: { key: string; value: T }[] = [];
      const unknown: { key: string; after: bigint }[] = [];
      for (const item of items) {
        const local = l1.get(item.key);
        if (local?.version === item.before) {
          const value = item.update((local.value ?? decode<T>(local.text)) as T);
          if (value.version !== item.after) throw new Error(`cache: revised ${item.key} to version ${value.version}, expected ${item.after}`);
          computed.push({ key: item.key, value });
        } else {
          dropLocal(item.key);
          unknown.push(item);
        }
      }
      await Promise.all([
        this.putVersioned(computed),
        (async () => {
          if (!l2 || !unknown.length) return;
          await Promise.all(unknown.map((u) => l2.setIfNewer(u.key, u.after, '', l2TtlMs(kindOf(u.key)))));
          await l2.publish(CHANNEL, JSON.stringify({ o: origin, k: unknown.map((u) => u.key) }));
        })(),
      ]);
    },

    async invalidate(keys) {
      if (!keys.length) return;
      for (const k of keys) dropLocal(k);
      if (!l2) return;
      await l2.invalidate(keys, TOMBSTONE_MS);
      await l2.publish(CHANNEL, JSON.stringify({ o: origin, k: keys }));
    },

    async start() {
      await l2?.whenReady(2_000);
      await l2?.subscribe(CHANNEL, (message) => {
        try {
          const { o, k } = JSON.parse(message) as { o: string; k: string[] };
          if (o === origin || !Array.isArray(k)) return;
          // a balance written elsewhere: drop ours, the next read takes the new one from L2
          for (const key of k) if (typeof key === 'string') dropLocal(key);
        } catch {
          // not one of ours: ignore
        }
      });
    },

    async close() {
      await l2?.close();
      l1.clear();
    },
  };
}
