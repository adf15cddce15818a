/**
 * Per-tick batching of point lookups (the DataLoader pattern, per cluster): the keys asked for
 * in one tick of the event loop go to PostgreSQL as one statement per cluster (up to `max` keys
 * each) instead of one statement per key. Under load the API asks for the same kinds of rows
 * for hundreds of requests at once (wallet ids, idempotency records, fraud context): one round
 * trip and one plan for all of them is what keeps PostgreSQL's CPU per request small.
 *
 * A failed statement fails the lookups it carried, and only those.
 */
import type { Sql } from './index.js';

export interface BatchLoaderOptions<K, V> {
  /** the cluster whose primary answers for the key */
  sqlOf(key: K): Sql;
  /** equal keys share one lookup */
  idOf(key: K): string;
  /** loads the keys (distinct ids, one cluster); returns the found values by id */
  load(sql: Sql, keys: K[]): Promise<Map<string, V>>;
  /** keys per statement (default 500) */
  max?: number;
}

/** A lookup function: the value, or undefined when the row does not exist. */
export type BatchLoader<K, V> = (key: K) => Promise<V | undefined>;

interface Waiting<V> {
  resolve(v: V | undefined): void;
  reject(err: unknown): void;
}

export function createBatchLoader<K, V>(opts: BatchLoaderOptions<K, V>): BatchLoader<K, V> {
  const max = opts.max ?? 500;
  /** this tick's keys per cluster: id → the key and everyone waiting for it */
  let queued = new Map<Sql, Map<string, { key: K; waiting: Waiting<V>[] }>>();

  function flush(): void {
    const all = queued;
    queued = new Map();
    for (const [sql, byId] of all) {
      const entries = [...byId];
      for (let i = 0; i < entries.length; i += max) {
        const part = entries.slice(i, i + max);
        opts.load(sql, part.map(([, e]) => e.key)).then(
          (found) => {
            for (const [id, e] of part) for (const w of e.waiting) w.resolve(found.get(id));
          },
          (err) => {
            for (const [, e] of part) for (const w of e.waiting) w.reject(err);
          },
        );
      }
    }
  }

  return (key) =>
    new Promise<V | undefined>((resolve, reject) => {
      const sql = opts.sqlOf(key);
      let byId = queued.get(sql);
      if (!byId) {
        if (queued.size === 0) setImmediate(flush);
        byId = new Map();
        queued.set(sql, byId);
      }
      const id = opts.idOf(key);
      const entry = byId.get(id);
      if (entry) entry.waiting.push({ resolve, reject });
      else byId.set(id, { key, waiting: [{ resolve, reject }] });
    });
}
