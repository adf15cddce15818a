/**
 * A user's history, newest first, from the monthly-partitioned transactions table.
 * One index: the primary key (user_id, created_at, id), which includes every column a page
 * returns (012_history_one_index.sql), scanned backward, serves every page as an index-only scan;
 * pages of completed items only (status=completed) check the included status. Keyset cursors
 * continue after (created_at, id) without counting skipped rows.
 *
 * Months older than the hot period live in archive.transactions (src/db/partitions.ts). A page
 * is read from the hot partitions first; only a page they cannot fill, whose range reaches back
 * past the hot period, is read again over both (one statement: a month moves between them in one
 * transaction, so the statement sees it exactly once). A full page from the hot partitions is
 * the right page because every archived row is older than every hot row.
 */
import type { Queryable, Sql } from '../db/index.js';
import type { HistoryRow } from '../ledger/types.js';
import type { CommitEffects } from '../ledger/engine.js';
import type { Platform } from '../platform.js';
import { cacheKey } from '../cache/index.js';
import { parseId } from '../shared/ids.js';

/** The first page of every user's history is cached (transactions:{id}:recent) with this many items. */
export const RECENT_ITEMS = 100;

export interface HistoryQuery {
  userId: string;
  limit: number;
  offset?: number;
  cursor?: { createdAt: Date; id: string };
  currency?: string;
  type?: HistoryRow['type'];
  from?: Date;
  /** exclusive */
  to?: Date;
  status?: HistoryRow['status'];
  /**
   * No row created at or after this instant is archived (hotSince in src/db/partitions.ts): a
   * page whose `from` is there never reads the archive. Unset: a page the hot partitions cannot
   * fill always does.
   */
  hotSince?: Date;
}

export interface HistoryItem {
  id: string;
  type: HistoryRow['type'];
  direction: HistoryRow['direction'];
  amount: bigint;
  currency: string;
  status: HistoryRow['status'];
  counterparty?: string;
  note?: string;
  walletId: string;
  createdAt: Date;
}

export function encodeCursor(item: { createdAt: Date; id: string }): string {
  return Buffer.from(`${item.createdAt.toISOString()}|${item.id}`).toString('base64url');
}

export function decodeCursor(cursor: string): { createdAt: Date; id: string } | undefined {
  const [at, id, ...rest] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  if (rest.length || !id || !at || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(at)) return undefined;
  const createdAt = new Date(at);
  // only cursors we could have issued: our ISO format, a real instant, one of our ids
  if (Number.isNaN(createdAt.getTime()) || createdAt.toISOString() !== at || !parseId(id)) return undefined;
  return { createdAt, id };
}

/**
 * The first page with its version: the sum of the versions of the user's wallets, read in the
 * same statement (one snapshot). Every history change changes one of those wallets, so the
 * version orders the page's states and the cache can compare-and-set it like a balance.
 */
export type RecentPage = { items: HistoryItem[]; nextCursor?: string; version: bigint };

async function loadRecentPage(sql: Sql, userId: string): Promise<RecentPage> {
  const read = (withArchive: boolean) => sql`
    with v as (select coalesce(sum(version), 0)::bigint as version from accounts where user_id = ${userId} and kind = 'user')
    select v.version as page_version, t.* from v left join lateral (
      select id, type, direction, amount, currency, status, counterparty, note, wallet_id, created_at
      from ${historySource(sql, withArchive)} where user_id = ${userId} order by created_at desc, id desc limit ${RECENT_ITEMS + 1}
    ) t on true`;
  let rows = await read(false);
  // a user with fewer recent items than a page: the rest of the page may be archived
  if (rows.filter((r) => r.id !== null).length <= RECENT_ITEMS) rows = await read(true);
  const page = pageFrom(rows.filter((r) => r.id !== null), RECENT_ITEMS);
  return { ...page, version: rows[0]!.page_version as bigint };
}

const HISTORY_COLUMNS = ['id', 'user_id', 'type', 'direction', 'amount', 'currency', 'status', 'counterparty', 'note', 'wallet_id', 'created_at'];

/** The hot partitions, or the hot and the archived ones as one relation (`transactions` named first: see reconcile). */
function historySource(sql: Queryable, withArchive: boolean) {
  return withArchive
    ? sql`(select ${sql(HISTORY_COLUMNS)} from transactions union all select ${sql(HISTORY_COLUMNS)} from archive.transactions) as h`
    : sql`transactions as h`;
}

/**
 * The status filter as a literal, from a closed set (it was written for the partial index that
 * 012_history_one_index.sql replaced, whose plans had to prove its predicate; kept: one plan per
 * status, and nothing else is accepted).
 */
function statusFilter(sql: Queryable, status: HistoryRow['status'] | undefined) {
  switch (status) {
    case undefined: return sql``;
    case 'completed': return sql`and status = 'completed'`;
    case 'pending': return sql`and status = 'pending'`;
    case 'voided': return sql`and status = 'voided'`;
    default: throw new RangeError(`not a history status: ${String(status)}`);
  }
}

/**
 * The most read page: newest first, no filters, RECENT_ITEMS long, through the cache
 * (transactions:{id}:recent), kept right on every commit by reviseRecent. The API slices it to
 * the requested limit; the cache warmer calls it to load the same key.
 */
export async function loadRecent(p: Platform, userId: string, shard: number, read?: ReplicaRead): Promise<RecentPage> {
  const key = cacheKey.recentTransactions(userId);
  const found = await p.cache.getVersioned<RecentPage>([key], async () => {
    const { sql, replica } = historyReader(p, userId, shard, read);
    const page = await loadRecentPage(sql, userId);
    // a replica's page is answered, never cached (src/cache/index.ts, Loaded)
    return replica ? { values: new Map([[key, page]]), store: false } : new Map([[key, page]]);
  });
  return found.get(key)!;
}

/** A read a user asked for (the API), which a replica may serve: its Wallet-Consistency header. */
export interface ReplicaRead {
  consistency: unknown;
}

/**
 * Where a history read goes: with `read` (the API), a replica that has replayed the caller's last
 * write when one qualifies (src/db/index.ts, Cluster.reader); without (the cache warmer, which
 * fills the cache), the primary.
 */
export function historyReader(p: Platform, userId: string, shard: number, read?: ReplicaRead): { sql: Sql; replica: boolean } {
  const cluster = p.db.forShard(shard);
  if (!read) return { sql: cluster.sql, replica: false };
  const sql = cluster.reader('history', p.consistency.minLsn(userId, cluster.name, read.consistency));
  return { sql, replica: sql !== cluster.sql };
}

/**
 * The first page after a commit, computed from the cached one: the new rows inserted in order,
 * status changes applied, cut to RECENT_ITEMS. Exact when the cached page was the state just
 * before the commit (the cache checks its version): every row outside it is older than its last item.
 */
export function mergeRecent(page: RecentPage, added: HistoryRow[], changed: CommitEffects['historyStatus'], version: bigint): RecentPage {
  const byId = new Map(page.items.map((i) => [i.id, i]));
  for (const r of added) {
    byId.set(r.id, {
      id: r.id, type: r.type, direction: r.direction, amount: r.amount, currency: r.currency, status: r.status,
      ...(r.counterparty !== null ? { counterparty: r.counterparty } : {}),
      ...(r.note !== null ? { note: r.note } : {}),
      walletId: r.walletId, createdAt: r.createdAt,
    });
  }
  for (const c of changed) {
    const item = byId.get(c.id);
    if (item) byId.set(c.id, { ...item, status: c.status, amount: c.amount });
  }
  const all = [...byId.values()].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  const items = all.slice(0, RECENT_ITEMS);
  const more = page.nextCursor !== undefined || all.length > RECENT_ITEMS;
  return more ? { items, nextCursor: encodeCursor(items[items.length - 1]!), version } : { items, version };
}

/** Keeps the cached first pages of the users a commit touched right (src/platform.ts wires it to the engine). */
export function reviseRecent(p: Pick<Platform, 'cache'>, effects: Pick<CommitEffects, 'history' | 'historyStatus' | 'historyVersions'>): Promise<void> {
  const added = new Map<string, HistoryRow[]>();
  const changed = new Map<string, CommitEffects['historyStatus']>();
  for (const r of effects.history) added.set(r.userId, [...(added.get(r.userId) ?? []), r]);
  for (const c of effects.historyStatus) changed.set(c.userId, [...(changed.get(c.userId) ?? []), c]);
  return p.cache.revise<RecentPage>(
    [...effects.historyVersions].map(([user, v]) => ({
      key: cacheKey.recentTransactions(user),
      before: v.before,
      after: v.after,
      update: (page) => mergeRecent(page, added.get(user) ?? [], changed.get(user) ?? [], v.after),
    })),
  );
}

export async function historyPage(sql: Sql, q: HistoryQuery): Promise<{ items: HistoryItem[]; nextCursor?: string }> {
  const hot = await historyRows(sql, q, false);
  const mayReachArchive = !q.from || !q.hotSince || q.from < q.hotSince;
  if (hot.length > q.limit || !mayReachArchive) return pageFrom(hot, q.limit);
  return pageFrom(await historyRows(sql, q, true), q.limit);
}

/**
 * Up to limit + 1 rows of the page, from the hot partitions or from both (exported for the
 * EXPLAIN tests). `created_at <= cursor` beside the row comparison lets months be pruned.
 */
export function historyRows(sql: Queryable, q: HistoryQuery, withArchive: boolean) {
  return sql`
    select id, type, direction, amount, currency, status, counterparty, note, wallet_id, created_at
    from ${historySource(sql, withArchive)}
    where user_id = ${q.userId}
      ${statusFilter(sql, q.status)}
      ${q.currency ? sql`and currency = ${q.currency}` : sql``}
      ${q.type ? sql`and type = ${q.type}` : sql``}
      ${q.from ? sql`and created_at >= ${q.from}` : sql``}
      ${q.to ? sql`and created_at < ${q.to}` : sql``}
      ${q.cursor ? sql`and created_at <= ${q.cursor.createdAt} and (created_at, id) < (${q.cursor.createdAt}, ${q.cursor.id})` : sql``}
    order by created_at desc, id desc
    limit ${q.limit + 1} ${q.offset ? sql`offset ${q.offset}` : sql``}`;
}

/** rows fetched with limit + 1 → the page, with a cursor when there are more */
function pageFrom(rows: readonly Record<string, any>[], limit: number): { items: HistoryItem[]; nextCursor?: string } {
  const items: HistoryItem[] = rows.slice(0, limit).map((r) => ({
    id: r.id,
    type: r.type,
    direction: r.direction,
    amount: r.amount,
    currency: r.currency,
    status: r.status,
    ...(r.counterparty !== null ? { counterparty: r.counterparty } : {}),
    ...(r.note !== null ? { note: r.note } : {}),
    walletId: r.wallet_id,
    createdAt: r.created_at,
  }));
  return rows.length > limit ? { items, nextCursor: encodeCursor(items[items.length - 1]!) } : { items };
}
