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

/**
 * Claims for many ids in one call, in time buckets: KEYS[1] is the set of the current bucket
 * (ids claimed in it), KEYS[2] the previous bucket's; ARGV[1] the bucket's lifetime in ms,
 * ARGV[2..] the ids. An id is new when neither set holds it. One set per bucket (with a TTL)
 * instead of a key per id: far less work for Redis per claim (bench:notify), and an id is
 * remembered between one and two bucket lengths.
 */
const CLAIM_MANY = `local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('SISMEMBER', KEYS[2], id) == 1 then out[i - 1] = 0
  else out[i - 1] = redis.call('SADD', KEYS[1], id) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return out`;
/** claims gathered in one tick go to Redis together, at most this many per call */
const CLAIM_BATCH_MAX = 500;

export function createRedisOnceKeys(opts: { url: string; cluster: boolean; prefix: string }): OnceKeys {
  // commands wait while (re)connecting, up to a few retries: a claim that fails throws, and the
  // event or job is redelivered; auto-pipelining batches the claims of concurrent deliveries
  const base = { maxRetriesPerRequest: 3, connectTimeout: 2000, enableAutoPipelining: true, lazyConnect: true };
  const client = opts.cluster ? new Cluster([opts.url], { redisOptions: base, enableAutoPipelining: true, lazyConnect: true }) : new Redis(opts.url, base);
  // a failed claim throws and its event or job is redelivered; without a listener ioredis writes
  // "[ioredis] Unhandled error event" to stderr at every reconnect attempt
  client.on('error', () => undefined);
  client.defineCommand('claimMany', { lua: CLAIM_MANY });
  const claimMany = (client as unknown as { claimMany(n: number, ...args: (string | number)[]): Promise<number[]> }).claimMany.bind(client);
  const bucketKey = (ttl: number, bucket: number) => `${opts.prefix}{bucket}:${ttl}:${bucket}`;

  // One script call per tick for a single node (per-key SETs cost a command object, a reply
  // and Redis's per-command overhead each: at 50,000 pushes/s they were the bottleneck,
  // bench:notify). A Redis Cluster needs every key of a script in one slot: one SET per key there.
  const waiting = new Map<number, { key: string; resolve(v: boolean): void; reject(e: unknown): void }[]>();
  let scheduled = false;
  const ttlsSeen = new Set<number>();
  const flush = () => {
    scheduled = false;
    const all = [...waiting];
    waiting.clear();
    for (const [ttl, list] of all) {
      for (let i = 0; i < list.length; i += CLAIM_BATCH_MAX) {
        const part = list.slice(i, i + CLAIM_BATCH_MAX);
        const bucket = Math.floor(Date.now() / ttl);
        // the set lives two bucket lengths: through its own bucket and the next (as "previous")
        claimMany(2, bucketKey(ttl, bucket), bucketKey(ttl, bucket - 1), 2 * ttl, ...part.map((c) => c.key)).then(
          (res) => part.forEach((c, j) => c.resolve(res[j] === 1)),
          (err) => part.forEach((c) => c.reject(err)),
        );
      }
    }
  };
  return {
    kind: 'redis',
    claim(key, ttlMs) {
      const ttl = Math.max(1, Math.round(ttlMs));
      ttlsSeen.add(ttl);
      if (opts.cluster) return client.set(opts.prefix + key, '1', 'PX', ttl, 'NX').then((r) => r === 'OK');
      return new Promise<boolean>((resolve, reject) => {
        const list = waiting.get(ttl);
        if (list) list.push({ key, resolve, reject });
        else waiting.set(ttl, [{ key, resolve, reject }]);
        if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      });
    },
    async release(key) {
      if (opts.cluster) {
        await client.del(opts.prefix + key);
        return;
      }
      // the claim may sit in any bucket of any TTL used; releases are rare (a failed send)
      const buckets = new Set<string>();
      const now = Date.now();
      for (const ttl of ttlsSeen) for (const b of [0, 1]) buckets.add(bucketKey(ttl, Math.floor(now / ttl) - b));
      await Promise.all([...buckets].map((k) => client.srem(k, key)));
    },
    async close() {
      client.disconnect();
    },
  };
}
