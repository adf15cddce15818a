/**
 * Once-only keys for effects that do not live in PostgreSQL (a push, an SMTP send): claim a key
 * before the effect, release it if the effect fails so a redelivery tries again. With Redis the
 * claim is a SET NX PX shared by every process; without it, a bounded in-process map, which
 * covers the in-process bus (its redeliveries come within seconds, to this same process) but
 * not a redelivery to another process: run with REDIS_URL when consumers are spread out.
 */
import { Cluster, Redis } from 'ioredis';
import { LRUCache } from 'lru-cache';

export interface OnceKeys {
  readonly kind: 'redis' | 'memory';
  /** true the first time the key is claimed within ttlMs (and after a release) */
  claim(key: string, ttlMs: number): Promise<boolean>;
  release(key: string): Promise<void>;
  close(): Promise<void>;
}

/** in-process keys kept at most (oldest dropped first): ~100 bytes each */
export const MEMORY_ONCE_KEYS_MAX = 100_000;

export function createMemoryOnceKeys(max = MEMORY_ONCE_KEYS_MAX): OnceKeys {
  const keys = new LRUCache<string, true>({ max, ttlAutopurge: false });
  return {
    kind: 'memory',
    async claim(key, ttlMs) {
      if (keys.has(key)) return false;
      keys.set(key, true, { ttl: ttlMs });
      return true;
    },
    async release(key) {
      keys.delete(key);
    },
    async close() {
      keys.clear();
    },
  };
}

export function createRedisOnceKeys(opts: { url: string; cluster: boolean; prefix: string }): OnceKeys {
  // commands wait while (re)connecting, up to a few retries: a claim that fails throws, and the
  // event or job is redelivered; auto-pipelining batches the claims of concurrent deliveries
  const base = { maxRetriesPerRequest: 3, connectTimeout: 2000, enableAutoPipelining: true, lazyConnect: true };
  const client = opts.cluster ? new Cluster([opts.url], { redisOptions: base, enableAutoPipelining: true, lazyConnect: true }) : new Redis(opts.url, base);
  return {
    kind: 'redis',
    async claim(key, ttlMs) {
      return (await client.set(opts.prefix + key, '1', 'PX', Math.max(1, Math.round(ttlMs)), 'NX')) === 'OK';
    },
    async release(key) {
      await client.del(opts.prefix + key);
    },
    async close() {
      client.disconnect();
    },
  };
}
