/**
 * L1: in-process, bounded in bytes (the encoded size of each value), TTL per entry, least
 * recently used evicted first (lru-cache does the bookkeeping). Values are kept encoded so a
 * caller can never mutate a cached object, and so their size is known exactly.
 */
import { LRUCache } from 'lru-cache';

export interface L1Entry {
  text: string;
  /** the decoded value (frozen), so a hit costs no parsing */
  value?: unknown;
  /** for versioned keys (balances): the account row's version */
  version?: bigint;
}

export interface L1 {
  get(key: string): L1Entry | undefined;
  set(key: string, entry: L1Entry, ttlMs: number): void;
  /** keeps the newer of the stored and the given entry (by version) */
  setIfNewer(key: string, entry: L1Entry & { version: bigint }, ttlMs: number): void;
  delete(key: string): void;
  readonly bytes: number;
  readonly size: number;
  clear(): void;
}

export function createL1(maxBytes: number, onEvict: (reason: string) => void = () => undefined): L1 {
  if (maxBytes === 0) {
    return { get: () => undefined, set: () => undefined, setIfNewer: () => undefined, delete: () => undefined, bytes: 0, size: 0, clear: () => undefined };
  }
  const lru = new LRUCache<string, L1Entry>({
    maxSize: maxBytes,
    // UTF-16 in memory: 2 bytes a character, plus the key and a fixed overhead per entry
    sizeCalculation: (entry, key) => 2 * (entry.text.length + key.length) + 64,
    ttlAutopurge: false,
    allowStale: false,
    dispose: (_v, _k, reason) => {
      if (reason === 'evict' || reason === 'expire') onEvict(reason);
    },
  });
  return {
    get: (key) => lru.get(key),
    set: (key, entry, ttlMs) => {
      lru.set(key, entry, { ttl: ttlMs });
    },
    setIfNewer(key, entry, ttlMs) {
      const cur = lru.get(key);
      if (cur?.version !== undefined && cur.version >= entry.version) return;
      lru.set(key, entry, { ttl: ttlMs });
    },
    delete: (key) => {
      lru.delete(key);
    },
    get bytes() {
      return lru.calculatedSize;
    },
    get size() {
      return lru.size;
    },
    clear: () => lru.clear(),
  };
}
