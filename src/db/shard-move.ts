/**
 * `wallet shards move --shard N --to CLUSTER`: a logical shard leaves its cluster (the source)
 * for another one (the target) while the platform runs. DESIGN.md: "Adding capacity = moving
 * logical shards to a new cluster online; no key is ever rehashed".
 *
 * 1. Plan: the source is where every process routes the shard now (topology + overrides, see
 *    src/db/shard-map.ts). Refused up front: open holds on the shard's wallets (waited for up to
 *    holdWaitMs), and payments between the shard's users and users of other shards (payments
 *    between clusters are not enabled, so a shard with such links cannot leave alone).
 * 2. Capture: triggers on the source log the key of every row of the shard that changes from now
 *    on (shard_move_log), so later passes copy what changed instead of everything again.
 * 3. Copy: every row of the shard, table by table from a snapshot (cursor), upserted on the
 *    target in chunks. Rows are read and written as JSON text that JavaScript never parses, so
 *    money columns stay exact. History months go to the target's hot or archived partition.
 * 4. Catch-up: the logged keys, re-read and upserted (or deleted), until a round is small.
 * 5. Fence (the short window starts): triggers on the source refuse every write of the shard's
 *    rows (23514, shard_fence_N). Creating them waits for the writes in flight, so after the
 *    fence commits nothing of the shard changes on the source. The ledger engine parks commands
 *    that meet it and runs them where the shard lives after the flip (src/ledger/fence.ts).
 * 6. Final pass: the rest of the log. Holds and payment links are checked again (refused: the
 *    fence goes, the move is aborted, nothing moved).
 * 7. Money: each wallet's balance leaves the source's books (wallet → source clearing) and enters
 *    the target's (target clearing → wallet) under one id mov_…, in two transactions, the
 *    source's first: each cluster's books stay exact (debits = credits, balance = sum of its
 *    ledger rows) and over all clusters clearing nets to zero, as for a transfer between
 *    clusters. Ledger rows themselves stay where they were written; a move carries balances,
 *    not ledger history. The history rows copied to the target are vouched for by the source's
 *    ledger (shard_arrivals tells reconcile which they are).
 * 8. Flip: a shard_map row with a new version on every cluster; processes pick it up within
 *    SHARD_MAP_POLL_MS, or at once when they meet the fence. The window ends.
 * 9. Cleanup, after a grace period for processes that have not re-read the map: the source
 *    deletes the shard's rows but its users and their closed accounts (its ledger rows name the
 *    accounts). The fence stays for good (deletes pass again), so a process with a stale map can
 *    neither write there nor move money there; reconcile checks the history of a departed shard
 *    where it lives now. A later move back onto this cluster upserts over what stayed.
 *
 * Interrupted: before the money step the move is aborted (fence removed; the copies on the
 * target are inert: no balances, no routing). After it, the shard stays fenced and the command,
 * run again, continues the same move from its journal (shard_moves, on the source): the legs not
 * opened yet, the flip, the cleanup.
 */
import type { Cluster, Db, Queryable, Sql } from './index.js';
import { listArchivedPartitions, listPartitions } from './partitions.js';
import { newId, SHARD_COUNT } from '../shared/ids.js';
import { pickSub, systemAccountId } from '../ledger/accounts.js';

export interface MoveOptions {
  shard: number;
  /** the target cluster's name */
  to: string;
  /** LEDGER_SYSTEM_SUB_ACCOUNTS: clearing sub-accounts per currency */
  subAccounts: number;
  /** how long to wait for open holds on the shard's wallets before refusing; default 0 */
  holdWaitMs?: number;
  /** rows per read and per write; default 1000 */
  chunkRows?: number;
  /**
   * after the flip, how long the source keeps the shard's rows for processes that have not
   * re-read the map yet (reads); then they are deleted. Default 3 s (3 × SHARD_MAP_POLL_MS).
   */
  graceMs?: number;
  /** catch-up rounds at most before fencing; default 10 */
  catchUpRounds?: number;
  /** a catch-up round that copies fewer keys than this is small enough to fence; default 200 */
  fenceBelowKeys?: number;
  onProgress?: (p: MoveProgress) => void;
  /** runs while the fence holds, before the final pass (tests hold the window open with it) */
  whileFenced?: () => Promise<void>;
  /** runs when the balances have left the source, before they enter the target (tests interrupt here) */
  afterClose?: () => Promise<void>;
}

export type MovePhase = 'plan' | 'copy' | 'catch-up' | 'fence' | 'final' | 'money' | 'flip' | 'cleanup' | 'done';

export interface MoveProgress {
  phase: MovePhase;
  done: number;
  total: number;
  detail?: string;
}

export interface MoveResult {
  moveId: string;
  shard: number;
  from: string;
  to: string;
  /** rows upserted or deleted on the target over all passes */
  rows: number;
  /** wallets whose balance moved (those with a balance) */
  wallets: number;
  /** per currency, minor units as decimal strings */
  moved: Record<string, string>;
  /** from the fence to the flip */
  fencedMs: number;
  version: bigint;
}

/** A move the operator must fix something for; nothing moved. */
export class MoveRefused extends Error {}

interface MovedTable {
  name: string;
  key: readonly string[];
  /** how the shard's rows are found: the shard column, or (login directory) the email's hash */
  by: 'shard' | 'email';
}

/** Every table with rows of a user's shard, parents before children (foreign keys on the target). */
const MOVED: readonly MovedTable[] = [
  { name: 'users', key: ['id'], by: 'shard' },
  { name: 'accounts', key: ['id'], by: 'shard' },
  { name: 'vault_cards', key: ['token'], by: 'shard' },
  { name: 'payment_methods', key: ['id'], by: 'shard' },
  { name: 'topups', key: ['id'], by: 'shard' },
  { name: 'payments', key: ['id'], by: 'shard' },
  { name: 'refunds', key: ['id'], by: 'shard' },
  { name: 'idempotency_keys', key: ['user_id', 'key'], by: 'shard' },
  { name: 'fraud_reviews', key: ['id'], by: 'shard' },
  { name: 'notification_preferences', key: ['user_id'], by: 'shard' },
  { name: 'webhook_endpoints', key: ['id'], by: 'shard' },
  { name: 'webhook_deliveries', key: ['id'], by: 'shard' },
  { name: 'transactions', key: ['user_id', 'created_at', 'id'], by: 'shard' },
  { name: 'email_directory', key: ['email'], by: 'email' },
];

/**
 * The fenced tables, in the order the ledger's batches write them (then the others): the fence
 * locks them in this order, so it waits behind a batch instead of deadlocking with it. Not
 * fenced: outbox (the source's relay still marks its rows sent), audit_log (one chain per
 * cluster), login_failures and consumer_inbox (no shard).
 */
const FENCE_ORDER = ['payments', 'ledger_transfers', 'transactions', 'topups', 'fraud_reviews', 'refunds', 'idempotency_keys', 'accounts', 'users', 'email_directory', 'vault_cards', 'payment_methods', 'notification_preferences', 'webhook_endpoints', 'webhook_deliveries'] as const;

/** rows of these may be deleted on a source; a target wipes its stale copies of them first */
const DELETABLE = ['webhook_deliveries', 'webhook_endpoints', 'idempotency_keys', 'notification_preferences', 'email_directory'] as const;

const MOVE_LOCK = 72_616_011;
const LOCK_TIMEOUT_MS = 2000;
const LOCK_ATTEMPTS = 15;

type Tx = Queryable;

const intArray = (xs: readonly number[]) => `{${xs.map((x) => Math.trunc(x)).join(',')}}`;
const shardExpr = (t: Pick<MovedTable, 'by'>, row: string) => (t.by === 'email' ? `wallet_hash_shard(${row}.email)` : `${row}.shard`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const codeOf = (err: unknown) => (err as { code?: string })?.code;

/** the mover's writes pass the fence (shard_fence_refuse checks this setting) */
async function bypassFence(tx: Tx): Promise<void> {
  await tx`select set_config('wallet.shard_move', 'on', true)`;
}

/**
 * Runs fn in a transaction holding SHARE ROW EXCLUSIVE on every fenced table (writers wait,
 * readers do not), after the writes in flight on them have finished. Lock timeouts and deadlocks
 * with the ledger's batches are retried.
 */
async function withTableLocks<T>(sql: Sql, fn: (tx: Tx) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return (await sql.begin(async (tx) => {
        await tx`select set_config('lock_timeout', ${`${LOCK_TIMEOUT_MS}ms`}, true)`;
        await tx`select pg_advisory_xact_lock(${MOVE_LOCK})`;
        await tx.unsafe(`lock table ${FENCE_ORDER.join(', ')} in share row exclusive mode`);
        return fn(tx);
      })) as T;
    } catch (err) {
      if (attempt >= LOCK_ATTEMPTS || !['55P03', '40P01'].includes(codeOf(err) ?? '')) throw err;
      await sleep(50 * attempt);
    }
  }
}

/**
 * Changes this cluster's move state (change), then makes its triggers match it: the fence
 * (shard_fences), the delete fence (deletes), and change capture (moves copying or fenced).
 * CREATE OR REPLACE TRIGGER takes the same lock as creating one: readers are never blocked.
 */
async function changeTriggers(sql: Sql, change: (tx: Tx) => Promise<unknown>): Promise<void> {
  await withTableLocks(sql, async (tx) => {
    await change(tx);
    const fences = await tx<{ shard: number; deletes: boolean }[]>`select shard, deletes from shard_fences`;
    const capturing = await tx<{ shard: number }[]>`select shard from shard_moves where status in ('copying', 'fenced')`;
    const fenced = intArray(fences.map((f) => f.shard));
    const deletes = intArray(fences.filter((f) => f.deletes).map((f) => f.shard));
    const captured = intArray(capturing.map((c) => c.shard));
    // identifiers and arrays are ours (table names above, integers): one round trip for all
    const ddl: string[] = [];
    for (const name of FENCE_ORDER) {
      const spec = MOVED.find((t) => t.name === name) ?? { name, key: [], by: 'shard' as const };
      const of = (row: string) => shardExpr(spec, row);
      ddl.push(`create or replace trigger shard_fence before insert or update on ${name} for each row
        when (${of('new')} = any('${fenced}'::int[])) execute function shard_fence_refuse('${spec.by}')`);
      ddl.push(`create or replace trigger shard_fence_delete before delete on ${name} for each row
        when (${of('old')} = any('${deletes}'::int[])) execute function shard_fence_refuse('${spec.by}')`);
      if (!spec.key.length) continue;
      const args = [name, spec.by, ...spec.key].map((a) => `'${a}'`).join(', ');
      ddl.push(`create or replace trigger shard_move_capture after insert or update on ${name} for each row
        when (${of('new')} = any('${captured}'::int[])) execute function shard_move_capture(${args})`);
      ddl.push(`create or replace trigger shard_move_capture_delete after delete on ${name} for each row
        when (${of('old')} = any('${captured}'::int[])) execute function shard_move_capture(${args})`);
    }
    await tx.unsafe(ddl.join(';\n')).simple();
  });
}

interface Journal {
  id: string;
  status: 'copying' | 'fenced' | 'closed' | 'done' | 'aborted';
  to_cluster: string;
}

type Report = (phase: MovePhase, done: number, total: number, detail?: string) => void;

interface Plan {
  shard: number;
  source: Cluster;
  target: Cluster;
  moveId: string;
  /** an earlier run closed the wallets on the source already: only forward from there */
  resuming: boolean;
}

/** Moves one shard; see the top of this file. The caller's db must see every cluster. */
export async function moveShard(db: Db, opts: MoveOptions): Promise<MoveResult> {
  const report: Report = (phase, done, total, detail) => opts.onProgress?.({ phase, done, total, ...(detail ? { detail } : {}) });
  const plan = await planMove(db, opts);
  report('plan', 1, 1, `${plan.source.name} → ${plan.target.name}`);
  // one run per shard at a time (held on a connection of the source for the whole move)
  const lock = await plan.source.sql.reserve();
  try {
    const [held] = await lock<{ ok: boolean }[]>`select pg_try_advisory_lock(${MOVE_LOCK}, ${plan.shard}) as ok`;
    if (!held!.ok) throw new MoveRefused(`another process is moving shard ${plan.shard} right now`);
    try {
      return await runMove(db, plan, opts, report);
    } finally {
      await lock`select pg_advisory_unlock(${MOVE_LOCK}, ${plan.shard})`.catch(() => undefined);
    }
  } finally {
    lock.release();
  }
}

async function runMove(db: Db, plan: Plan, opts: MoveOptions, report: Report): Promise<MoveResult> {
  const { shard, source, target, moveId } = plan;
  const copier = new Copier(source, target, shard, opts.chunkRows ?? 1000);
  let rows = 0;
  let fencedAt = Date.now();
  try {
    if (plan.resuming) {
      await copier.loadPartitions();
      rows += await copier.drain();
    } else {
      rows += await copyAndCatchUp(plan, copier, opts, report);
      rows += await fenceAndClose(plan, copier, opts, report, () => (fencedAt = Date.now()));
    }
  } catch (err) {
    if (!plan.resuming) await abort(source, target, shard, moveId, err).catch(() => undefined);
    throw err;
  }
  // 7b. ... and the balances enter the target
  const moved = await openWallets(source.sql, target.sql, moveId);
  report('money', 1, 1, `${moved.wallets} wallets`);
  // 8. flip
  const version = await flip(db, shard, source, target);
  const fencedMs = Date.now() - fencedAt;
  report('flip', 1, 1, `version ${version}`);
  await db.refreshShardMap();
  // 9. the fence stays for good; deletes pass again (the cleanup, maintenance purges)
  await changeTriggers(source.sql, (tx) => tx`update shard_fences set deletes = false where shard = ${shard}`);
  await source.sql`delete from shard_move_log where shard = ${shard}`;
  report('cleanup', 0, 1);
  await sleep(opts.graceMs ?? 3000);
  await removeFromSource(source.sql, shard);
  await source.sql`update shard_moves set status = 'done', updated_at = now() where id = ${moveId}`;
  report('done', 1, 1);
  return { moveId, shard, from: source.name, to: target.name, rows, wallets: moved.wallets, moved: moved.amounts, fencedMs, version };
}

/** 1. Where the shard is, where it goes, and whether an earlier run of this move is unfinished. */
async function planMove(db: Db, opts: MoveOptions): Promise<Plan> {
  const { shard } = opts;
  if (!Number.isInteger(shard) || shard < 0 || shard >= SHARD_COUNT) throw new MoveRefused(`--shard must be an integer from 0 to ${SHARD_COUNT - 1}`);
  await db.refreshShardMap();
  const target = db.clusters.find((c) => c.name === opts.to);
  if (!target) throw new MoveRefused(`no cluster named ${opts.to} (clusters: ${db.clusters.map((c) => c.name).join(', ')})`);
  // its journal is on its source, which after the flip is no longer where the shard is routed
  const unfinished = await findUnfinished(db, shard);
  if (unfinished && unfinished.journal.to_cluster !== target.name) {
    throw new MoveRefused(`shard ${shard} has an unfinished move ${unfinished.journal.id} to ${unfinished.journal.to_cluster}; run it again with --to ${unfinished.journal.to_cluster} to finish it`);
  }
  const source = unfinished?.cluster ?? db.forShard(shard);
  if (target === source) throw new MoveRefused(`shard ${shard} is on ${source.name} already`);
  const resuming = unfinished?.journal.status === 'closed';
  if (!resuming) {
    await waitForHolds(source.sql, shard, opts.holdWaitMs ?? 0);
    await refuseSplitPayments(source.sql, shard);
  }
  return { shard, source, target, moveId: unfinished?.journal.id ?? newId('mov', shard), resuming };
}

async function findUnfinished(db: Db, shard: number): Promise<{ cluster: Cluster; journal: Journal } | undefined> {
  for (const cluster of db.clusters) {
    const [journal] = await cluster.sql<Journal[]>`select id, status, to_cluster from shard_moves where shard = ${shard} and status in ('copying', 'fenced', 'closed')`;
    if (journal) return { cluster, journal };
  }
  return undefined;
}

/** 2-4. Capture on, every row copied, then the changes until a round is small. */
async function copyAndCatchUp({ shard, source, target, moveId }: Plan, copier: Copier, opts: MoveOptions, report: Report): Promise<number> {
  await changeTriggers(source.sql, async (tx) => {
    await tx`delete from shard_move_log where shard = ${shard}`;
    // an attempt interrupted before the money step starts over: writes flow while it copies
    await tx`delete from shard_fences where shard = ${shard}`;
    await tx`insert into shard_moves (id, shard, from_cluster, to_cluster, status) values (${moveId}, ${shard}, ${source.name}, ${target.name}, 'copying')
      on conflict (id) do update set status = 'copying', updated_at = now()`;
  });
  await target.sql`insert into shard_arrivals (move_id, shard, from_cluster) values (${moveId}, ${shard}, ${source.name}) on conflict (move_id) do nothing`;
  await copier.prepareTarget();
  await copier.loadPartitions();
  let rows = await copier.copyAll((done, total) => report('copy', done, total));
  const rounds = opts.catchUpRounds ?? 10;
  for (let round = 1; round <= rounds; round++) {
    const n = await copier.drain();
    rows += n;
    report('catch-up', round, rounds, `${n} changed rows`);
    if (n < (opts.fenceBelowKeys ?? 200)) break;
  }
  return rows;
}

/** 5-7a. The fence, the final pass, the checks again, and the balances out of the source. */
async function fenceAndClose({ shard, source, moveId }: Plan, copier: Copier, opts: MoveOptions, report: Report, fenced: () => void): Promise<number> {
  report('fence', 0, 1);
  await changeTriggers(source.sql, async (tx) => {
    await tx`insert into shard_fences (shard, deletes) values (${shard}, true) on conflict (shard) do update set deletes = true, since = now()`;
    await tx`update shard_moves set status = 'fenced', updated_at = now() where id = ${moveId}`;
  });
  fenced();
  report('fence', 1, 1);
  await opts.whileFenced?.();
  const rows = await copier.drain();
  report('final', 1, 1);
  // nothing of the shard can change now: what these find is final
  await refuseOpenHolds(source.sql, shard);
  await refuseSplitPayments(source.sql, shard);
  // from here on the move can only go forward
  await closeWallets(source.sql, shard, moveId, opts.subAccounts);
  await opts.afterClose?.();
  return rows;
}

/**
 * `wallet shards abort`: an unfinished move that has not moved money yet is given up (its fence
 * goes, writes flow again). One that has is refused: run the move again to finish it.
 */
export async function abortShardMove(db: Db, shard: number): Promise<{ moveId: string; from: string; to: string } | undefined> {
  const unfinished = await findUnfinished(db, shard);
  if (!unfinished) return undefined;
  const { cluster, journal } = unfinished;
  if (journal.status === 'closed') throw new MoveRefused(`the move ${journal.id} of shard ${shard} has moved its balances already; run it again with --to ${journal.to_cluster} to finish it`);
  const target = db.clusters.find((c) => c.name === journal.to_cluster);
  if (!target) throw new MoveRefused(`the move ${journal.id} names an unknown cluster ${journal.to_cluster}`);
  await abort(cluster, target, shard, journal.id, new Error('aborted by the operator'));
  return { moveId: journal.id, from: cluster.name, to: journal.to_cluster };
}

/**
 * After the flip and the grace period: the shard's rows on the source, but its users and their
 * (closed, fenced) accounts. Those stay because the source's ledger rows name the accounts, and
 * a process with a stale map that reaches them meets the fence instead of a missing row.
 * Reconcile does not look at a departed shard's history (shard_fences, deletes off).
 */
async function removeFromSource(sql: Sql, shard: number): Promise<void> {
  const users = (await sql<{ id: string }[]>`select id from users where shard = ${shard}`).map((u) => u.id);
  for (let i = 0; i < users.length; i += 500) {
    const chunk = users.slice(i, i + 500);
    await sql`delete from transactions where user_id = any(${chunk}::text[])`;
    await sql`delete from archive.transactions where user_id = any(${chunk}::text[])`;
  }
  await sql.begin(async (tx) => {
    await tx`select set_config('statement_timeout', '0', true)`;
    await bypassFence(tx);
    // children before parents
    await tx`delete from webhook_deliveries where shard = ${shard}`;
    await tx`delete from webhook_endpoints where shard = ${shard}`;
    await tx`delete from notification_preferences where shard = ${shard}`;
    await tx`delete from fraud_reviews where shard = ${shard}`;
    await tx`delete from idempotency_keys where shard = ${shard}`;
    await tx`delete from refunds where shard = ${shard} or payment_id in (select id from payments where shard = ${shard})`;
    await tx`delete from payments where shard = ${shard}`;
    await tx`delete from topups where shard = ${shard}`;
    await tx`delete from payment_methods where shard = ${shard}`;
    await tx`delete from vault_cards where shard = ${shard}`;
    await tx`delete from email_directory where wallet_hash_shard(email) = ${shard}`;
  });
}

/** Before the money step: the fence goes, the journal says why, the target's copies stay inert. */
async function abort(source: Cluster, target: Cluster, shard: number, moveId: string, why: unknown): Promise<void> {
  await changeTriggers(source.sql, async (tx) => {
    const detail = String((why as Error)?.message ?? why).slice(0, 1000);
    // a money step whose commit was not acknowledged may have committed: then only forward
    const aborted = await tx`update shard_moves set status = 'aborted', detail = ${detail}, updated_at = now() where id = ${moveId} and status in ('copying', 'fenced') returning 1`;
    if (aborted.length) await tx`delete from shard_fences where shard = ${shard}`;
  });
  await source.sql`delete from shard_move_log where shard = ${shard}`;
  await target.sql`update shard_arrivals set arrived_at = now() where move_id = ${moveId}`;
}

/** Holds (pending transfers) on the shard's wallets, as the refusal names them. */
async function openHolds(sql: Queryable, shard: number): Promise<{ count: number; examples: string[] }> {
  const wallets = await sql<{ id: string }[]>`select id from accounts where shard = ${shard} and kind = 'user' and (debits_pending <> 0 or credits_pending <> 0)`;
  if (!wallets.length) return { count: 0, examples: [] };
  const ids = wallets.map((w) => w.id);
  const holds = await sql<{ id: string; kind: string; amount: bigint; currency: string }[]>`
    select h.id, h.kind, h.amount, h.currency from ledger_transfers h
    where h.status = 'pending' and h.pending_id is null and (h.debit_account_id = any(${ids}::text[]) or h.credit_account_id = any(${ids}::text[]))
      and not exists (select 1 from ledger_transfers r where r.pending_id = h.id)
    order by h.id limit 5`;
  return { count: wallets.length, examples: holds.map((h) => `${h.id} (${h.kind}, ${h.amount} ${h.currency.trim()})`) };
}

/**
 * Holds are not moved: a hold is a pending row of the source's ledger that its capture or void
 * must find there. Fraud reviews and card authorizations can stay open for days, so the move
 * waits at most holdWaitMs and then refuses, naming them.
 */
async function waitForHolds(sql: Sql, shard: number, waitMs: number): Promise<void> {
  const until = Date.now() + waitMs;
  for (;;) {
    const open = await openHolds(sql, shard);
    if (!open.count) return;
    if (Date.now() >= until) throw holdsRefusal(shard, open);
    await sleep(Math.min(1000, until - Date.now()));
  }
}

async function refuseOpenHolds(sql: Sql, shard: number): Promise<void> {
  const open = await openHolds(sql, shard);
  if (open.count) throw holdsRefusal(shard, open);
}

function holdsRefusal(shard: number, open: { count: number; examples: string[] }): MoveRefused {
  return new MoveRefused(
    `shard ${shard} has ${open.count} wallet(s) with open holds (${open.examples.join(', ')}): holds are not moved; ` +
      'decide the fraud reviews and capture or void the authorizations (or let them expire), or pass --hold-wait-ms to wait for them',
  );
}

/** Payments must stay within a cluster (the payments service refuses others): a shard linked to other shards by payments cannot leave alone. */
async function refuseSplitPayments(sql: Sql, shard: number): Promise<void> {
  const rows = await sql<{ id: string; payer_id: string; merchant_id: string }[]>`
    select id, payer_id, merchant_id from payments
    where (shard = ${shard}) <> (substr(merchant_id, 5, 3) = ${String(shard).padStart(3, '0')}) order by id limit 5`;
  if (rows.length) {
    throw new MoveRefused(
      `shard ${shard} has payments with users of other shards (${rows.map((r) => `${r.id}: ${r.payer_id} → ${r.merchant_id}`).join(', ')}): ` +
        'payments between clusters are not enabled, so this shard cannot move without its counterparties',
    );
  }
}

/**
 * 7a. On the source, under the fence (the shard's balances cannot change): each wallet with a
 * balance pays it into a clearing sub-account under a new id mov_…, ref_id = the move. One
 * transaction; accounts locked in id order like the engine's batches.
 */
async function closeWallets(sql: Sql, shard: number, moveId: string, subAccounts: number): Promise<void> {
  await sql.begin(async (tx) => {
    await bypassFence(tx);
    // an operator's abort (`wallet shards abort`) and this step exclude each other on the journal row
    const still = await tx`update shard_moves set status = 'closed', updated_at = now() where id = ${moveId} and status = 'fenced' returning 1`;
    if (!still.length) throw new MoveRefused(`the move ${moveId} of shard ${shard} was aborted meanwhile; nothing moved`);
    const now = new Date();
    const wallets = await tx<{ id: string; currency: string; balance: bigint; pending: bigint }[]>`
      select id, currency, credits_posted - debits_posted as balance, debits_pending + credits_pending as pending
      from accounts where shard = ${shard} and kind = 'user' order by id`;
    if (wallets.some((w) => w.pending !== 0n)) throw new Error(`shard move: a hold appeared on shard ${shard} under the fence`);
    const legs = wallets
      .filter((w) => w.balance > 0n)
      .map((w) => {
        const id = newId('mov', shard, now);
        const currency = w.currency.trim();
        return { id, wallet: w.id, clearing: systemAccountId('clearing', currency, pickSub(id, subAccounts)), currency, amount: w.balance };
      });
    if (legs.length) await writeLegs(tx, legs, moveId, shard, now, 'close');
  });
}

interface Leg {
  id: string;
  wallet: string;
  clearing: string;
  currency: string;
  amount: bigint;
}

/**
 * The ledger rows and balance changes of move legs, on one cluster. close: wallet → clearing;
 * open: clearing → wallet, only the legs not applied there yet (a re-run applies nothing twice).
 * Returns the legs applied.
 */
async function writeLegs(tx: Tx, legs: Leg[], moveId: string, shard: number, now: Date, side: 'close' | 'open', versions?: Map<string, bigint>): Promise<Leg[]> {
  const clearing = [...new Set(legs.map((l) => l.clearing))];
  await tx`insert into accounts (id, kind, currency)
    select id, 'clearing', split_part(id, '_', 3) from unnest(${clearing}::text[]) as id on conflict (id) do nothing`;
  // every account of the legs, locked in the global order (account id ascending)
  await tx`select id from accounts where id = any(${[...clearing, ...legs.map((l) => l.wallet)]}::text[]) order by id for update`;
  const debit = legs.map((l) => (side === 'close' ? l.wallet : l.clearing));
  const credit = legs.map((l) => (side === 'close' ? l.clearing : l.wallet));
  const applied = new Set(
    (
      await tx<{ id: string }[]>`
        insert into ledger_transfers (id, debit_account_id, credit_account_id, amount, currency, status, pending_id, kind, ref_id, shard, created_at)
        select l.id, l.debit, l.credit, l.amount, l.currency, 'posted', null, 'move', ${moveId}, ${shard}, ${now}
        from unnest(${legs.map((l) => l.id)}::text[], ${debit}::text[], ${credit}::text[], ${legs.map((l) => l.amount.toString())}::bigint[], ${legs.map((l) => l.currency)}::text[]) as l(id, debit, credit, amount, currency)
        on conflict (id) do nothing returning id`
    ).map((r) => r.id),
  );
  const done = legs.filter((l) => applied.has(l.id));
  if (!done.length) return done;
  const perClearing = new Map<string, bigint>();
  for (const l of done) perClearing.set(l.clearing, (perClearing.get(l.clearing) ?? 0n) + l.amount);
  const wallets = done.map((l) => l.wallet);
  const amounts = done.map((l) => l.amount.toString());
  // after the move a wallet's version is above any version the source ever showed (caches keep the newest)
  const floor = done.map((l) => (versions?.get(l.wallet) ?? 0n).toString());
  if (side === 'close') {
    await tx`update accounts as a set debits_posted = a.debits_posted + d.amount, version = a.version + 1, updated_at = ${now}
      from unnest(${wallets}::text[], ${amounts}::bigint[]) as d(id, amount) where a.id = d.id`;
    await tx`update accounts as a set credits_posted = a.credits_posted + d.amount, updated_at = ${now}
      from unnest(${[...perClearing.keys()]}::text[], ${[...perClearing.values()].map(String)}::bigint[]) as d(id, amount) where a.id = d.id`;
  } else {
    const updated = await tx`update accounts as a set credits_posted = a.credits_posted + d.amount, version = greatest(a.version, d.floor) + 1, updated_at = ${now}
      from unnest(${wallets}::text[], ${amounts}::bigint[], ${floor}::bigint[]) as d(id, amount, floor) where a.id = d.id returning a.id`;
    if (updated.length !== wallets.length) throw new Error('shard move: a wallet to open is missing on the target');
    await tx`update accounts as a set debits_posted = a.debits_posted + d.amount, updated_at = ${now}
      from unnest(${[...perClearing.keys()]}::text[], ${[...perClearing.values()].map(String)}::bigint[]) as d(id, amount) where a.id = d.id`;
  }
  return done;
}

/** 7b. On the target: the legs the source closed under this move, each applied once. */
async function openWallets(source: Sql, target: Sql, moveId: string): Promise<{ wallets: number; amounts: Record<string, string> }> {
  const rows = await source<{ id: string; wallet: string; clearing: string; currency: string; amount: bigint; version: bigint; shard: number }[]>`
    select l.id, l.debit_account_id as wallet, l.credit_account_id as clearing, l.currency, l.amount, a.version, l.shard
    from ledger_transfers l join accounts a on a.id = l.debit_account_id
    where l.ref_id = ${moveId} and l.kind = 'move' order by l.id`;
  const legs = rows.map((r) => ({ id: r.id, wallet: r.wallet, clearing: r.clearing, currency: r.currency.trim(), amount: r.amount }));
  const amounts = new Map<string, bigint>();
  for (const l of legs) amounts.set(l.currency, (amounts.get(l.currency) ?? 0n) + l.amount);
  await target.begin(async (tx) => {
    await bypassFence(tx);
    if (legs.length) await writeLegs(tx, legs, moveId, rows[0]!.shard, new Date(), 'open', new Map(rows.map((r) => [r.wallet, r.version])));
    await tx`update shard_arrivals set arrived_at = now() where move_id = ${moveId}`;
  });
  return { wallets: legs.length, amounts: Object.fromEntries([...amounts].map(([c, a]) => [c, a.toString()])) };
}

/**
 * 8. The new route, on every cluster, with a version above every version any cluster has. The
 * target first drops its own fence of the shard (left by an earlier move away from it): no
 * process routes the shard there before this flip.
 */
async function flip(db: Db, shard: number, source: Cluster, target: Cluster): Promise<bigint> {
  const [fenced] = await target.sql<{ n: number }[]>`select count(*)::int as n from shard_fences where shard = ${shard}`;
  if (fenced!.n) await changeTriggers(target.sql, (tx) => tx`delete from shard_fences where shard = ${shard}`);
  const maxima = await Promise.all(db.clusters.map((c) => c.sql<{ v: bigint }[]>`select coalesce(max(version), 0)::bigint as v from shard_map`));
  const version = maxima.reduce((m, [r]) => (r!.v > m ? r!.v : m), 0n) + 1n;
  const failed: string[] = [];
  await Promise.all(
    db.clusters.map(async (c) => {
      for (let attempt = 1; ; attempt++) {
        try {
          await c.sql`insert into shard_map (shard, cluster, version, moved_at) values (${shard}, ${target.name}, ${version}, now())
            on conflict (shard) do update set cluster = excluded.cluster, version = excluded.version, moved_at = excluded.moved_at
            where shard_map.version < excluded.version`;
          return;
        } catch {
          if (attempt >= 3) return void failed.push(c.name);
          await sleep(200 * attempt);
        }
      }
    }),
  );
  // Processes read the map from every cluster that answers and keep the highest version: the
  // source and the target knowing it is enough for every process that reaches either.
  if (failed.includes(source.name) || failed.includes(target.name)) {
    throw new Error(`shard ${shard}: the flip could not be written on ${failed.join(', ')}; run the move again to finish it`);
  }
  return version;
}

/** Reads the shard's rows from the source and writes them on the target. */
class Copier {
  private columns = new Map<string, string[]>();
  private hot = new Set<string>();
  private archived = new Set<string>();

  constructor(
    private readonly source: Cluster,
    private readonly target: Cluster,
    private readonly shard: number,
    private readonly chunkRows: number,
  ) {}

  /** Target: system accounts as on the source (rerouted commands name them), stale deletable rows gone. */
  async prepareTarget(): Promise<void> {
    const [sys] = await this.source.sql<{ j: string }[]>`select coalesce(json_agg(json_build_object('id', id, 'kind', kind, 'currency', currency)), '[]')::text as j from accounts where kind <> 'user'`;
    await this.target.sql.begin(async (tx) => {
      await bypassFence(tx);
      await tx`insert into accounts (id, kind, currency) select id, kind, currency from json_populate_recordset(null::accounts, ${sys!.j}::text::json) on conflict (id) do nothing`;
      for (const name of DELETABLE) {
        const t = MOVED.find((m) => m.name === name)!;
        await tx.unsafe(`delete from ${name} t where ${shardExpr(t, 't')} = $1`, [this.shard]);
      }
    });
  }

  /** the target's history partitions, hot and archived, by name */
  async loadPartitions(): Promise<void> {
    this.hot = new Set(await listPartitions(this.target.sql));
    this.archived = new Set(await listArchivedPartitions(this.target.sql));
  }

  /** 3. Every row of the shard, one snapshot per table. */
  async copyAll(progress: (done: number, total: number) => void): Promise<number> {
    const sources = MOVED.flatMap((t) => (t.name === 'transactions' ? [{ t, from: 'transactions' }, { t, from: 'archive.transactions' }] : [{ t, from: t.name }]));
    let done = 0;
    // one snapshot for every table (the log covers whatever changes after it)
    await this.source.sql.begin('isolation level repeatable read read only', async (tx) => {
      await tx`select set_config('statement_timeout', '0', true)`;
      const [counted] = await tx.unsafe<{ n: bigint }[]>(`select ${sources.map((s) => `(select count(*) from ${s.from} t where ${this.selection(s.t)})`).join(' + ')} as n`, [this.shard]);
      const total = Number(counted!.n);
      progress(0, total);
      for (const s of sources) {
        const month = s.t.name === 'transactions' ? `to_char(t.created_at at time zone 'UTC', 'YYYY_MM')` : `''`;
        const query = tx.unsafe<{ m: string; j: string }[]>(`select ${month} as m, to_json(t)::text as j from ${s.from} t where ${this.selection(s.t)}`, [this.shard]);
        for await (const rows of query.cursor(this.chunkRows)) {
          await this.write(s.t, rows);
          done += rows.length;
          progress(Math.min(done, total), Math.max(done, total));
        }
      }
    });
    return done;
  }

  private selection(t: MovedTable): string {
    if (t.name === 'transactions') return 't.user_id in (select id from users where shard = $1)';
    if (t.name === 'accounts') return `t.shard = $1 and t.kind = 'user'`;
    return `${shardExpr(t, 't')} = $1`;
  }

  /**
   * 4, 6. The rows whose keys the capture logged, as the source has them now; the log entries
   * done are deleted. Not a cursor over seq: seqs are taken at insert and committed in another
   * order, so an entry below one already seen can still appear (its writer committed later); it
   * stays in the log for the next round. One round takes what was logged when it started (under
   * load the log never empties); the fenced final round finds it complete.
   */
  async drain(): Promise<number> {
    let n = 0;
    const [top] = await this.source.sql<{ seq: bigint | null }[]>`select max(seq) as seq from shard_move_log where shard = ${this.shard}`;
    if (top!.seq === null) return 0;
    for (;;) {
      const log = await this.source.sql<{ seq: bigint; tbl: string; key: string }[]>`
        select seq, tbl, key::text as key from shard_move_log where shard = ${this.shard} and seq <= ${top!.seq} order by seq limit ${this.chunkRows * 5}`;
      if (!log.length) return n;
      const byTable = new Map<string, Set<string>>();
      for (const r of log) byTable.set(r.tbl, (byTable.get(r.tbl) ?? new Set()).add(r.key));
      for (const t of MOVED) {
        const keys = byTable.get(t.name);
        if (keys) n += await this.sync(t, `[${[...keys].join(',')}]`);
      }
      await this.source.sql`delete from shard_move_log where seq = any(${log.map((r) => r.seq.toString())}::bigint[])`;
    }
  }

  /** the rows with these keys (a JSON array of key objects) made the same on the target */
  private async sync(t: MovedTable, keys: string): Promise<number> {
    const keyCols = t.key.join(', ');
    const sources = t.name === 'transactions' ? ['transactions', 'archive.transactions'] : [t.name];
    const month = t.name === 'transactions' ? `to_char(t.created_at at time zone 'UTC', 'YYYY_MM')` : `''`;
    const found = (
      await Promise.all(
        sources.map((from) =>
          this.source.sql.unsafe<{ m: string; j: string }[]>(
            `select ${month} as m, to_json(t)::text as j from ${from} t join (select distinct ${keyCols} from json_populate_recordset(null::${t.name}, $1::text::json)) k using (${keyCols})`,
            [keys],
          ),
        ),
      )
    ).flat();
    // gone on the source (a purge, a deleted endpoint): gone on the target too; never users or
    // accounts (they are never deleted; an account row is part of the books)
    let gone = { n: 0, j: '[]' };
    if (t.name !== 'users' && t.name !== 'accounts') {
      const match = t.key.map((c) => `t.${c} = k.${c}`).join(' and ');
      const [row] = await this.source.sql.unsafe<{ n: number; j: string }[]>(
        `select count(*)::int as n, coalesce(json_agg(k), '[]')::text as j from (select distinct ${keyCols} from json_populate_recordset(null::${t.name}, $1::text::json)) k
         where ${sources.map((from) => `not exists (select 1 from ${from} t where ${match})`).join(' and ')}`,
        [keys],
      );
      gone = row!;
    }
    await this.write(t, found, gone.n ? gone.j : undefined);
    return found.length + gone.n;
  }

  /** Upserts rows (JSON text each) and deletes keys (a JSON array) on the target, in one transaction. */
  private async write(t: MovedTable, rows: readonly { m: string; j: string }[], gone?: string): Promise<void> {
    const cols = await this.columnsOf(t.name);
    const keyCols = t.key.join(', ');
    const update = cols.filter((c) => !t.key.includes(c)).map((c) => `${c} = excluded.${c}`).join(', ');
    const groups = new Map<string, string[]>();
    for (const r of rows) {
      const dest = t.name === 'transactions' ? this.historyTable(r.m) : t.name;
      groups.set(dest, [...(groups.get(dest) ?? []), r.j]);
    }
    await this.target.sql.begin(async (tx) => {
      await bypassFence(tx);
      for (const [dest, js] of groups) {
        const json = `[${js.join(',')}]`;
        if (t.name === 'accounts') {
          // never the balances: the target's books get a wallet's money through the move's leg
          await tx`insert into accounts (id, shard, user_id, kind, currency, version, created_at, updated_at)
            select id, shard, user_id, kind, currency, version, created_at, updated_at from json_populate_recordset(null::accounts, ${json}::text::json)
            on conflict (id) do update set version = greatest(accounts.version, excluded.version), updated_at = excluded.updated_at`;
        } else {
          await tx.unsafe(`insert into ${dest} select * from json_populate_recordset(null::${t.name}, $1::text::json) on conflict (${keyCols}) do update set ${update}`, [json]);
        }
      }
      if (gone) {
        const match = t.key.map((c) => `t.${c} = k.${c}`).join(' and ');
        for (const dest of t.name === 'transactions' ? ['transactions', 'archive.transactions'] : [t.name]) {
          await tx.unsafe(`delete from ${dest} t using json_populate_recordset(null::${t.name}, $1::text::json) k where ${match}`, [gone]);
        }
      }
    });
  }

  /** a history row goes to the target's partition of its month: hot, else archived */
  private historyTable(month: string): string {
    const name = `transactions_${month}`;
    if (this.hot.has(name)) return 'transactions';
    if (this.archived.has(name)) return 'archive.transactions';
    throw new MoveRefused(`${this.target.name} has no history partition for ${month.replace('_', '-')}: let its maintenance create it (or archive it) first`);
  }

  private async columnsOf(table: string): Promise<string[]> {
    let cols = this.columns.get(table);
    if (!cols) {
      const rows = await this.target.sql<{ attname: string }[]>`
        select attname from pg_attribute where attrelid = ${table}::regclass and attnum > 0 and not attisdropped order by attnum`;
      this.columns.set(table, (cols = rows.map((r) => r.attname)));
    }
    return cols;
  }
}
