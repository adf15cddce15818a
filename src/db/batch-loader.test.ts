/** Per-tick batching of point lookups, on a real PostgreSQL. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPlatform, type TestPlatform } from '../test-support/platform.js';
import { createBatchLoader } from './batch-loader.js';
import type { Sql } from './index.js';

let t: TestPlatform;
beforeAll(async () => {
  t = await createTestPlatform();
});
afterAll(() => t?.close());

/** a loader of `n → n * n` for n in 1..1000 from generate_series, counting its statements */
function squares(max?: number, failOn?: number) {
  const statements: number[][] = [];
  const load = createBatchLoader<number, bigint>({
    sqlOf: () => t.platform.db.clusters[0]!.sql,
    idOf: (n) => String(n),
    max,
    async load(sql: Sql, keys) {
      statements.push(keys);
      if (failOn !== undefined && keys.includes(failOn)) await sql`select 1 / 0`;
      const rows = await sql<{ n: number; sq: bigint }[]>`select n, (n * n)::bigint as sq from generate_series(1, 1000) n where n = any(${keys}::int[])`;
      return new Map(rows.map((r) => [String(r.n), r.sq]));
    },
  });
  return { load, statements };
}

describe('the batch loader', () => {
  it('sends the keys asked for in one tick as one statement, each caller getting its own row', async () => {
    const { load, statements } = squares();
    expect(await Promise.all([load(3), load(4), load(5)])).toEqual([9n, 16n, 25n]);
    expect(statements).toEqual([[3, 4, 5]]);
  });

  it('answers undefined for a key without a row', async () => {
    const { load } = squares();
    expect(await Promise.all([load(2), load(5000)])).toEqual([4n, undefined]);
  });

  it('asks for a key once however many callers want it', async () => {
    const { load, statements } = squares();
    expect(await Promise.all([load(7), load(7), load(8)])).toEqual([49n, 49n, 64n]);
    expect(statements).toEqual([[7, 8]]);
  });

  it('splits a tick into statements of at most max keys', async () => {
    const { load, statements } = squares(2);
    expect(await Promise.all([1, 2, 3, 4, 5].map(load))).toEqual([1n, 4n, 9n, 16n, 25n]);
    expect(statements).toEqual([[1, 2], [3, 4], [5]]);
  });

  it('fails the lookups of a failed statement and only those', async () => {
    const { load } = squares(2, 3);
    const got = await Promise.allSettled([1, 2, 3, 4].map(load));
    expect(got.map((g) => g.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'rejected']);
    expect((got[2] as PromiseRejectedResult).reason.code).toBe('22012'); // division_by_zero
  });

  it('starts a new batch for keys asked for after the previous tick', async () => {
    const { load, statements } = squares();
    await load(1);
    await load(2);
    expect(statements).toEqual([[1], [2]]);
  });
});
