/** The wallet directory on a real PostgreSQL: ids by (user, currency), looked up per tick. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPlatform, signUp, type TestPlatform } from '../test-support/platform.js';
import type { Db } from '../db/index.js';
import { createWalletDirectory } from './wallet-directory.js';

let t: TestPlatform;
beforeAll(async () => {
  t = await createTestPlatform();
});
afterAll(() => t?.close());

/** the platform's database with every statement counted */
function countedDb(): { db: Db; statements: () => number } {
  let n = 0;
  const db = t.platform.db;
  const sql = new Proxy(db.clusters[0]!.sql, { apply: (target, self, args) => (n++, Reflect.apply(target, self, args)) });
  return { db: { ...db, forShard: (shard: number) => ({ ...db.forShard(shard), sql }) } as Db, statements: () => n };
}

describe('the wallet directory', () => {
  it("finds several users' wallets asked for in one tick with one statement, and knows a missing currency", async () => {
    const users = await Promise.all([signUp(t.app), signUp(t.app), signUp(t.app)]);
    const { db, statements } = countedDb();
    const dir = createWalletDirectory(db);
    const found = await Promise.all([...users.map((u) => dir.find(u.id, 'USD')), dir.find(users[0]!.id, 'JPY')]);
    expect(statements()).toBe(1);
    const real = await t.platform.db.clusters[0]!.sql<{ user_id: string; id: string }[]>`select user_id, id from accounts where kind = 'user' and currency = 'USD' and user_id = any(${users.map((u) => u.id)}::text[])`;
    const byUser = new Map(real.map((r) => [r.user_id, r.id]));
    expect(found).toEqual([...users.map((u) => byUser.get(u.id)), undefined]);
  });

  it('keeps at most its bound of wallets, the least recently used leaving first, and looks a forgotten one up again', async () => {
    const [a, b, c] = await Promise.all([signUp(t.app), signUp(t.app), signUp(t.app)]);
    const { db, statements } = countedDb();
    const dir = createWalletDirectory(db, 2);
    const wa = await dir.find(a.id, 'USD');
    await dir.find(b.id, 'USD');
    expect(await dir.find(a.id, 'USD')).toBe(wa); // cached, and now the most recently used
    await dir.find(c.id, 'USD'); // b leaves
    expect(statements()).toBe(3);
    expect(await dir.find(a.id, 'USD')).toBe(wa);
    expect(statements()).toBe(3);
    expect(await dir.find(b.id, 'USD')).toMatch(/^wal_/);
    expect(statements()).toBe(4);
  });

  it('answers a wallet it found before from its cache', async () => {
    const u = await signUp(t.app);
    const { db, statements } = countedDb();
    const dir = createWalletDirectory(db);
    const first = await dir.find(u.id, 'USD');
    expect(first).toMatch(/^wal_/);
    expect(await dir.find(u.id, 'USD')).toBe(first);
    expect(statements()).toBe(1);
  });
});
