/**
 * L2 on Redis (ioredis; a single node or a Cluster by config) behind a circuit breaker. Every
 * call has a time budget; failures open the breaker, and while it is open nothing waits on
 * Redis: reads fall through to PostgreSQL, writes are remembered as dirty keys. Before the
 * breaker closes again the dirty keys are deleted, so a value that missed its update while
 * Redis was unreachable is never served afterwards (and if too many keys were missed to
 * remember, L2 is not read until the longest TTL has passed).
 */
import { Redis, Cluster, type RedisOptions } from 'ioredis';
import { within as deadline } from '../shared/deadline.js';

/**
 * Fill unless the key was invalidated a moment ago: an invalidation leaves a short-lived
 * tombstone, so a reader that loaded before the write cannot put the old value back.
 */
const FILL = `
if redis.call('GET', KEYS[1]) == ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;
export const TOMBSTONE = '\u0000gone';

/**
 * Compare-and-set by version: an older value never overwrites a newer one. An empty value is a
 * tombstone: a value of the same version may replace it (the state it stands for, loaded).
 */
const CAS_SET = `
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and tonumber(cur) >= tonumber(ARGV[1]) then
  if not (tonumber(cur) == tonumber(ARGV[1]) and ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'd') == '') then return 0 end
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`;

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface L2Options {
  url: string;
  cluster: boolean;
  timeoutMs: number;
  breakerFailures: number;
  breakerCooldownMs: number;
  dirtyKeysMax: number;
  /** the longest TTL any key has: how long an unremembered missed update can live */
  maxTtlMs: number;
  onLatency?: (op: string, seconds: number) => void;
  onBreaker?: (state: BreakerState) => void;
}

export interface L2 {
  /** undefined: a miss, or Redis unavailable (the caller cannot tell, and need not) */
  get(key: string): Promise<string | undefined>;
  getVersioned(key: string): Promise<{ version: bigint; text: string } | undefined>;
  /** stores a value read from the database, unless the key was invalidated since (tombstone) */
  fill(key: string, text: string, ttlMs: number): Promise<void>;
  /** replaces values by tombstones that live tombstoneMs */
  invalidate(keys: string[], tombstoneMs: number): Promise<void>;
  /** stores unless Redis holds this version or a newer one */
  setIfNewer(key: string, version: bigint, text: string, ttlMs: number): Promise<'stored' | 'older' | 'unavailable'>;
  delete(keys: string[]): Promise<void>;
  publish(channel: string, message: string): Promise<void>;
  subscribe(channel: string, onMessage: (message: string) => void): Promise<void>;
  readonly state: BreakerState;
  /** can L2 be read now (breaker closed, no untrusted period)? */
  readable(): boolean;
  /** resolves once connected (and recovered), or after timeoutMs: never delays anyone longer */
  whenReady(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

export function createL2(opts: L2Options): L2 {
  const base: RedisOptions = {
    lazyConnect: false,
    enableOfflineQueue: false, // fail at once while disconnected instead of queueing
    maxRetriesPerRequest: 0,
    connectTimeout: 1000,
    enableAutoPipelining: true, // concurrent commands go out as one pipeline (per node in a Cluster)
    retryStrategy: (times) => Math.min(100 * times, 2000),
  };
  const make = (): Redis | Cluster =>
    opts.cluster ? new Cluster([opts.url], { redisOptions: base, enableOfflineQueue: false, enableAutoPipelining: true }) : new Redis(opts.url, base);
  const client = make();
  client.on('error', () => undefined); // the breaker accounts for failures; no unhandled events
  // defined commands go out as EVALSHA (the script body is sent once, not on every call)
  client.defineCommand('walletCas', { numberOfKeys: 1, lua: CAS_SET });
  client.defineCommand('walletFill', { numberOfKeys: 1, lua: FILL });
  const scripts = client as unknown as {
    walletCas(key: string, version: string, text: string, ttlMs: string): Promise<number>;
    walletFill(key: string, text: string, ttlMs: string, tombstone: string): Promise<number>;
  };
  let subscriber: Redis | Cluster | undefined;

  // Not connected (at start, or after the connection dropped) counts as an open breaker: writes
  // are remembered as dirty, and the first 'ready' runs the recovery that deletes them.
  let state: BreakerState = 'open';
  let connected = false;
  const ready = new Promise<void>((ok) => client.once('ready', () => ok()));
  client.on('ready', () => {
    connected = true;
    if (state !== 'closed' && !probing) {
      setState('half-open');
      probing = recover().finally(() => (probing = undefined));
    }
  });
  client.on('close', () => {
    connected = false;
    if (state === 'closed') {
      setState('open');
      openedAt = Date.now();
    }
  });
  let failures = 0;
  let lastFailureAt = 0;
  let openedAt = 0;
  let probing: Promise<void> | undefined;
  let untrustedUntil = 0;
  const dirty = new Set<string>();
  let dirtyOverflow = false;
  const setState = (s: BreakerState) => {
    if (s !== state) {
      state = s;
      opts.onBreaker?.(s);
    }
  };

  const within = async <T>(op: string, run: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      const result = await deadline(run(), opts.timeoutMs, () => new Error(`redis ${op} timed out`));
      failures = 0;
      return result;
    } catch (err) {
      // Calls that time out together (one stall of the event loop, one slow Redis moment) are
      // one failure: the breaker opens on failures in breakerFailures successive windows.
      const now = Date.now();
      if (now - lastFailureAt >= opts.timeoutMs) {
        failures++;
        lastFailureAt = now;
      }
      if (state === 'half-open' || failures >= opts.breakerFailures) {
        setState('open');
        openedAt = Date.now();
      }
      throw err;
    } finally {
      opts.onLatency?.(op, (performance.now() - started) / 1000);
    }
  };

  /** true when a call may go to Redis now; moves an open breaker to half-open after the cooldown */
  const usable = (): boolean => {
    if (state === 'closed') return true;
    if (state === 'open' && connected && Date.now() - openedAt >= opts.breakerCooldownMs && !probing) {
      setState('half-open');
      probing = recover().finally(() => (probing = undefined));
    }
    return false;
  };

  /**
   * The probe: forget what we could not update while Redis was away, then close. Writes that
   * arrive meanwhile are remembered too, so it repeats until nothing is left; each chunk of
   * deletions has its own time budget.
   */
  const recover = async () => {
    try {
      await within('ping', () => client.ping());
      for (let rounds = 0; dirty.size > 0; rounds++) {
        if (rounds > 100) throw new Error('redis recovery cannot catch up with new dirty keys');
        const keys = [...dirty].slice(0, 500);
        // one key a command: keys of a Cluster live in different slots
        await within('recover', () => Promise.all(keys.map((k) => client.del(k))));
        for (const k of keys) dirty.delete(k);
      }
      if (dirtyOverflow) {
        untrustedUntil = Date.now() + opts.maxTtlMs;
        dirtyOverflow = false;
      }
      setState('closed');
    } catch {
      setState('open');
      openedAt = Date.now();
    }
  };

  const remember = (keys: string[]) => {
    for (const k of keys) {
      if (dirty.size >= opts.dirtyKeysMax) {
        dirtyOverflow = true;
        return;
      }
      dirty.add(k);
    }
  };

  const write = async (op: string, keys: string[], run: () => Promise<unknown>) => {
    if (!usable()) return remember(keys);
    try {
      await within(op, run);
    } catch {
      remember(keys);
    }
  };

  return {
    get state() {
      return state;
    },
    readable: () => usable() && Date.now() >= untrustedUntil,
    async whenReady(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([ready.then(() => probing), new Promise((ok) => (timer = setTimeout(ok, timeoutMs)))]);
      clearTimeout(timer);
    },
    async get(key) {
      if (!usable() || Date.now() < untrustedUntil) return undefined;
      try {
        const text = await within('get', () => client.get(key));
        return text === null || text === TOMBSTONE ? undefined : text;
      } catch {
        return undefined;
      }
    },
    async getVersioned(key) {
      if (!usable() || Date.now() < untrustedUntil) return undefined;
      try {
        const [v, d] = await within('hmget', () => client.hmget(key, 'v', 'd'));
        // an empty value is a versioned tombstone: nothing older than it may be stored
        return v !== null && d !== null && v !== undefined && d !== undefined && d !== '' ? { version: BigInt(v), text: d } : undefined;
      } catch {
        return undefined;
      }
    },
    fill: (key, text, ttlMs) => write('fill', [key], () => scripts.walletFill(key, text, String(ttlMs), TOMBSTONE)),
    invalidate: (keys, tombstoneMs) => (keys.length ? write('invalidate', keys, () => Promise.all(keys.map((k) => client.set(k, TOMBSTONE, 'PX', tombstoneMs)))) : Promise.resolve()),
    async setIfNewer(key, version, text, ttlMs) {
      let outcome: 'stored' | 'older' | 'unavailable' = 'unavailable';
      await write('cas', [key], async () => {
        outcome = (await scripts.walletCas(key, version.toString(), text, String(ttlMs))) === 1 ? 'stored' : 'older';
      });
      return outcome;
    },
    delete: (keys) => (keys.length ? write('del', keys, () => Promise.all(keys.map((k) => client.del(k)))) : Promise.resolve()),
    async publish(channel, message) {
      if (!usable()) return;
      await within('publish', () => client.publish(channel, message)).catch(() => undefined);
    },
    async subscribe(channel, onMessage) {
      // subscribing may happen before the connection is up: this one queues its commands
      subscriber = opts.cluster ? (client as Cluster).duplicate(undefined, { enableOfflineQueue: true }) : (client as Redis).duplicate({ enableOfflineQueue: true });
      subscriber.on('error', () => undefined);
      subscriber.on('message', (ch: string, msg: string) => {
        if (ch === channel) onMessage(msg);
      });
      // re-subscribes by itself after reconnecting (ioredis autoResubscribe)
      await subscriber.subscribe(channel).catch(() => undefined);
    },
    async close() {
      await Promise.allSettled([client.quit(), subscriber?.quit()]);
      client.disconnect();
      subscriber?.disconnect();
    },
  };
}
