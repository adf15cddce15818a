/**
 * The history API over hot and archived months (src/db/partitions.ts): old ranges and cursor
 * walks reach the archive, pages the hot months fill never touch it, and completed-history pages
 * read the partial covering index. Rows are inserted in SQL (the API only reads them), with ids
 * that carry their time (src/shared/ids.ts); a year-old month is created and archived by the
 * lifecycle functions at today's date.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPlatform, signUp, type TestPlatform, type TestUser } from '../test-support/platform.js';
import { archivePartitions, ensurePartitions, listArchivedPartitions, listPartitions, partitionName } from '../db/partitions.js';
import { newId, shardOf } from '../shared/ids.js';
import { historyRows } from './service.js';
import type { Sql } from '../db/index.js';

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;
const month = (d: Date, offset: number) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + offset, 1));
const ymd = (d: Date) => d.toISOString().slice(0, 10);

type Status = 'completed' | 'pending' | 'voided';
interface Row {
  id: string;
  at: Date;
  status: Status;
}

let t: TestPlatform;
let sql: Sql;
const rowsOf = new Map<string, Row[]>();
const old = month(new Date(), -12);

/** Rows of a user in `transactions` (their months must be hot when inserted). */
async function insertRows(user: TestUser, spec: { at: Date; status?: Status }[]): Promise<void> {
  const shard = shardOf(user.id);
  const rows = spec.map((s) => ({ id: newId('txn', shard, s.at), at: s.at, status: s.status ?? 'completed' }));
  await sql`insert into transactions ${sql(
    rows.map((r) => ({ id: r.id, user_id: user.id, shard, wallet_id: 'wal_probe', type: 'transfer', direction: 'credit', amount: 7n, currency: 'USD', status: r.status, created_at: r.at })),
  )}`;
  rowsOf.set(user.id, [...(rowsOf.get(user.id) ?? []), ...rows]);
}

/** A user's rows as every page must list them: newest first (times are distinct). */
const expected = (user: TestUser, keep: (r: Row) => boolean = () => true) =>
  (rowsOf.get(user.id) ?? []).filter(keep).sort((a, b) => b.at.getTime() - a.at.getTime()).map((r) => r.id);

const get = (user: TestUser, query: string) => t.app.inject({ method: 'GET', url: `/v1/transactions${query ? `?${query}` : ''}`, headers: user.auth });
async function page(user: TestUser, query: string): Promise<{ ids: string[]; nextCursor?: string }> {
  const res = await get(user, query);
  expect(res.statusCode, res.body).toBe(200);
  return { ids: (res.json().transactions as { id: string }[]).map((x) => x.id), nextCursor: res.json().nextCursor };
}
async function walk(user: TestUser, query: string): Promise<string[]> {
  const seen: string[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 50; i++) {
    const p = await page(user, `${query}${cursor ? `&cursor=${cursor}` : ''}`);
    seen.push(...p.ids);
    if (!p.nextCursor) return seen;
    cursor = p.nextCursor;
  }
  throw new Error('the walk did not end');
}

/** `hot` rows in the last hours, `archived` rows in a year-old month (inserted before it moves). */
const hotTimes = (n: number, status: (i: number) => Status = () => 'completed') =>
  Array.from({ length: n }, (_, i) => ({ at: new Date(Date.now() - (i + 1) * MINUTE_MS), status: status(i) }));
const oldTimes = (n: number, status: (i: number) => Status = () => 'completed') =>
  Array.from({ length: n }, (_, i) => ({ at: new Date(old.getTime() + (i + 1) * DAY_MS), status: status(i) }));

let busy: TestUser; // more hot rows than a page, and archived ones
let quiet: TestUser; // a few hot rows, and archived ones
let active: TestUser; // like busy, read for the first time while the archive is locked
let idle: TestUser; // like quiet, read for the first time while the archive is locked

beforeAll(async () => {
  t = await createTestPlatform();
  sql = t.platform.db.clusters[0]!.sql;
  [busy, quiet, active, idle] = [await signUp(t.app), await signUp(t.app), await signUp(t.app), await signUp(t.app)];
  await ensurePartitions(sql, { aheadMonths: 1, now: old });
  await insertRows(busy, [...oldTimes(12, (i) => (i % 4 === 0 ? 'pending' : 'completed')), ...hotTimes(110, (i) => (i % 10 === 3 ? 'pending' : 'completed'))]);
  await insertRows(quiet, [...oldTimes(2), ...hotTimes(3)]);
  await insertRows(active, [...oldTimes(2), ...hotTimes(105)]);
  await insertRows(idle, [...oldTimes(2), ...hotTimes(1)]);
  const moved = await archivePartitions(sql, { now: new Date(), hotDays: t.config.partitionsHotDays, warmDays: t.config.partitionsWarmDays });
  expect(moved).toContain(partitionName(old));
  expect(await listPartitions(sql)).not.toContain(partitionName(old));
  expect(await listArchivedPartitions(sql)).toContain(partitionName(old));
});
afterAll(() => t?.close());

describe('history over hot and archived months', () => {
  it('answers a date range inside an archived month', async () => {
    const p = await page(busy, `limit=100&from=${ymd(old)}&to=${ymd(new Date(month(old, 1).getTime() - DAY_MS))}`);
    expect(p.ids).toEqual(expected(busy, (r) => r.at < month(old, 1)));
    expect(p.ids.length).toBe(12);
  });

  it('walks every item newest first with a cursor, from the hot months into the archive, with no gaps or duplicates', async () => {
    expect(await walk(busy, `limit=40&from=${ymd(month(old, -1))}`)).toEqual(expected(busy));
    expect(await walk(busy, 'limit=30&currency=USD')).toEqual(expected(busy));
  });

  it('pages with offsets across the hot boundary', async () => {
    const all = expected(busy);
    expect((await page(busy, 'limit=20&offset=100&currency=USD')).ids).toEqual(all.slice(100, 120));
    expect((await page(busy, 'limit=20&offset=115&currency=USD')).ids).toEqual(all.slice(115, 135));
  });

  it('completes the first page from the archive for a user with little recent history', async () => {
    const p = await page(quiet, 'limit=20');
    expect(p.ids).toEqual(expected(quiet));
    expect(p.nextCursor).toBeUndefined();
  });

  it('filters by status, hot and archived (status=completed: the statement view)', async () => {
    expect(await walk(busy, 'limit=50&status=completed')).toEqual(expected(busy, (r) => r.status === 'completed'));
    expect(await walk(busy, 'limit=50&status=pending')).toEqual(expected(busy, (r) => r.status === 'pending'));
    expect((await get(busy, 'status=settled')).statusCode).toBe(400);
  });

  it('serves pages the hot months fill, and ranges inside the hot period, without touching the archive', async () => {
    const timeout = (ms: number) => new Promise<'blocked'>((r) => setTimeout(() => r('blocked'), ms));
    const locker = await sql.reserve();
    let idlePage: ReturnType<typeof get> | undefined;
    try {
      // any read of the archive waits for this lock
      await locker`begin`;
      await locker`lock table archive.transactions in access exclusive mode`;
      const yesterday = ymd(new Date(Date.now() - DAY_MS));
      for (const query of ['limit=20', 'limit=20&status=completed', 'limit=50&currency=USD', `limit=20&from=${yesterday}&type=topup`]) {
        const res = await Promise.race([get(active, query), timeout(3000)]);
        expect(res === 'blocked' ? `${query}: blocked by the archive lock` : res.statusCode).toBe(200);
      }
      // the control: a page the hot months cannot fill does read the archive, so it waits
      idlePage = get(idle, 'limit=20');
      expect(await Promise.race([idlePage, timeout(1500)])).toBe('blocked');
    } finally {
      await locker`rollback`;
      locker.release();
    }
    const res = await idlePage!;
    expect(res.statusCode).toBe(200);
    expect((res.json().transactions as { id: string }[]).map((x) => x.id)).toEqual(expected(idle));
  });

  it('reads pages of completed items from the covering primary key alone, hot and archived', async () => {
    await sql`vacuum analyze transactions`;
    await sql`vacuum analyze archive.transactions`;
    const children = new Set(
      (await sql<{ name: string }[]>`
        select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
        where i.inhparent in ('transactions_pkey'::regclass, 'archive.transactions_pkey'::regclass)`).map((r) => r.name),
    );
    const archived = new Set(await listArchivedPartitions(sql));
    const plan = await sql.begin(async (tx) => {
      // A few hundred rows: a sequential scan would be cheapest; with more data the index wins on its own.
      await tx`set local enable_seqscan = off`;
      const [row] = await tx`explain (format json) ${historyRows(tx, { userId: busy.id, limit: 20, status: 'completed' }, true)}`;
      return row!['QUERY PLAN'] as unknown;
    });
    const scans: { node: string; relation: string; index?: string }[] = [];
    const visit = (n: Record<string, unknown>) => {
      if (typeof n['Relation Name'] === 'string') scans.push({ node: n['Node Type'] as string, relation: n['Relation Name'] as string, index: n['Index Name'] as string | undefined });
      for (const child of (n.Plans as Record<string, unknown>[] | undefined) ?? []) visit(child);
    };
    visit((plan as { Plan: Record<string, unknown> }[])[0]!.Plan);
    expect(scans.some((s) => archived.has(s.relation))).toBe(true);
    expect(scans.some((s) => !archived.has(s.relation))).toBe(true);
    for (const s of scans) {
      expect(s.node, JSON.stringify(s)).toBe('Index Only Scan');
      expect(children.has(s.index ?? ''), JSON.stringify(s)).toBe(true);
    }
  });
});
