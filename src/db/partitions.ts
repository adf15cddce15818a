/**
 * Monthly partitions of `transactions` (the history) and their lifecycle, run by the maintenance
 * role (one active instance per cluster, src/maintenance):
 *   - hot: `transactions_YYYY_MM` attached to `transactions`. The current month, the previous one
 *     (late writes near a month boundary) and `aheadMonths` future months are kept present.
 *   - warm: a month whose whole range is older than the hot period moves to the schema `archive`,
 *     attached to `archive.transactions` under the same name. The history API reads it only for
 *     pages the hot partitions cannot fill (src/history/service.ts).
 *   - gone: an archived month whose whole range is older than the warm period is dropped.
 *
 * How a month moves, and why not DETACH ... CONCURRENTLY: the move is DETACH, SET SCHEMA archive
 * and ATTACH in ONE transaction, so every query sees the month exactly once, hot or archived, and
 * a crash anywhere rolls the whole move back (the next round starts it again). CONCURRENTLY
 * cannot run in a transaction block: the three steps would be three transactions, and between
 * them the month would belong to neither parent, so history pages would silently skip it and
 * reconcile would report every movement of it as missing. The price is a short ACCESS EXCLUSIVE
 * lock on `transactions` (catalog changes only), taken with a lock timeout so a long reader makes
 * the move wait for a later round instead of queueing the ledger's writes behind it.
 * ATTACH would scan the month to check its range while that lock is held; a validated CHECK
 * constraint with the month's bounds, added beforehand without blocking writes (NOT VALID, then
 * VALIDATE under SHARE UPDATE EXCLUSIVE), lets PostgreSQL skip the scan.
 *
 * Every step looks at the catalog first and does only what is missing, so a round finishes
 * whatever an earlier one (or an operator, or an interrupted DETACH ... CONCURRENTLY) left
 * half done: a bounds constraint not yet validated, a partition pending detach (finalized first:
 * it is invisible already), a table detached but still in the hot schema, or moved to `archive`
 * but not attached.
 *
 * Invariant the history API relies on: every archived row is older than every hot row. Months
 * move oldest first, and a round stops at the first month it cannot move.
 */
import type { Queryable, Sql } from './index.js';

export const ARCHIVE_SCHEMA = 'archive';
const DAY_MS = 86_400_000;
/** Months moved or dropped per round at most: a backlog is worked off over several rounds. */
export const LIFECYCLE_MONTHS_PER_ROUND = 6;
/** How long a move waits for its locks on `transactions` before leaving the month to a later round. */
export const MOVE_LOCK_TIMEOUT_MS = 2_000;
/** The validation scan of one month (SHARE UPDATE EXCLUSIVE: reads and writes go on meanwhile). */
export const VALIDATE_TIMEOUT_MS = 30 * 60_000;
/**
 * Clocks of the maintainer and of the API may disagree; a month is archived by the maintainer's
 * clock, so the API widens the hot boundary by this much before it concludes that a range
 * cannot reach the archive.
 */
const CLOCK_SKEW_MARGIN_MS = DAY_MS;

function monthStart(d: Date, offset: number): Date {
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + offset, 1));
}

export function partitionName(month: Date): string {
  return `transactions_${month.getUTCFullYear()}_${String(month.getUTCMonth() + 1).padStart(2, '0')}`;
}

export async function ensurePartitions(sql: Sql, opts: { aheadMonths: number; now?: Date }): Promise<string[]> {
  const now = opts.now ?? new Date();
  const created: string[] = [];
  for (let i = -1; i <= opts.aheadMonths; i++) {
    const from = monthStart(now, i);
    const to = monthStart(now, i + 1);
    const name = partitionName(from);
    // In the hot schema only (the search path): an archived month of the same name is no hot partition.
    const [found] = await sql<{ exists: boolean }[]>`select to_regclass(${name}) is not null as exists`;
    if (found!.exists) continue;
    // Identifiers come from dates we formatted ourselves; values are ISO timestamps.
    await sql.unsafe(
      `create table if not exists ${name} partition of transactions for values from ('${from.toISOString()}') to ('${to.toISOString()}')`,
    );
    created.push(name);
  }
  return created;
}

export async function listPartitions(sql: Sql): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`
    select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
    where i.inhparent = 'transactions'::regclass order by 1`;
  return rows.map((r) => r.name);
}

export async function listArchivedPartitions(sql: Sql): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`
    select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
    where i.inhparent = 'archive.transactions'::regclass order by 1`;
  return rows.map((r) => r.name);
}

/**
 * Rows created at or after this instant are never in the archive (the hot period, widened by the
 * clock-skew margin): a history page whose range starts there need not look at the archive.
 */
export function hotSince(now: Date, hotDays: number): Date {
  return new Date(now.getTime() - hotDays * DAY_MS + CLOCK_SKEW_MARGIN_MS);
}

/** A month table of the history in the hot schema or in `archive`, as the catalog shows it now. */
interface MonthTable {
  name: string;
  from: Date;
  to: Date;
  archived: boolean;
  /** attached to the `transactions` parent of its own schema (possibly pending detach) */
  attached: boolean;
  detachPending: boolean;
  /** the `<name>_bounds` check: absent, added NOT VALID, or validated */
  bounds: 'none' | 'not_valid' | 'valid';
}

async function monthTables(sql: Queryable): Promise<MonthTable[]> {
  const rows = await sql<{ name: string; archived: boolean; attached: boolean; detach_pending: boolean; bounds_valid: boolean | null }[]>`
    select c.relname as name, n.nspname = ${ARCHIVE_SCHEMA} as archived,
      coalesce(p.relname = 'transactions' and p.relnamespace = c.relnamespace, false) as attached,
      coalesce(i.inhdetachpending, false) as detach_pending, k.convalidated as bounds_valid
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    left join pg_inherits i on i.inhrelid = c.oid
    left join pg_class p on p.oid = i.inhparent
    left join pg_constraint k on k.conrelid = c.oid and k.conname = c.relname || '_bounds'
    where c.relkind = 'r' and n.nspname in (current_schema(), ${ARCHIVE_SCHEMA}) and c.relname ~ '^transactions_[0-9]{4}_[0-9]{2}$'
    order by c.relname, n.nspname`;
  return rows.map((r) => {
    const from = new Date(Date.UTC(Number(r.name.slice(13, 17)), Number(r.name.slice(18, 20)) - 1, 1));
    return {
      name: r.name, from, to: monthStart(from, 1), archived: r.archived, attached: r.attached, detachPending: r.detach_pending,
      bounds: r.bounds_valid === null ? 'none' : r.bounds_valid ? 'valid' : 'not_valid',
    };
  });
}

const qualified = (t: MonthTable) => (t.archived ? `${ARCHIVE_SCHEMA}.${t.name}` : t.name);
const range = (t: MonthTable) => `from ('${t.from.toISOString()}') to ('${t.to.toISOString()}')`;

/** A validated CHECK of the month's bounds, so the ATTACH in the move skips its scan. */
async function ensureBounds(sql: Sql, t: MonthTable, lockTimeoutMs: number): Promise<void> {
  if (t.bounds === 'none') {
    await sql.begin(async (tx) => {
      await tx.unsafe(`set local lock_timeout = ${lockTimeoutMs}`);
      await tx.unsafe(
        `alter table ${qualified(t)} add constraint ${t.name}_bounds check (created_at >= '${t.from.toISOString()}' and created_at < '${t.to.toISOString()}') not valid`,
      );
    });
  }
  if (t.bounds !== 'valid') {
    await sql.begin(async (tx) => {
      await tx.unsafe(`set local statement_timeout = ${VALIDATE_TIMEOUT_MS}`);
      await tx.unsafe(`alter table ${qualified(t)} validate constraint ${t.name}_bounds`);
    });
  }
}

/**
 * A DETACH ... CONCURRENTLY that did not finish (cancelled, or its session died) leaves the
 * partition pending detach: already invisible to new queries, and unalterable until finalized.
 */
async function finishPendingDetach(sql: Sql, t: MonthTable, lockTimeoutMs: number): Promise<MonthTable> {
  if (!t.detachPending) return t;
  await sql.begin(async (tx) => {
    await tx.unsafe(`set local lock_timeout = ${lockTimeoutMs}`);
    await tx.unsafe(`alter table transactions detach partition ${t.name} finalize`);
  });
  return { ...t, attached: false, detachPending: false };
}

/** Detach, move to `archive` and attach there: one transaction. */
async function moveToArchive(sql: Sql, t: MonthTable, lockTimeoutMs: number): Promise<void> {
  await sql.begin(async (tx) => {
    await tx.unsafe(`set local lock_timeout = ${lockTimeoutMs}`);
    if (!t.archived) {
      if (t.attached) await tx.unsafe(`alter table transactions detach partition ${t.name}`);
      await tx.unsafe(`alter table ${t.name} set schema ${ARCHIVE_SCHEMA}`);
    }
    await tx.unsafe(`alter table ${ARCHIVE_SCHEMA}.transactions attach partition ${ARCHIVE_SCHEMA}.${t.name} for values ${range(t)}`);
  });
}

export interface LifecycleOptions {
  now: Date;
  /** a month moves to the archive once its whole range is older than this */
  hotDays: number;
  /** an archived month is dropped once its whole range is older than this */
  warmDays: number;
  maxMonths?: number;
  lockTimeoutMs?: number;
}

function checkPeriods(o: LifecycleOptions): void {
  // The previous month stays hot for late writes (ensurePartitions), so does a hold's row until it resolves.
  if (!(o.hotDays >= 62 && o.warmDays > o.hotDays)) throw new RangeError(`partition lifecycle: need hotDays >= 62 and warmDays > hotDays (got ${o.hotDays}, ${o.warmDays})`);
}

/**
 * Moves the hot months older than the hot period to the archive, oldest first, and finishes
 * moves left half done. Returns the months it moved. Throws at the first month it cannot move
 * (a lock timeout, say): the next round continues from there.
 */
export async function archivePartitions(sql: Sql, o: LifecycleOptions): Promise<string[]> {
  checkPeriods(o);
  const hotUntil = o.now.getTime() - o.hotDays * DAY_MS;
  const due = (await monthTables(sql))
    .filter((t) => !(t.archived && t.attached) && t.to.getTime() <= hotUntil)
    .sort((a, b) => a.from.getTime() - b.from.getTime())
    .slice(0, o.maxMonths ?? LIFECYCLE_MONTHS_PER_ROUND);
  const lockTimeoutMs = o.lockTimeoutMs ?? MOVE_LOCK_TIMEOUT_MS;
  const moved: string[] = [];
  for (const found of due) {
    const t = await finishPendingDetach(sql, found, lockTimeoutMs);
    await ensureBounds(sql, t, lockTimeoutMs);
    await moveToArchive(sql, t, lockTimeoutMs);
    moved.push(t.name);
  }
  return moved;
}

/** Drops the archived months older than the warm period, oldest first. Returns their names. */
export async function dropArchivedPartitions(sql: Sql, o: LifecycleOptions): Promise<string[]> {
  checkPeriods(o);
  const warmUntil = o.now.getTime() - o.warmDays * DAY_MS;
  const due = (await monthTables(sql))
    .filter((t) => t.archived && t.attached && t.to.getTime() <= warmUntil)
    .sort((a, b) => a.from.getTime() - b.from.getTime())
    .slice(0, o.maxMonths ?? LIFECYCLE_MONTHS_PER_ROUND);
  const dropped: string[] = [];
  for (const t of due) {
    await sql.begin(async (tx) => {
      await tx.unsafe(`set local lock_timeout = ${o.lockTimeoutMs ?? MOVE_LOCK_TIMEOUT_MS}`);
      await tx.unsafe(`drop table if exists ${ARCHIVE_SCHEMA}.${t.name}`);
    });
    dropped.push(t.name);
  }
  return dropped;
}
