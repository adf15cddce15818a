/**
 * A connection stuck in the middle of a transaction (its server waiting for the client, which no
 * server-side timeout ends) must not hold its locks for ever: past the deadline the work is
 * abandoned, the primary pool replaced and the stuck connection destroyed.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import postgres from 'postgres';
import { createTestDatabase, regionalTopology, until } from '../test-support/platform.js';
import { DatabaseStuck, createDb, unlessStuck, type Db } from './index.js';

let database: Awaited<ReturnType<typeof createTestDatabase>>;
let db: Db;
let other: postgres.Sql;

beforeAll(async () => {
  database = await createTestDatabase();
  db = createDb(regionalTopology([database.url]), { poolMax: 2, statementTimeoutMs: 60_000, shardMapPollMs: 0 });
  other = postgres(database.url, { max: 1, onnotice: () => undefined });
  await other`create table stuck_probe (id int primary key)`;
  await other`insert into stuck_probe values (1)`;
});

afterAll(async () => {
  await other?.end({ timeout: 1 });
  await db?.close();
  await database?.drop();
});

describe('a stuck database step', () => {
  test('is abandoned at its deadline, and the row locks its transaction held are released', async () => {
    const cluster = db.clusters[0]!;
    let locked!: () => void;
    const holding = new Promise<void>((r) => (locked = r));
    // the lock is taken, then the client never sends the rest: the server waits in ClientRead
    const stuck = cluster.sql.begin(async (tx) => {
      await tx`select id from stuck_probe where id = 1 for update`;
      locked();
      await new Promise(() => undefined);
    });
    stuck.catch(() => undefined);
    await holding;

    const started = Date.now();
    await expect(unlessStuck(cluster, 'the probe', 300, stuck)).rejects.toBeInstanceOf(DatabaseStuck);
    expect(Date.now() - started).toBeLessThan(2000);

    // the old pool's connections are destroyed within seconds: the row can be locked again
    const [row] = await other.begin(async (tx) => {
      await tx`set local lock_timeout = '15s'`;
      return tx<{ id: number }[]>`select id from stuck_probe where id = 1 for update`;
    });
    expect(row?.id).toBe(1);
    // and the cluster answers on its new pool
    expect((await cluster.sql<{ one: number }[]>`select 1 as one`)[0]?.one).toBe(1);
    // once closed, the old pool is forgotten: a cluster that keeps recycling does not collect them
    await until(() => (cluster as unknown as { retired: unknown[] }).retired.length === 0, 10_000, 'the replaced pool to be dropped');
  });

  test('that finishes in time is answered as usual', async () => {
    const cluster = db.clusters[0]!;
    const rows = await unlessStuck(cluster, 'a quick read', 5000, cluster.sql<{ id: number }[]>`select id from stuck_probe`);
    expect(rows.map((r) => r.id)).toEqual([1]);
  });
});
