/**
 * `wallet reconcile`: checks the money invariants of DESIGN.md on a live database, per cluster,
 * with set-based SQL. Each check yields named findings (a code, how many, a few examples); the
 * report is ok only when no check has a finding.
 *
 * Consistency on a live system: every check of a cluster runs in one REPEATABLE READ, READ ONLY
 * transaction, so all of them see one snapshot. The engine writes balances, transfer rows and
 * history rows in one transaction, so a snapshot never shows half a batch and a busy system
 * reconciles clean. Nothing is locked and nothing is written (it can run on a hot standby).
 *
 * How a ledger_transfers row moves balances (derived from src/ledger/engine.ts, BatchState.tryApply
 * and Writes.flush):
 *   - a transfer (pending_id null) written 'posted' moves `amount` in debits_posted of its debit
 *     account and credits_posted of its credit account;
 *   - a hold (pending_id null) written 'pending' moves `amount` in debits_pending/credits_pending;
 *   - a resolving row (kind capture/void/expire, pending_id = the hold) removes the hold's whole
 *     amount from the pending columns and, when the row is 'posted' (a capture of amount > 0),
 *     moves its own `amount` (at most the hold's) in the posted columns of the hold's accounts.
 *     A 'voided' resolving row (void, expiry) records the released amount and moves no posted
 *     money. The same batch sets the hold's status to 'posted' (capture) or 'voided'.
 * So a hold that has a resolving row contributes nothing any more (its status says how it
 * ended; its amount is the authorized one, not the captured one); every other row contributes
 * by its own status: 'posted' → posted columns, 'pending' → pending columns, 'voided' → nothing.
 *
 * History (invariant 5): one row per movement per user side, in the user's cluster. The history
 * id is the business id of the movement, which is the ledger transfer's id up to any ':' suffix
 * (ids are derived: txn_..., top_..., ref_..., pay_...; a resolving row is pay_...:capture):
 *   - p2p, topup, refund: one row per side that is a user wallet, id = the transfer id. (The
 *     brief said "= ref_id"; that holds for p2p and top-ups, but a refund's ref_id is its
 *     payment's id (src/payments/service.ts) while its history id is the refund id.)
 *   - a payment (kind 'payment', posted at once or held): the history id is the payment id;
 *     capture/void/expire rows add no history row but update the payment's rows: captured →
 *     'completed' with the captured amount; voided/expired → 'voided' (its amount is then
 *     informational: no money moved, so it is not compared); an open hold → 'pending'. A card
 *     payment debits a card-funding account, not the payer's wallet, so only the merchant has a
 *     row.
 *   - 'fee' transfers are not matched to history rows (no fee flow exists yet; when one does,
 *     decide whether a fee is its own history item or part of its payment's, and add it here).
 *
 * Applied once (invariant 3): the primary key on derived ids already makes a second application
 * of one id impossible; the check catches the same business id under two ids (p2p and top-ups by
 * ref_id), and refunds that add up to more than their payment captured (a refund's ref_id is
 * its payment's id).
 */
import type { Db, Queryable } from '../db/index.js';
import { reconcileClearing, type InFlight } from './reconcile-clearing.js';
import type postgres from 'postgres';

export type CheckId = 'books_balance' | 'account_balances' | 'available_non_negative' | 'holds_resolved_once' | 'history_matches_ledger' | 'applied_once' | 'clearing_nets_to_zero';

export interface Finding {
  /** stable name of the violation, e.g. balance_mismatch */
  code: string;
  cluster: string;
  description: string;
  count: number;
  /** up to EXAMPLES rows; money and counts as decimal strings */
  examples: Record<string, unknown>[];
}

export interface CheckReport {
  id: CheckId;
  title: string;
  ok: boolean;
  findings: Finding[];
}

export interface ReconcileReport {
  ok: boolean;
  checkedAt: string;
  durationMs: number;
  clusters: { name: string; accounts: number; transfers: number; historyRows: number }[];
  checks: CheckReport[];
  /** cross-cluster transfers whose credit has not landed yet, per currency (not a finding) */
  inFlight: InFlight[];
}

export interface ReconcileOptions {
  /** per statement; a reconcile of a big cluster scans whole tables */
  statementTimeoutMs?: number;
}

export const EXAMPLES = 5;

const TITLES: Record<CheckId, string> = {
  books_balance: 'total debits equal total credits (per currency, posted and pending)',
  account_balances: 'every account balance equals the sums recomputed from its transfers',
  available_non_negative: 'no user account has a negative available balance',
  holds_resolved_once: 'every hold is resolved at most once, by a resolving transfer that matches it',
  history_matches_ledger: 'every movement of a user wallet has exactly one matching history row, and every history row a movement',
  applied_once: 'no business id (p2p, top-up, refund) is applied twice; refunds never exceed the captured amount',
  clearing_nets_to_zero: 'over all clusters, every cross-cluster transfer is credited or reversed exactly once, and clearing nets to zero when nothing is in flight',
};

const DESCRIPTIONS: Record<string, string> = {
  posted_unbalanced: 'posted debits differ from posted credits over all accounts of a currency',
  pending_unbalanced: 'pending debits differ from pending credits over all accounts of a currency',
  balance_mismatch: 'stored balances differ from the sums of the account\'s ledger transfers',
  negative_available: 'credits_posted - debits_posted - debits_pending < 0 on a user wallet',
  resolved_twice: 'a hold named by more than one resolving transfer',
  resolution_without_hold: 'a resolving transfer whose pending transfer does not exist',
  resolution_mismatch: 'a resolving transfer that does not fit its hold (accounts, currency, amount, kind or status)',
  hold_status_mismatch: 'a hold whose status disagrees with its resolution (or a voided transfer that nothing resolved)',
  malformed_transfer: 'capture/void/expire without pending_id, or another kind with one',
  movement_without_history: 'a ledger movement of a user wallet with no history row for that user',
  history_mismatch: 'a history row that differs from its ledger movement (wallet, direction, amount, currency or status)',
  duplicate_history: 'more than one history row with the same id for one user',
  ambiguous_movement: 'several ledger movements claim the same history row',
  history_without_movement: 'a history row with no ledger movement of that user\'s wallet',
  ref_applied_twice: 'one business id applied by more than one ledger transfer',
  refunds_exceed_capture: 'the refunds of a payment add up to more than it captured',
};

/** Runs every check on every cluster; never writes. */
export async function reconcile(db: Db, opts: ReconcileOptions = {}): Promise<ReconcileReport> {
  const started = performance.now();
  const checkedAt = new Date().toISOString();
  const perCluster = await Promise.all(
    db.clusters.map((c) =>
      c.sql.begin('isolation level repeatable read read only', async (tx) => {
        await tx.unsafe(`set local statement_timeout = ${Math.max(0, Math.floor(opts.statementTimeoutMs ?? 600_000))}`);
        // Sequential on one connection anyway; pipelined by postgres.js.
        const [stats, ...checks] = await Promise.all([
          clusterStats(tx),
          runCheck(tx, 'books_balance', booksBalance(tx)),
          runCheck(tx, 'account_balances', accountBalances(tx)),
          runCheck(tx, 'available_non_negative', availableNonNegative(tx)),
          runCheck(tx, 'holds_resolved_once', holdsResolvedOnce(tx)),
          runCheck(tx, 'history_matches_ledger', historyMatchesLedger(tx)),
          runCheck(tx, 'applied_once', appliedOnce(tx)),
        ]);
        return { name: c.name, stats, checks: checks as ClusterChecks[] };
      }) as Promise<{ name: string; stats: ClusterStats; checks: ClusterChecks[] }>,
    ),
  );
  // across clusters (its own reads, after the per-cluster snapshots: see reconcile-clearing.ts)
  const clearing = await reconcileClearing(db);
  const checks: CheckReport[] = (Object.keys(TITLES) as CheckId[]).map((id) => {
    if (id === 'clearing_nets_to_zero') return { id, title: TITLES[id], ok: clearing.ok, findings: clearing.findings };
    const findings = perCluster.flatMap((c) => c.checks.find((k) => k.id === id)!.findings.map((f) => ({ code: f.code, cluster: c.name, description: f.description, count: f.count, examples: f.examples })));
    return { id, title: TITLES[id], ok: findings.length === 0, findings };
  });
  return {
    ok: checks.every((c) => c.ok),
    checkedAt,
    durationMs: Math.round(performance.now() - started),
    clusters: perCluster.map((c) => ({ name: c.name, ...c.stats })),
    checks,
    inFlight: clearing.inFlight,
  };
}

type Fragment = postgres.PendingQuery<postgres.Row[]>;
type ClusterStats = Omit<ReconcileReport['clusters'][number], 'name'>;
type ClusterChecks = { id: CheckId; findings: Omit<Finding, 'cluster'>[] };

/**
 * Each check is one statement yielding rows (code, sort_key, example json); this wraps it to
 * count per code and keep the first EXAMPLES examples of each. Money goes into examples as text
 * (json numbers would come back as JS numbers).
 */
async function runCheck(tx: Queryable, id: CheckId, findings: Fragment): Promise<ClusterChecks> {
  const rows = await tx<{ code: string; total: bigint; example: Record<string, unknown> }[]>`
    select code, total, example from (
      select code, example, count(*) over (partition by code) as total, row_number() over (partition by code order by sort_key) as rn
      from (${findings}) f
    ) x where rn <= ${EXAMPLES} order by code, rn`;
  const byCode = new Map<string, Omit<Finding, 'cluster'>>();
  for (const r of rows) {
    let f = byCode.get(r.code);
    if (!f) byCode.set(r.code, (f = { code: r.code, description: DESCRIPTIONS[r.code] ?? r.code, count: Number(r.total), examples: [] }));
    f.examples.push(r.example);
  }
  return { id, findings: [...byCode.values()] };
}

async function clusterStats(tx: Queryable): Promise<ClusterStats> {
  const [r] = await tx<{ accounts: bigint; transfers: bigint; history: bigint }[]>`
    select (select count(*) from accounts) as accounts, (select count(*) from ledger_transfers) as transfers, (select count(*) from transactions) as history`;
  return { accounts: Number(r!.accounts), transfers: Number(r!.transfers), historyRows: Number(r!.history) };
}

/** 1. Double entry: per currency, the sums over all accounts of debits and of credits agree. */
function booksBalance(tx: Queryable): Fragment {
  return tx`
    with totals as (
      select currency, sum(debits_posted) as dp, sum(credits_posted) as cp, sum(debits_pending) as dpe, sum(credits_pending) as cpe
      from accounts group by currency
    )
    select 'posted_unbalanced' as code, currency::text as sort_key,
      json_build_object('currency', currency, 'debits_posted', dp::text, 'credits_posted', cp::text, 'difference', (dp - cp)::text) as example
    from totals where dp <> cp
    union all
    select 'pending_unbalanced', currency::text,
      json_build_object('currency', currency, 'debits_pending', dpe::text, 'credits_pending', cpe::text, 'difference', (dpe - cpe)::text)
    from totals where dpe <> cpe`;
}

/** 2. Stored balances = balances recomputed from ledger_transfers by the rules at the top of this file. */
function accountBalances(tx: Queryable): Fragment {
  return tx`
    with resolved as (
      select distinct pending_id as id from ledger_transfers where pending_id is not null
    ), effect as (
      select t.debit_account_id, t.credit_account_id,
        case when t.status = 'posted' and r.id is null then t.amount else 0 end as posted,
        case when t.status = 'pending' and t.pending_id is null and r.id is null then t.amount else 0 end as pending
      from ledger_transfers t left join resolved r on r.id = t.id
    ), legs as (
      select debit_account_id as account_id, posted as dp, 0::bigint as cp, pending as dpe, 0::bigint as cpe from effect
      union all
      select credit_account_id, 0, posted, 0, pending from effect
    ), sums as (
      select account_id, sum(dp) as dp, sum(cp) as cp, sum(dpe) as dpe, sum(cpe) as cpe from legs group by account_id
    )
    select 'balance_mismatch' as code, a.id as sort_key,
      json_strip_nulls(json_build_object('account', a.id, 'kind', a.kind, 'currency', a.currency,
        -- only the columns that differ, each as stored vs recomputed
        'debits_posted', case when a.debits_posted <> coalesce(s.dp, 0) then json_build_object('stored', a.debits_posted::text, 'recomputed', coalesce(s.dp, 0)::text) end,
        'credits_posted', case when a.credits_posted <> coalesce(s.cp, 0) then json_build_object('stored', a.credits_posted::text, 'recomputed', coalesce(s.cp, 0)::text) end,
        'debits_pending', case when a.debits_pending <> coalesce(s.dpe, 0) then json_build_object('stored', a.debits_pending::text, 'recomputed', coalesce(s.dpe, 0)::text) end,
        'credits_pending', case when a.credits_pending <> coalesce(s.cpe, 0) then json_build_object('stored', a.credits_pending::text, 'recomputed', coalesce(s.cpe, 0)::text) end)) as example
    from accounts a left join sums s on s.account_id = a.id
    where a.debits_posted <> coalesce(s.dp, 0) or a.credits_posted <> coalesce(s.cp, 0)
       or a.debits_pending <> coalesce(s.dpe, 0) or a.credits_pending <> coalesce(s.cpe, 0)`;
}

/** 3. available = credits_posted - debits_posted - debits_pending >= 0 on every user wallet. */
function availableNonNegative(tx: Queryable): Fragment {
  return tx`
    select 'negative_available' as code, id as sort_key,
      json_build_object('account', id, 'user', user_id, 'currency', currency, 'available', (credits_posted - debits_posted - debits_pending)::text) as example
    from accounts where kind = 'user' and credits_posted - debits_posted - debits_pending < 0`;
}

/** 4. Two-phase transfers: resolved at most once, by a row that exists and fits its hold. */
function holdsResolvedOnce(tx: Queryable): Fragment {
  return tx`
    select 'resolved_twice' as code, pending_id as sort_key,
      json_build_object('hold', pending_id, 'resolutions', json_agg(id order by id)) as example
    from ledger_transfers where pending_id is not null group by pending_id having count(*) > 1
    union all
    select 'resolution_without_hold', r.id, json_build_object('transfer', r.id, 'kind', r.kind, 'pending_id', r.pending_id)
    from ledger_transfers r where r.pending_id is not null and not exists (select 1 from ledger_transfers h where h.id = r.pending_id)
    union all
    select 'resolution_mismatch', r.id,
      json_build_object('transfer', r.id, 'kind', r.kind, 'status', r.status, 'amount', r.amount::text,
        'hold', h.id, 'hold_kind', h.kind, 'hold_amount', h.amount::text)
    from ledger_transfers r join ledger_transfers h on h.id = r.pending_id
    where r.kind not in ('capture', 'void', 'expire') or h.pending_id is not null
       or r.debit_account_id <> h.debit_account_id or r.credit_account_id <> h.credit_account_id or r.currency <> h.currency
       or r.status = 'pending' or (r.status = 'posted' and r.amount > h.amount) or (r.status = 'voided' and r.amount <> h.amount)
    union all
    select 'hold_status_mismatch', h.id,
      json_build_object('hold', h.id, 'status', h.status, 'resolution', r.id, 'resolution_kind', r.kind)
    from ledger_transfers h left join ledger_transfers r on r.pending_id = h.id
    where h.pending_id is null
      and ((r.id is not null and h.status <> case when r.kind = 'capture' then 'posted' else 'voided' end)
        or (r.id is null and h.status = 'voided'))
    union all
    select 'malformed_transfer', id, json_build_object('transfer', id, 'kind', kind, 'pending_id', pending_id)
    from ledger_transfers
    where (kind in ('capture', 'void', 'expire')) <> (pending_id is not null)`;
}

/**
 * 5. Exactly one history row per movement per user side, matching it; none without a movement.
 * History rows are hot (transactions) or archived (archive.transactions, src/db/partitions.ts);
 * `history` is both, `transactions` named first so a month moving between them meanwhile is seen
 * once (the move holds an exclusive lock on `transactions`). Months older than the warm period
 * are dropped with their rows, so a movement is checked only when its history row's month is
 * still stored: the row's time is the time in its id (src/shared/ids.ts), compared with the
 * start of the oldest stored month encoded the same way (10 Crockford base32 characters after
 * the prefix and the 3-digit shard, which sort like the times they encode).
 */
function historyMatchesLedger(tx: Queryable): Fragment {
  return tx`
    with history as not materialized (
      select user_id, shard, id, wallet_id, type, direction, amount, currency, status, created_at from transactions
      union all
      select user_id, shard, id, wallet_id, type, direction, amount, currency, status, created_at from archive.transactions
    ), departed as (
      -- shards moved away from this cluster (src/db/shard-move.ts): their history is checked
      -- where they live now; here it is being deleted and their wallets are closed
      select shard from shard_fences where not deletes
    ), retained as (
      -- pg_partition_tree reads the catalog as it is now, like the planner expanding history
      -- (not as of this transaction's snapshot, which may predate a month dropped meanwhile).
      -- A month's bound reads FOR VALUES FROM ('<lower>') TO ('<upper>').
      select min(split_part(b.bound, '''', 2)::timestamptz) as since
      from (select relid from pg_partition_tree('transactions') where isleaf
            union all select relid from pg_partition_tree('archive.transactions') where isleaf) p
      join pg_class c on c.oid = p.relid
      cross join lateral (select pg_get_expr(c.relpartbound, c.oid) as bound) b
      where b.bound like 'FOR VALUES FROM (''%'
    ), retained_id_time as (
      select string_agg(substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', (((extract(epoch from r.since) * 1000)::bigint >> (5 * (9 - k))) & 31)::int + 1, 1), '' order by k) as since
      from retained r, generate_series(0, 9) as k
      where r.since is not null
    ), resolution as (
      select pending_id, kind, amount from ledger_transfers where pending_id is not null
    ), moves as (
      select t.id as transfer_id, t.amount, t.currency, t.status, t.debit_account_id, t.credit_account_id,
        r.kind as resolution, r.amount as resolved_amount
      from ledger_transfers t left join resolution r on r.pending_id = t.id
      where t.pending_id is null and t.kind in ('p2p', 'topup', 'refund', 'payment')
    ), expected as (
      select a.user_id, split_part(m.transfer_id, ':', 1) as id, a.id as wallet_id, side.direction, m.currency, m.transfer_id,
        case when m.resolution = 'capture' then m.resolved_amount else m.amount end as amount,
        case when m.resolution = 'capture' then 'completed'
             when m.resolution is not null then 'voided'
             when m.status = 'pending' then 'pending'
             when m.status = 'posted' then 'completed'
             else 'voided' end as status
      from moves m
      cross join lateral (values ('debit', m.debit_account_id), ('credit', m.credit_account_id)) as side(direction, account_id)
      join accounts a on a.id = side.account_id and a.kind = 'user' and a.shard not in (select shard from departed)
    )
    select 'movement_without_history' as code, e.transfer_id as sort_key,
      json_build_object('transfer', e.transfer_id, 'user', e.user_id, 'id', e.id, 'direction', e.direction, 'amount', e.amount::text, 'currency', e.currency) as example
    from expected e
    where not exists (select 1 from history h where h.user_id = e.user_id and h.id = e.id)
      and (substr(split_part(e.id, '_', 2), 4, 10) collate "C") >= coalesce((select since from retained_id_time), '')
    union all
    select 'history_mismatch', e.transfer_id,
      json_build_object('transfer', e.transfer_id, 'user', e.user_id, 'id', e.id,
        'expected', json_build_object('wallet', e.wallet_id, 'direction', e.direction, 'amount', e.amount::text, 'currency', e.currency, 'status', e.status),
        'history', json_build_object('wallet', h.wallet_id, 'direction', h.direction, 'amount', h.amount::text, 'currency', h.currency, 'status', h.status))
    from expected e join history h on h.user_id = e.user_id and h.id = e.id
    where (h.wallet_id, h.direction, h.currency, h.status) is distinct from (e.wallet_id, e.direction, e.currency, e.status)
       or (e.status <> 'voided' and h.amount <> e.amount)
    union all
    select 'duplicate_history', min(id), json_build_object('user', user_id, 'id', id, 'rows', count(*))
    from history where shard not in (select shard from departed) group by user_id, id having count(*) > 1
    union all
    select 'ambiguous_movement', min(id), json_build_object('user', user_id, 'id', id, 'transfers', json_agg(transfer_id order by transfer_id))
    from expected group by user_id, id having count(*) > 1
    union all
    select 'history_without_movement', h.id,
      json_build_object('user', h.user_id, 'id', h.id, 'type', h.type, 'direction', h.direction, 'amount', h.amount::text, 'currency', h.currency, 'created_at', h.created_at)
    from history h where not exists (select 1 from expected e where e.user_id = h.user_id and e.id = h.id)
      and h.shard not in (select shard from departed)
      -- copied here by a shard move (src/db/shard-move.ts): its movement stayed in the ledger of
      -- the cluster the shard came from, where it was matched; 'move' legs carry only balances
      and not exists (select 1 from shard_arrivals a where a.shard = h.shard and (a.arrived_at is null or h.created_at <= a.arrived_at))`;
}

/** 6. A business id is applied by one ledger transfer; refunds never exceed what their payment captured. */
function appliedOnce(tx: Queryable): Fragment {
  return tx`
    with business as (
      select case when kind in ('p2p', 'topup') then ref_id else split_part(id, ':', 1) end as business_id, kind, id
      from ledger_transfers where kind in ('p2p', 'topup', 'refund') and pending_id is null
    ), captured as (
      select p.id, coalesce(c.amount, case when p.status = 'posted' then p.amount end, 0) as amount
      from ledger_transfers p left join ledger_transfers c on c.pending_id = p.id and c.status = 'posted'
      where p.kind = 'payment' and p.pending_id is null
    ), refunded as (
      select ref_id as payment_id, sum(amount) as amount, count(*) as refunds from ledger_transfers where kind = 'refund' group by ref_id
    )
    select 'ref_applied_twice' as code, business_id as sort_key,
      json_build_object('business_id', business_id, 'kinds', json_agg(distinct kind), 'transfers', json_agg(id order by id)) as example
    from business group by business_id having count(*) > 1
    union all
    select 'refunds_exceed_capture', r.payment_id,
      json_build_object('payment', r.payment_id, 'captured', coalesce(c.amount, 0)::text, 'refunded', r.amount::text, 'refunds', r.refunds)
    from refunded r left join captured c on c.id = r.payment_id
    where r.amount > coalesce(c.amount, 0)`;
}

/** The report as text: per check ok, or its findings with up to EXAMPLES examples each. */
export function formatReport(r: ReconcileReport): string {
  const out: string[] = [];
  const n = (x: number) => x.toLocaleString('en-US');
  for (const c of r.clusters) out.push(`cluster ${c.name}: ${n(c.accounts)} accounts, ${n(c.transfers)} ledger transfers, ${n(c.historyRows)} history rows`);
  out.push('');
  r.checks.forEach((check, i) => {
    const total = check.findings.reduce((s, f) => s + f.count, 0);
    out.push(`${i + 1}. ${check.id}: ${check.ok ? 'ok' : `${n(total)} finding${total === 1 ? '' : 's'}`}  (${check.title})`);
    for (const f of check.findings) {
      out.push(`   ${f.code} [${f.cluster}]: ${n(f.count)}: ${f.description}`);
      for (const e of f.examples) out.push(`     - ${formatExample(e)}`);
      if (f.count > f.examples.length) out.push(`     ... and ${n(f.count - f.examples.length)} more`);
    }
  });
  for (const f of r.inFlight) out.push(`in flight between clusters: ${n(f.count)} ${f.currency} transfer${f.count === 1 ? '' : 's'}, ${f.amount} minor units (e.g. ${f.examples.join(', ')})`);
  out.push('');
  out.push(r.ok ? `reconcile: OK (${r.durationMs} ms)` : `reconcile: VIOLATIONS in ${r.checks.filter((c) => !c.ok).map((c) => c.id).join(', ')} (${r.durationMs} ms)`);
  return out.join('\n') + '\n';
}

function formatExample(e: Record<string, unknown>): string {
  return Object.entries(e)
    .map(([k, v]) => `${k}=${typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`)
    .join(' ');
}
