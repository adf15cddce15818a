/**
 * The history's partition lifecycle, driven through the maintenance role with a simulated clock
 * (each round is given its `now`). Simulated times lie years in the past, so the months of today
 * (which other tests write to) never come due; rows of old months are inserted in SQL, with ids
 * that carry their time like every id (src/shared/ids.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPlatform, fund, moneyPost, signUp, type TestPlatform, type TestUser } from '../test-support/platform.js';
import { coreTasks, runMaintenanceRound } from '../maintenance/index.js';
import { archivePartitions, ensurePartitions, listArchivedPartitions, listPartitions, partitionName } from './partitions.js';
import { newId, shardOf } from '../shared/ids.js';
import { reconcile } from '../ledger/reconcile.js';
import type { Sql } from './index.js';

const DAY_MS = 86_400_000;
const month = (d: Date, offset: number) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + offset, 1));
/** noon of the day-th day of a month */
const dayOf = (m: Date, day: number) => new Date(m.getTime() + (day - 1) * DAY_MS + 12 * 3_600_000);
const ymd = (d: Date) => d.toISOString().slice(0, 10);

interface Row {
  id: string;
  at: Date;
}

/** History rows of a user, straight into `transactions` (their months must be hot). */
async function insertHistory(sql: Sql, user: TestUser, times: Date[]): Promise<Row[]> {
  const rows = times.map((at) => ({ id: newId('txn', shardOf(user.id), at), at }));
  for (const r of rows) {
    await sql`insert into transactions (id, user_id, shard, wallet_id, type, direction, amount, currency, status, created_at)
      values (${r.id}, ${user.id}, ${shardOf(user.id)}, ${'wal_probe'}, 'transfer', 'credit', ${7n}, 'USD', 'completed', ${r.at})`;
  }
  return rows;
}

const isAttached = async (sql: Sql, name: string) => (await listPartitions(sql)).includes(name);
const isArchived = async (sql: Sql, name: string) => (await listArchivedPartitions(sql)).includes(name);

describe('history partition lifecycle (maintenance role)', () => {
  let t: TestPlatform;
  let sql: Sql;
  beforeAll(async () => {
    t = await createTestPlatform({ PARTITIONS_AHEAD_MONTHS: '3', PARTITIONS_HOT_DAYS: '90', PARTITIONS_WARM_DAYS: '1826' });
    sql = t.platform.db.clusters[0]!.sql;
  });
  afterAll(() => t?.close());

  const round = (now: Date) => runMaintenanceRound(t.platform, coreTasks(t.platform), now);
  /** rounds at one time until the lifecycle has nothing left to do (each round moves a bounded number of months) */
  async function settle(now: Date): Promise<{ archived: number; dropped: number }> {
    const total = { archived: 0, dropped: 0 };
    for (let i = 0; i < 10; i++) {
      const r = (await round(now)).main!;
      expect(r).toHaveProperty('partitions-archive'); // a task that throws has no entry
      total.archived += r['partitions-archive']!;
      total.dropped += r['partitions-drop']!;
      if (r['partitions-archive'] === 0 && r['partitions-drop'] === 0) return total;
    }
    throw new Error(`the lifecycle did not settle at ${now.toISOString()}`);
  }
  async function historyIds(user: TestUser, from: Date, to: Date): Promise<string[]> {
    const res = await t.app.inject({ method: 'GET', url: `/v1/transactions?limit=100&from=${ymd(from)}&to=${ymd(to)}`, headers: user.auth });
    expect(res.statusCode, res.body).toBe(200);
    return (res.json().transactions as { id: string }[]).map((x) => x.id);
  }

  it('keeps months ahead, moves months past the hot period to the archive, and drops them after the warm period', async () => {
    const alice = await signUp(t.app);
    const t0 = month(new Date(), -84); // seven years ago
    // the clock at t0: the month before, this one and three ahead exist
    await round(t0);
    for (let i = -1; i <= 3; i++) expect(await isAttached(sql, partitionName(month(t0, i)))).toBe(true);
    const inT0 = await insertHistory(sql, alice, [dayOf(t0, 3), dayOf(t0, 20)]);
    const inT1 = await insertHistory(sql, alice, [dayOf(month(t0, 1), 5)]);
    const range = [t0, new Date(month(t0, 2).getTime() - DAY_MS)] as const;
    expect((await historyIds(alice, ...range)).sort()).toEqual([...inT0, ...inT1].map((r) => r.id).sort());

    // 91 days after the end of t0's month: t0 (and the month before) are past the hot period, t0+1 is not
    const t1 = new Date(month(t0, 1).getTime() + 91 * DAY_MS);
    expect((await settle(t1)).archived).toBeGreaterThanOrEqual(2);
    for (const m of [month(t0, -1), t0]) {
      expect(await isArchived(sql, partitionName(m))).toBe(true);
      expect(await isAttached(sql, partitionName(m))).toBe(false);
    }
    expect(await isAttached(sql, partitionName(month(t0, 1)))).toBe(true);
    for (let i = 0; i <= 3; i++) expect(await isAttached(sql, partitionName(month(t1, i)))).toBe(true);
    // the history API still answers the old range, from the archived month and the hot one
    expect((await historyIds(alice, ...range)).sort()).toEqual([...inT0, ...inT1].map((r) => r.id).sort());
    // idempotent: the next round at the same time has nothing to do
    expect((await round(t1)).main).toMatchObject({ 'partitions-archive': 0, 'partitions-drop': 0 });

    // just past the warm period after t0's month: t0 goes; t0+1 moves to the archive (oldest first) and stays
    const t2 = new Date(month(t0, 1).getTime() + 1827 * DAY_MS);
    expect((await settle(t2)).dropped).toBeGreaterThanOrEqual(2);
    for (const m of [month(t0, -1), t0]) {
      expect(await isArchived(sql, partitionName(m))).toBe(false);
      expect(await isAttached(sql, partitionName(m))).toBe(false);
    }
    expect(await isArchived(sql, partitionName(month(t0, 1)))).toBe(true);
    expect((await historyIds(alice, ...range)).sort()).toEqual(inT1.map((r) => r.id).sort());
    // every archived partition carries the covering key (adopted on attach, not rebuilt)
    const [idx] = await sql<{ missing: number }[]>`
      select count(*)::int as missing from pg_inherits p
      where p.inhparent = 'archive.transactions'::regclass
        and not exists (select 1 from pg_inherits i join pg_class x on x.oid = i.inhrelid join pg_index ix on ix.indexrelid = x.oid
                        where i.inhparent = 'archive.transactions_pkey'::regclass and ix.indrelid = p.inhrelid)`;
    expect(idx!.missing).toBe(0);
  });

  it('finishes moves left half done (interrupted DETACH CONCURRENTLY, detached, moved but not attached), and a failed move leaves its month hot', async () => {
    const bob = await signUp(t.app);
    const r = month(new Date(), -108); // nine years ago: months r-1 .. r+3
    await ensurePartitions(sql, { aheadMonths: 3, now: r });
    const months = [-1, 0, 1, 2, 3].map((i) => month(r, i));
    const rows = await insertHistory(sql, bob, months.map((m) => dayOf(m, 10)));
    const names = months.map(partitionName);

    // r-1: a DETACH ... CONCURRENTLY cancelled while it waited for an older snapshot: pending detach
    const reader = await sql.reserve();
    const detacher = await sql.reserve();
    try {
      await reader`begin isolation level repeatable read`;
      await reader`select count(*) from transactions`;
      const pid = (await detacher<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!.pid;
      const detach = detacher.unsafe(`alter table transactions detach partition ${names[0]} concurrently`).then(() => 'finished', (err: Error) => err.message);
      for (let i = 0; i < 200; i++) {
        const [p] = await sql`select inhdetachpending as pending from pg_inherits where inhrelid = ${names[0]!}::regclass`;
        if (p?.pending) break;
        await new Promise((res) => setTimeout(res, 25));
      }
      await sql`select pg_cancel_backend(${pid})`;
      expect(await detach).toMatch(/cancel/);
      await reader`commit`;
    } finally {
      reader.release();
      detacher.release();
    }
    const [pending] = await sql`select inhdetachpending as pending from pg_inherits where inhrelid = ${names[0]!}::regclass`;
    expect(pending!.pending).toBe(true);
    // r: detached, still in the hot schema; r+1: detached and moved, not attached; r+2: bounds check added, not validated
    await sql.unsafe(`alter table transactions detach partition ${names[1]}`);
    await sql.unsafe(`alter table transactions detach partition ${names[2]}`);
    await sql.unsafe(`alter table ${names[2]} set schema archive`);
    await sql.unsafe(`alter table ${names[3]} add constraint ${names[3]}_bounds check (created_at >= '${months[3]!.toISOString()}' and created_at < '${months[4]!.toISOString()}') not valid`);
    const whole = [months[0]!, new Date(months[4]!.getTime() + 27 * DAY_MS)] as const;
    // half-done months are invisible: that is what the next round must repair
    expect((await historyIds(bob, ...whole)).sort()).toEqual([rows[3]!.id, rows[4]!.id].sort());

    // A reader holds `transactions`: r+2's move (a plain DETACH needs an exclusive lock on it)
    // times out and rolls back, leaving r+2 hot and readable, and nothing newer moves past it.
    const now = new Date(month(r, 4).getTime() + 91 * DAY_MS);
    const holder = await sql.reserve();
    let failure: unknown;
    try {
      await holder`begin`;
      await holder`lock table only transactions in access share mode`;
      await archivePartitions(sql, { now, hotDays: 90, warmDays: 1826, lockTimeoutMs: 200 }).catch((err) => (failure = err));
    } finally {
      await holder`rollback`;
      holder.release();
    }
    expect(String(failure)).toMatch(/lock timeout/);
    // r-1 (finalized), r and r+1 need no lock on `transactions` beyond what the reader allows
    for (const name of names.slice(0, 3)) expect(await isArchived(sql, name)).toBe(true);
    expect(await isAttached(sql, names[3]!)).toBe(true);
    expect(await isAttached(sql, names[4]!)).toBe(true);
    expect((await historyIds(bob, ...whole)).sort()).toContain(rows[3]!.id);

    expect((await settle(now)).archived).toBeGreaterThanOrEqual(2);
    for (const name of names) {
      expect(await isArchived(sql, name)).toBe(true);
      expect(await isAttached(sql, name)).toBe(false);
    }
    const [left] = await sql`select count(*)::int as n from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = current_schema() and c.relname = any(${names})`;
    expect(left!.n).toBe(0);
    expect((await historyIds(bob, ...whole)).sort()).toEqual(rows.map((x) => x.id).sort());
  });
});

describe('reconcile across the history lifecycle', () => {
  let t: TestPlatform;
  let sql: Sql;
  beforeAll(async () => {
    t = await createTestPlatform();
    sql = t.platform.db.clusters[0]!.sql;
  });
  afterAll(() => t?.close());

  /** A p2p movement written as the engine writes it (ledger row, one history row per side), at an old time. */
  async function oldTransfer(from: TestUser, to: TestUser, at: Date): Promise<string> {
    const wallet = async (u: TestUser) => (await sql`select id from accounts where user_id = ${u.id} and kind = 'user' and currency = 'USD'`)[0]!.id as string;
    const [debit, credit] = [await wallet(from), await wallet(to)];
    const id = newId('txn', shardOf(from.id), at);
    await sql`insert into ledger_transfers (id, debit_account_id, credit_account_id, amount, currency, status, kind, ref_id, shard, created_at)
      values (${id}, ${debit}, ${credit}, ${3n}, 'USD', 'posted', 'p2p', ${id}, ${shardOf(from.id)}, ${at})`;
    await sql`insert into transactions (id, user_id, shard, wallet_id, type, direction, amount, currency, status, counterparty, created_at) values
      (${id}, ${from.id}, ${shardOf(from.id)}, ${debit}, 'transfer', 'debit', ${3n}, 'USD', 'completed', ${to.id}, ${at}),
      (${id}, ${to.id}, ${shardOf(to.id)}, ${credit}, 'transfer', 'credit', ${3n}, 'USD', 'completed', ${from.id}, ${at})`;
    return id;
  }
  const historyCheck = async () => (await reconcile(t.platform.db)).checks.find((c) => c.id === 'history_matches_ledger')!;

  it('sees archived history rows, and does not miss the rows of months dropped after the warm period', async () => {
    const [carol, dave] = [await signUp(t.app), await signUp(t.app)];
    await fund(t.app, carol, 1000);
    await fund(t.app, dave, 1000);
    const sixYearsAgo = month(new Date(), -72);
    const threeYearsAgo = month(new Date(), -36);
    await ensurePartitions(sql, { aheadMonths: 0, now: sixYearsAgo });
    await ensurePartitions(sql, { aheadMonths: 0, now: threeYearsAgo });
    const dropped = await oldTransfer(carol, dave, dayOf(sixYearsAgo, 4));
    const archived = await oldTransfer(carol, dave, dayOf(threeYearsAgo, 4));
    expect((await moneyPost(t.app, carol, '/v1/transfers', { to: dave.id, amount: 2, currency: 'USD' })).statusCode).toBe(201);
    expect((await historyCheck()).findings).toEqual([]);

    // today's clock: both old months leave the hot partitions, the six-year-old one is dropped
    for (let i = 0; i < 10; i++) {
      const r = (await runMaintenanceRound(t.platform, coreTasks(t.platform), new Date())).main!;
      if (r['partitions-archive'] === 0 && r['partitions-drop'] === 0) break;
    }
    expect(await isArchived(sql, partitionName(threeYearsAgo))).toBe(true);
    expect(await isArchived(sql, partitionName(sixYearsAgo))).toBe(false);
    const [gone] = await sql`select count(*)::int as n from ledger_transfers where id = ${dropped}`;
    expect(gone!.n).toBe(1); // the ledger keeps the movement; only its history rows went
    expect((await historyCheck()).findings).toEqual([]);

    // an archived row that goes missing is still found
    await sql`delete from archive.transactions where user_id = ${dave.id} and id = ${archived}`;
    const check = await historyCheck();
    expect(check.findings.map((f) => f.code)).toEqual(['movement_without_history']);
    expect(check.findings[0]!.count).toBe(1);
    expect(check.findings[0]!.examples[0]).toMatchObject({ id: archived, user: dave.id });
  });
});
