/**
 * The batching engine (group commit). Commands queue per cluster; a batch closes after
 * `batchWindowMs` or `batchMaxSize` commands; one transaction locks every touched row in a
 * global order (payments, then pending transfers, then accounts, each by id ascending, so
 * concurrent batches of any process never deadlock), applies each command in order against the
 * running balances (a refused command does not fail its neighbours), writes all rows with one
 * set-based statement per table, and commits once. Callers are answered after the commit.
 *
 * A batch that fails on a transient error (serialization, deadlock, lost connection, a
 * concurrent duplicate key) is retried whole from fresh locks; nothing of it is visible until
 * commit, so a batch is never half-applied. When retries are exhausted each command is run
 * alone once, so one bad command cannot take its neighbours down with it.
 */
import { createHash } from 'node:crypto';
import { DatabaseStuck, isConnectionLoss, onReadOnlyServer, unlessStuck, type Cluster, type Db, type Queryable, type Sql } from '../db/index.js';
import { problem } from '../http/problem.js';
import { stringifyJson } from '../shared/json.js';
import type { AccountState, Answer, Applied, BatchView, Command, CommandResult, HistoryRow, Op, OutboxEvent, PaymentState, PendingTransferState, TopupRow, WalletSnapshot } from './types.js';
import { walletFromRow } from './accounts.js';
import { fencedShardOf } from '../db/shard-map.js';
import { createFenceParking, touchesShard } from './fence.js';
import { createBatchLoader } from '../db/batch-loader.js';

export type { WalletSnapshot };

export interface EngineOptions {
  batchMaxSize: number;
  batchWindowMs: number;
  queueMax: number;
  concurrentBatches: number;
  retries: number;
  /**
   * A batch not committed within this time answers its callers 503 (it may still commit: a retry
   * with the same Idempotency-Key replays it). A primary that is gone while no replica has been
   * promoted leaves connections waiting; this bounds what callers see. Default 10,000 ms.
   */
  batchTimeoutMs?: number;
  /** how long a command that met a moving shard's fence waits for the move (src/ledger/fence.ts); default 30,000 ms */
  fenceWaitMs?: number;
  /**
   * Called after each commit, before any caller of the batch is answered (the cache writes
   * balances through here, so the caller's next read sees its own write). Must not throw.
   */
  onCommitted?: (effects: CommitEffects) => Promise<void>;
}

/** What a committed batch changed that readers may have cached. */
export interface CommitEffects {
  wallets: WalletSnapshot[];
  /** history rows the batch added, and status changes it made to existing ones */
  history: HistoryRow[];
  historyStatus: { userId: string; id: string; createdAt: Date; status: HistoryRow['status']; amount: bigint }[];
  /**
   * For each user whose history the batch changed: the sum of the versions of all the user's
   * wallets after it. Every history change changes one of the user's wallets, and the batch
   * holds all of them locked, so this orders the user's history states (cache CAS).
   */
  historyVersions: Map<string, { before: bigint; after: bigint }>;
  /** the cluster's WAL position after the commit (clusters with replicas only) */
  position?: { cluster: string; lsn: bigint };
}

export interface EngineMetrics {
  batchCommitted(size: number, durationMs: number): void;
  batchFailed(reason: string): void;
  queueDepth(cluster: string, depth: number): void;
}

export class EngineUnavailable extends Error {
  constructor(readonly reason: 'queue_full' | 'batch_failed' | 'stopped' | 'shard_moving', message: string) {
    super(message);
  }
}

interface Pending {
  cmd: Command;
  resolve(r: CommandResult): void;
  reject(e: Error): void;
  /** set when the command met a shard move's fence */
  fencedSince?: number;
}

export interface LedgerEngine {
  submit(cmd: Command): Promise<CommandResult>;
  /**
   * The stored answer for (user, key), for callers that must not act twice before reaching the
   * engine (a top-up must not call the card network again): a replay, a 422 for a reused key
   * with another request, or undefined when the key is new. The lookups of one tick go to each
   * cluster as one statement.
   */
  findPrior(shard: number, userId: string, key: string, requestHash: string): Promise<CommandResult | undefined>;
  /** waits for queued work to finish; new submissions are refused */
  stop(): Promise<void>;
  depth(): number;
}

export function requestHash(parts: unknown): string {
  return createHash('sha256').update(stringifyJson(parts)).digest('base64url');
}

export function createLedgerEngine(db: Db, opts: EngineOptions, metrics?: EngineMetrics): LedgerEngine {
  // Commands that meet a moving shard's fence wait there, then go where the shard is now.
  const parking = createFenceParking({
    db,
    waitMs: opts.fenceWaitMs ?? 30_000,
    maxParked: opts.queueMax,
    unavailable: (message, cause) => (cause instanceof EngineUnavailable ? cause : new EngineUnavailable('shard_moving', message)),
    resubmit: (p) =>
      void (async () => (p.cmd.reroute ? p.cmd.reroute() : p.cmd))().then(
        (cmd) => {
          p.cmd = cmd;
          queues.get(db.forShard(cmd.shard).name)!.enqueue(p);
        },
        (err: Error) => p.reject(err),
      ),
  });
  const park = (items: Pending[], shard: number, cluster: Cluster) => parking.park(items, shard, cluster);
  const queues = new Map(db.clusters.map((c) => [c.name, new ClusterQueue(c, opts, metrics, park)]));
  const priors = createBatchLoader<{ shard: number; userId: string; key: string }, IdemRecord>({
    sqlOf: (k) => db.forShard(k.shard).sql,
    idOf: (k) => idemId(k.userId, k.key),
    load: (sql, keys) => findIdempotencyRecords(sql, keys),
  });
  return {
    submit(cmd) {
      return queues.get(db.forShard(cmd.shard).name)!.submit(cmd);
    },
    async findPrior(shard, userId, key, requestHash) {
      const prior = await priors({ shard, userId, key });
      return prior ? replayOf(prior, requestHash) : undefined;
    },
    async stop() {
      parking.stop();
      await Promise.all([...queues.values()].map((q) => q.stop()));
    },
    depth() {
      let d = 0;
      for (const q of queues.values()) d += q.depth();
      return d;
    },
  };
}

// 25006: the pool reached a standby during a failover; retried after the pool is replaced
const TRANSIENT_SQLSTATES = new Set(['40001', '40P01', '55P03', '57P01', '57P02', '57P03', '08000', '08003', '08006', '23505', '25006']);

function isTransient(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return (typeof code === 'string' && TRANSIENT_SQLSTATES.has(code)) || isConnectionLoss(err);
}

class ClusterQueue {
  private queue: Pending[] = [];
  private running = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private idle: (() => void)[] = [];

  private readonly name: string;

  constructor(
    private readonly cluster: Cluster,
    private readonly opts: EngineOptions,
    private readonly metrics?: EngineMetrics,
    private readonly park?: (items: Pending[], shard: number, cluster: Cluster) => void,
  ) {
    this.name = cluster.name;
  }

  depth(): number {
    return this.queue.length;
  }

  submit(cmd: Command): Promise<CommandResult> {
    return new Promise((resolve, reject) => this.enqueue({ cmd, resolve, reject }));
  }

  /** queues a command, new or coming back from a fence */
  enqueue(p: Pending): void {
    if (this.stopped) return p.reject(new EngineUnavailable('stopped', 'the ledger is shutting down'));
    if (this.queue.length >= this.opts.queueMax) return p.reject(new EngineUnavailable('queue_full', 'the ledger queue is full'));
    this.queue.push(p);
    this.metrics?.queueDepth(this.name, this.queue.length);
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.queue.length === 0 && this.running === 0) return;
    await new Promise<void>((ok) => this.idle.push(ok));
  }

  private schedule(): void {
    if (this.running >= this.opts.concurrentBatches || this.queue.length === 0) return;
    if (this.queue.length >= this.opts.batchMaxSize || this.opts.batchWindowMs === 0) {
      this.flush();
    } else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.opts.batchWindowMs);
    }
  }

  private flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.running >= this.opts.concurrentBatches || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.opts.batchMaxSize);
    this.metrics?.queueDepth(this.name, this.queue.length);
    this.running++;
    void this.runBatch(batch).finally(() => {
      this.running--;
      if (this.queue.length > 0) this.flush();
      else if (this.running === 0) this.idle.splice(0).forEach((f) => f());
    });
    if (this.queue.length > 0) this.schedule();
  }

  private async runBatch(batch: Pending[]): Promise<void> {
    const started = performance.now();
    let mode: 'optimistic' | 'locked' = 'optimistic';
    for (let attempt = 0; ; attempt++) {
      try {
        const { results, effects } = await withBatchDeadline(executeBatch(this.cluster.sql, batch.map((p) => p.cmd), mode), this.opts.batchTimeoutMs ?? 10_000, this.cluster);
        // Where replicas serve reads, callers learn a WAL position that covers their write
        // (read-your-writes, src/db/consistency.ts). Without it they would still be right, only
        // sent to the primary by the versions they carry; so a failure here fails nothing.
        if (this.cluster.replicas.length) {
          const lsn = await this.cluster.position().catch(() => undefined);
          if (lsn !== undefined) {
            effects.position = { cluster: this.name, lsn };
            for (const r of results) r.position = effects.position;
          }
        }
        this.metrics?.batchCommitted(batch.length, performance.now() - started);
        await this.opts.onCommitted?.(effects).catch(() => undefined);
        batch.forEach((p, i) => p.resolve(results[i]!));
        return;
      } catch (err) {
        if (err instanceof EngineUnavailable) {
          // the transaction may still commit: no retry, the callers decide with their keys
          this.metrics?.batchFailed('timeout');
          batch.forEach((p) => p.reject(err));
          return;
        }
        const fenced = this.park ? fencedShardOf(err) : undefined;
        if (fenced !== undefined) {
          // A shard of this batch is moving (src/ledger/fence.ts): its commands wait for the
          // move, the others go again now. When no command names the shard, run each alone.
          this.metrics?.batchFailed('fenced');
          const hit = batch.length === 1 ? batch : batch.filter((p) => touchesShard(p.cmd, fenced));
          if (!hit.length) {
            for (const p of batch) await this.runBatch([p]);
            return;
          }
          this.park!(hit, fenced, this.cluster);
          batch = batch.filter((p) => !hit.includes(p));
          if (!batch.length) return;
          attempt--;
          continue;
        }
        if (onReadOnlyServer(err)) this.cluster.recyclePrimary();
        const transient = isTransient(err);
        this.metrics?.batchFailed(err instanceof StaleBalances ? 'stale' : transient ? 'transient' : 'error');
        // contention: take the locks first next time, it cannot be stale then
        if (err instanceof StaleBalances || (err as { code?: string }).code === '40P01') mode = 'locked';
        if ((transient || err instanceof StaleBalances) && attempt < this.opts.retries) {
          if (err instanceof StaleBalances) continue;
          await new Promise((r) => setTimeout(r, Math.min(100, 2 ** attempt) * (0.5 + Math.random())));
          continue;
        }
        if (batch.length > 1) {
          // Isolate: each command alone, so one poisoned command fails only itself.
          for (const p of batch) await this.runBatch([p]);
          return;
        }
        batch[0]!.reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
    }
  }
}

/**
 * The batch's deadline. A batch past it holds its accounts' row locks on a connection that is slow
 * or stuck (src/db/index.ts, unlessStuck): the primary pool is replaced so that connection is
 * destroyed and the locks released, instead of every later batch on those accounts timing out too.
 */
function withBatchDeadline<T>(work: Promise<T>, ms: number, cluster: Cluster): Promise<T> {
  return unlessStuck(cluster, 'the ledger batch', ms, work).catch((err) => {
    throw err instanceof DatabaseStuck ? new EngineUnavailable('batch_failed', `the ledger batch on cluster ${cluster.name} did not commit within ${ms} ms`) : err;
  });
}

function answerOf(result: Answer, replayed = false, json?: string): CommandResult {
  return { ...result, replayed, json: json ?? stringifyJson(result.body) };
}

function replayOf(prior: IdemRecord, requestHash: string): CommandResult {
  if (prior.requestHash !== requestHash) return answerOf({ status: 422, body: problem('idempotency_key_reused', 'This Idempotency-Key was used with a different request.') });
  return { status: prior.statusCode, body: JSON.parse(prior.response), replayed: true, json: prior.response };
}

/**
 * Balances changed under an optimistic batch so that its net changes would leave a user account
 * below zero: the batch rolls back and runs again with its accounts locked up front.
 */
export class StaleBalances extends Error {
  readonly code = 'STALE_BALANCES';
  constructor(accountId: string) {
    super(`ledger: balances of ${accountId} moved under an optimistic batch`);
  }
}

/**
 * Runs one batch in one transaction; returns each command's result in order.
 *
 * optimistic (the default): account rows are read without locks, commands are applied against
 * that snapshot, every insert is written, and only then are the touched accounts locked (in id
 * order) and updated, in the statement just before the commit. Account locks are held for the
 * last statement and the commit only, so concurrent batches overlap their inserts instead of
 * queueing behind one another's row locks. If a concurrent commit moved a balance so that this
 * batch's net change would push a user account below zero, the update fails on the
 * user_available_never_negative CHECK, StaleBalances aborts the batch and it is retried in locked
 * mode. Correct either way: the net changes are applied as deltas to the locked rows and the
 * CHECK guards the invariant in the database itself. A refusal decided on the snapshot is a
 * refusal as of a moment after every batch the caller saw commit.
 *
 * locked: accounts are locked with the payments and holds before anything is applied.
 */
export async function executeBatch(sql: Sql, cmds: Command[], mode: 'optimistic' | 'locked' = 'optimistic'): Promise<{ results: CommandResult[]; effects: CommitEffects }> {
  const now = new Date();
  const accountIds = uniqueSorted(cmds.flatMap((c) => c.accounts));
  const paymentIds = uniqueSorted(cmds.flatMap((c) => c.payments ?? []));
  const transferIds = uniqueSorted(cmds.flatMap((c) => c.pendingTransfers ?? []));
  const idem = cmds.filter((c) => c.idempotency).map((c) => c.idempotency!);
  // Three round trips: begin; the reads (row locks in the global order in locked mode; the
  // idempotency lookup); every write, the account lock-and-update and the commit, one pipeline.
  // The account rows are locked by the last statement before the commit and the commit follows
  // it on the wire, so the locks are held for the server's own time (the update, the WAL flush),
  // never while a reply crosses to this process and waits for its event loop: the HTTP benchmark
  // found batches idle in transaction, holding row locks, while other batches queued on them.
  type Built = { results: CommandResult[]; writes: Writes; state: BatchState; historyUsers: string[] };
  let done: Built & { applied: LockedAndApplied };
  try {
    const sent = (await sql.begin(async (tx): Promise<Built & { settled: Promise<unknown[]> }> => {
      // Every statement of a batch finds its rows by key. With the default random_page_cost (4)
      // and a small accounts table (the HTTP benchmark's 10,000 wallets) the planner made the
      // lock-and-update's two joins sequential scans of the whole table: EXPLAIN ANALYZE of a
      // 120-wallet batch, 19 ms, 7 of them in the scans. At 1.1, the usual value for data in
      // memory or on SSDs, it looks the rows up in the primary key (14 ms). Larger tables get
      // the lookups either way. Sent first, in the reads' round trip; LOCAL: this batch only.
      void tx`set local random_page_cost = 1.1`.execute();
      const [payments, transfers, accounts, existing] = await Promise.all([
        paymentIds.length ? lockPayments(tx, paymentIds) : new Map<string, PaymentState>(),
        transferIds.length ? lockPendingTransfers(tx, transferIds) : new Map<string, PendingTransferState>(),
        accountIds.length ? readAccounts(tx, accountIds, mode === 'locked') : new Map<string, AccountState>(),
        idem.length ? findIdempotencyRecords(tx, idem) : new Map<string, IdemRecord>(),
      ]);
      const state = new BatchState(now, accounts, transfers, payments);
      const results: CommandResult[] = [];
      const writes = new Writes();
      for (const cmd of cmds) results.push(applyOne(cmd, state, writes, existing));
      state.assertBalanced();
      const historyUsers = [...new Set([...writes.history.map((h) => h.userId), ...writes.historyStatus.map((h) => h.userId)])];
      // sent in this order (Promise.all's .then sends each query), the lock last, and not awaited
      // here: sql.begin writes COMMIT right behind them when this callback returns
      const rows = writes.rowStatements(tx, state, now);
      const lock = state.deltas.size || historyUsers.length ? lockAndApply(tx, state, historyUsers, now) : undefined;
      const settled = Promise.all([...rows, lock]);
      settled.catch(() => undefined); // awaited below, after the commit's answer
      return { results, writes, state, historyUsers, settled };
    })) as Built & { settled: Promise<unknown[]> };
    // PostgreSQL answers COMMIT in a transaction that an earlier statement aborted with ROLLBACK,
    // not with an error, so the commit's success alone proves nothing: every statement of the
    // pipeline must have succeeded too. If one failed, nothing of the batch was applied.
    const settled = await sent.settled;
    done = { ...sent, applied: (settled.at(-1) as LockedAndApplied | undefined) ?? { locked: [], wallets: [] } };
  } catch (err) {
    const e = err as { code?: string; constraint_name?: string };
    // a concurrent commit moved a balance this optimistic batch relied on: run it locked
    if (mode === 'optimistic' && e.code === '23514' && e.constraint_name === 'user_available_never_negative') throw new StaleBalances('(the balance update)');
    throw err;
  }
  const { results, writes, state, historyUsers, applied: { locked, wallets } } = done;
  const historyVersions = new Map<string, { before: bigint; after: bigint }>();
  // a Set: a full batch locks ~1,000 wallets of ~1,000 users, and includes() made that a
  // million comparisons (4.4 ms a batch, 5 % of bench:ledger's Node time)
  const changedHistory = new Set(historyUsers);
  for (const acc of locked) {
    if (acc.user_id === null || !changedHistory.has(acc.user_id)) continue;
    const v = historyVersions.get(acc.user_id) ?? { before: 0n, after: 0n };
    historyVersions.set(acc.user_id, { before: v.before + acc.version, after: v.after + acc.version + (state.deltas.has(acc.id) ? 1n : 0n) });
  }
  // each caller learns the versions its command left on its own wallets (read-your-writes)
  const byId = new Map(wallets.map((w) => [w.id, w]));
  cmds.forEach((cmd, i) => {
    const mine = cmd.accounts.map((id) => byId.get(id)).filter((w): w is WalletSnapshot => w !== undefined && w.userId === cmd.idempotency?.userId);
    if (mine.length && !results[i]!.replayed) results[i]!.versions = new Map(mine.map((w) => [w.id, w.version]));
  });
  return { results, effects: { wallets, history: writes.history, historyStatus: writes.historyStatus, historyVersions } };
}

interface IdemRecord {
  requestHash: string;
  statusCode: number;
  response: string;
}

function applyOne(cmd: Command, state: BatchState, writes: Writes, existing: Map<string, IdemRecord>): CommandResult {
  const idem = cmd.idempotency;
  if (idem) {
    const key = idemId(idem.userId, idem.key);
    const prior = existing.get(key);
    if (prior) return replayOf(prior, idem.requestHash);
  }
  const outcome = cmd.apply(state);
  let answer: Answer;
  if ('ops' in outcome) {
    const refusal = state.tryApply(outcome.ops);
    answer = refusal ?? outcome.answer;
    if (!refusal) {
      writes.add(outcome.ops, cmd.shard);
      state.updatePayments(outcome.ops);
    }
  } else {
    answer = outcome;
  }
  const result = answerOf(answer);
  if (idem) {
    // a second command with the same key later in this batch replays this answer
    existing.set(idemId(idem.userId, idem.key), { requestHash: idem.requestHash, statusCode: result.status, response: result.json });
    // 5xx answers are not final: the client must be able to retry with the same key
    if (result.status < 500) writes.idempotency.push({ ...idem, shard: cmd.shard, status: result.status, json: result.json });
  }
  return result;
}

function uniqueSorted(ids: string[]): string[] {
  return [...new Set(ids)].sort();
}

/** what lockAndApply returns */
interface LockedAndApplied {
  locked: { id: string; user_id: string | null; version: bigint }[];
  wallets: WalletSnapshot[];
}

/**
 * One statement: locks, in id order, the accounts the batch changes and every wallet of the
 * users whose history it changes, then applies the batch's net change to the changed ones as
 * deltas. Returns the locked rows with their versions before the update, and the changed user
 * wallets after it. The update reads `locked`, so every row it changes was locked first, in the
 * global order. A net change that would take a user wallet below zero (balances moved under an
 * optimistic batch) fails on user_available_never_negative and aborts the transaction.
 * The lock is FOR NO KEY UPDATE, the one an UPDATE of non-key columns takes: FOR UPDATE would
 * also wait for the KEY SHARE locks that foreign-key checks take (a batch inserting payments or
 * top-ups locks their wallets that way, in its rows' order, before this statement), and two
 * batches each holding one such lock and wanting the other's row deadlocked (PostgreSQL
 * detects it only after deadlock_timeout, a second: the HTTP benchmark's p99).
 * Returned unsent, as a thenable: like a postgres.js query it goes out when first awaited, so the
 * caller puts it after the row writes in one pipeline.
 */
function lockAndApply(tx: Queryable, state: BatchState, historyUsers: string[], now: Date): PromiseLike<LockedAndApplied> {
  const ids = [...state.deltas.keys()];
  const d = [...state.deltas.values()];
  const query = tx<{ part: 'locked' | 'updated'; id: string; user_id: string | null; currency: string | null; available: bigint | null; pending: bigint | null; version: bigint; updated_at: Date | null }[]>`
    with ids as (
      select unnest(${pgArray(ids)}::text[]) as id
      union select id from accounts where user_id = any(${pgArray(historyUsers)}::text[]) and kind = 'user' -- accounts_one_wallet_per_currency
    ), locked as (
      select a.id, a.user_id, a.version from accounts a join ids on ids.id = a.id order by a.id for no key update of a
    ), d as (
      select * from unnest(${pgArray(ids)}::text[], ${pgArray(d.map((x) => x[0]))}::bigint[], ${pgArray(d.map((x) => x[1]))}::bigint[], ${pgArray(d.map((x) => x[2]))}::bigint[], ${pgArray(d.map((x) => x[3]))}::bigint[]) as d(id, dp, cp, dpe, cpe)
    ), updated as (
      update accounts as a set
        debits_posted = a.debits_posted + d.dp, credits_posted = a.credits_posted + d.cp,
        debits_pending = a.debits_pending + d.dpe, credits_pending = a.credits_pending + d.cpe,
        version = a.version + 1, updated_at = ${now}
      from d join locked l on l.id = d.id
      where a.id = d.id
      returning a.id, a.user_id, a.currency, a.credits_posted - a.debits_posted - a.debits_pending as available, a.debits_pending as pending, a.version, a.updated_at
    )
    select 'locked' as part, id, user_id, null as currency, null::bigint as available, null::bigint as pending, version, null::timestamptz as updated_at from locked
    union all
    select 'updated', id, user_id, currency, available, pending, version, updated_at from updated`;
  return {
    then(onFulfilled, onRejected) {
      // every changed account was read at the start of the batch (BatchState.account) and
      // accounts are never deleted, so each delta finds its row
      return query.then((rows) => ({ locked: rows.filter((r) => r.part === 'locked'), wallets: rows.filter((r) => r.part === 'updated' && r.user_id !== null).map(walletFromRow) })).then(onFulfilled, onRejected);
    },
  };
}

async function readAccounts(tx: Queryable, ids: string[], lock: boolean): Promise<Map<string, AccountState>> {
  const rows = await tx<{ id: string; kind: AccountState['kind']; currency: string; user_id: string | null; debits_posted: bigint; credits_posted: bigint; debits_pending: bigint; credits_pending: bigint }[]>`
    select id, kind, currency, user_id, debits_posted, credits_posted, debits_pending, credits_pending
    from accounts where id = any(${ids}::text[]) order by id ${lock ? tx`for no key update` : tx``}`;
  return new Map(
    rows.map((r) => [
      r.id,
      { id: r.id, kind: r.kind, currency: r.currency, userId: r.user_id, debitsPosted: r.debits_posted, creditsPosted: r.credits_posted, debitsPending: r.debits_pending, creditsPending: r.credits_pending },
    ]),
  );
}

async function lockPendingTransfers(tx: Queryable, ids: string[]): Promise<Map<string, PendingTransferState>> {
  const rows = await tx<{ id: string; debit_account_id: string; credit_account_id: string; amount: bigint; currency: string; status: PendingTransferState['status'] }[]>`
    select id, debit_account_id, credit_account_id, amount, currency, status
    from ledger_transfers where id = any(${ids}::text[]) order by id for update`;
  return new Map(rows.map((r) => [r.id, { id: r.id, debitAccountId: r.debit_account_id, creditAccountId: r.credit_account_id, amount: r.amount, currency: r.currency, status: r.status }]));
}

async function lockPayments(tx: Queryable, ids: string[]): Promise<Map<string, PaymentState>> {
  const rows = await tx`select * from payments where id = any(${ids}::text[]) order by id for update`;
  return new Map(rows.map((r) => [r.id as string, paymentFromRow(r)]));
}

export function paymentFromRow(r: Record<string, unknown>): PaymentState {
  return {
    id: r.id as string,
    payerId: r.payer_id as string,
    merchantId: r.merchant_id as string,
    payerWalletId: r.payer_wallet_id as string | null,
    merchantWalletId: r.merchant_wallet_id as string | null,
    source: r.source as PaymentState['source'],
    amount: r.amount as bigint,
    currency: r.currency as string,
    status: r.status as PaymentState['status'],
    capturedAmount: r.captured_amount as bigint,
    refundedAmount: r.refunded_amount as bigint,
    networkRef: r.network_ref as string | null,
    paymentMethodId: r.payment_method_id as string | null,
    expiresAt: r.expires_at as Date | null,
    createdAt: r.created_at as Date,
  };
}

const idemId = (userId: string, key: string) => `${userId}\u0000${key}`;

/**
 * One primary-key probe per key, whatever the planner knows of the table: a LATERAL subquery
 * with LIMIT is not flattened into a join, so it cannot become a hash join over a sequential scan.
 * The plain join did exactly that in the HTTP benchmark. postgres.js prepares its statements; a
 * connection's generic plan, made while idempotency_keys was nearly empty (and never replanned
 * where no ANALYZE runs: the CI machine has autovacuum off), hashed the keys and scanned the
 * whole table, 2.4 ms per lookup at 40,000 rows, the costliest statement of the run.
 */
export async function findIdempotencyRecords(tx: Queryable, keys: { userId: string; key: string }[]): Promise<Map<string, IdemRecord>> {
  const rows = await tx<{ user_id: string; key: string; request_hash: string; status_code: number; response: string }[]>`
    select k.user_id, k.key, i.request_hash, i.status_code, i.response
    from unnest(${keys.map((k) => k.userId)}::text[], ${keys.map((k) => k.key)}::text[]) as k(user_id, key)
    cross join lateral (
      select request_hash, status_code, response from idempotency_keys i where i.user_id = k.user_id and i.key = k.key limit 1
    ) i`;
  return new Map(rows.map((r) => [idemId(r.user_id, r.key), { requestHash: r.request_hash, statusCode: r.status_code, response: r.response }]));
}

/** The locked rows with the batch's running changes; also the view commands read. */
class BatchState implements BatchView {
  /** net change per account over the batch: [debitsPosted, creditsPosted, debitsPending, creditsPending] */
  readonly deltas = new Map<string, [bigint, bigint, bigint, bigint]>();
  readonly resolved = new Map<string, 'posted' | 'voided'>();
  private postedDebits = 0n;
  private postedCredits = 0n;
  private pendingDebits = 0n;
  private pendingCredits = 0n;

  constructor(
    readonly now: Date,
    private readonly accounts: Map<string, AccountState>,
    private readonly transfers: Map<string, PendingTransferState>,
    private readonly payments: Map<string, PaymentState>,
  ) {}

  account(id: string): AccountState {
    const a = this.accounts.get(id);
    if (!a) throw new Error(`ledger: account ${id} was not locked by its command`);
    return a;
  }
  pendingTransfer(id: string) {
    return this.transfers.get(id);
  }
  payment(id: string) {
    return this.payments.get(id);
  }

  /**
   * A payment as the command just left it, for the commands after it in this batch: two
   * refunds of one payment in one batch must not both see the old refunded total.
   */
  updatePayments(ops: Op[]): void {
    for (const op of ops) {
      if (op.t !== 'payment_update') continue;
      const pay = this.payments.get(op.id);
      if (!pay) throw new Error(`ledger: payment ${op.id} was not locked by its command`);
      pay.status = op.status;
      pay.capturedAmount = op.capturedAmount;
      pay.refundedAmount = op.refundedAmount;
    }
  }

  /**
   * Applies one command's ops to the running balances, or leaves everything as it was and
   * returns the refusal when a user account would go below zero available.
   */
  tryApply(ops: Op[]): Answer | undefined {
    const undo: (() => void)[] = [];
    const touched = new Set<AccountState>();
    const move = (acc: AccountState, field: 0 | 1 | 2 | 3, by: bigint) => {
      const keys = ['debitsPosted', 'creditsPosted', 'debitsPending', 'creditsPending'] as const;
      acc[keys[field]] += by;
      let d = this.deltas.get(acc.id);
      if (!d) this.deltas.set(acc.id, (d = [0n, 0n, 0n, 0n]));
      d[field] += by;
      if (field === 0) this.postedDebits += by;
      else if (field === 1) this.postedCredits += by;
      else if (field === 2) this.pendingDebits += by;
      else this.pendingCredits += by;
      touched.add(acc);
      undo.push(() => move(acc, field, -by));
    };
    for (const op of ops) {
      if (op.t === 'transfer') {
        const debit = this.account(op.debit);
        const credit = this.account(op.credit);
        if (debit.currency !== op.currency || credit.currency !== op.currency) throw new Error(`ledger: currency of ${op.id} differs from its accounts`);
        if (op.amount <= 0n) throw new Error(`ledger: non-positive amount in ${op.id}`);
        move(debit, op.pending ? 2 : 0, op.amount);
        move(credit, op.pending ? 3 : 1, op.amount);
      } else if (op.t === 'resolve') {
        const hold = this.transfers.get(op.pendingId);
        if (!hold || hold.status !== 'pending' || this.resolved.has(op.pendingId)) throw new Error(`ledger: ${op.pendingId} is not a pending transfer`);
        if (op.amount < 0n || op.amount > hold.amount) throw new Error(`ledger: resolving ${op.pendingId} with ${op.amount}`);
        const debit = this.account(hold.debitAccountId);
        const credit = this.account(hold.creditAccountId);
        move(debit, 2, -hold.amount);
        move(credit, 3, -hold.amount);
        if (op.amount > 0n) {
          move(debit, 0, op.amount);
          move(credit, 1, op.amount);
        }
        const status = op.kind === 'capture' ? 'posted' : 'voided';
        this.resolved.set(op.pendingId, status);
        hold.status = status;
        undo.push(() => {
          this.resolved.delete(op.pendingId);
          hold.status = 'pending';
        });
      }
    }
    for (const acc of touched) {
      if (acc.kind === 'user' && acc.creditsPosted - acc.debitsPosted - acc.debitsPending < 0n) {
        for (let i = undo.length - 1; i >= 0; i--) undo[i]!();
        return { status: 422, body: problem('insufficient_funds', 'The wallet does not hold enough available money for this movement.') };
      }
    }
    return undefined;
  }

  /** Double entry: the batch's debits equal its credits, posted and pending alike. */
  assertBalanced(): void {
    if (this.postedDebits !== this.postedCredits || this.pendingDebits !== this.pendingCredits) {
      throw new Error(`ledger: unbalanced batch (posted ${this.postedDebits}/${this.postedCredits}, pending ${this.pendingDebits}/${this.pendingCredits})`);
    }
  }
}

/**
 * A PostgreSQL array literal ({"a","b",NULL}) sent as one text parameter: several times cheaper
 * in Node than letting the driver serialize a JS array element by element, which mattered most
 * in profiles of full batches (see bench/README.md).
 */
export function pgArray(values: readonly (string | number | bigint | null | undefined)[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (i) out += ',';
    if (v === null || v === undefined) out += 'NULL';
    else if (typeof v !== 'string') out += String(v);
    else out += '"' + (NEEDS_ESCAPE.test(v) ? v.replace(ESCAPE, '\\$&') : v) + '"';
  }
  return out + '}';
}
const NEEDS_ESCAPE = /["\\]/;
const ESCAPE = /["\\]/g;

/**
 * JSON documents as one JSON array, for `json_array_elements` beside the other columns' unnest:
 * a document is full of quotes, which an array literal must escape one by one (pgArray: 1.4 ms
 * for a batch's 500 outbox payloads, against 0.02 ms to join them). A `json` element comes back
 * as its own text, byte for byte, so the stored documents are exactly the ones given. Cast
 * `::text::json`: a parameter typed json would be JSON.stringify'd again by postgres.js.
 */
export function jsonArray(docs: readonly string[]): string {
  return `[${docs.join(',')}]`;
}

/** Everything a batch writes, gathered per table and written with one statement per table. */
class Writes {
  transfers: (Extract<Op, { t: 'transfer' }> & { shard: number })[] = [];
  resolves: (Extract<Op, { t: 'resolve' }> & { shard: number })[] = [];
  history: HistoryRow[] = [];
  historyStatus: Extract<Op, { t: 'history_status' }>[] = [];
  outbox: OutboxEvent[] = [];
  topups: TopupRow[] = [];
  paymentInserts: Extract<Op, { t: 'payment_insert' }>['row'][] = [];
  paymentUpdates = new Map<string, Extract<Op, { t: 'payment_update' }>>();
  refunds: Extract<Op, { t: 'refund' }>['row'][] = [];
  fraudReviews: Extract<Op, { t: 'fraud_review' }>['row'][] = [];
  fraudDecisions: Extract<Op, { t: 'fraud_review_decide' }>[] = [];
  topupUpdates: Extract<Op, { t: 'topup_update' }>[] = [];
  idempotency: { userId: string; key: string; requestHash: string; shard: number; status: number; json: string }[] = [];

  /** shard: the shard of the command (the initiating user's), recorded on its ledger rows */
  add(ops: Op[], shard: number): void {
    for (const op of ops) {
      switch (op.t) {
        case 'transfer': this.transfers.push({ ...op, shard }); break;
        case 'resolve': this.resolves.push({ ...op, shard }); break;
        case 'history': this.history.push(op.row); break;
        case 'history_status': this.historyStatus.push(op); break;
        case 'outbox': this.outbox.push(op.event); break;
        case 'topup': this.topups.push(op.row); break;
        case 'payment_insert': this.paymentInserts.push(op.row); break;
        case 'payment_update': this.paymentUpdates.set(op.id, op); break;
        case 'refund': this.refunds.push(op.row); break;
        case 'fraud_review': this.fraudReviews.push(op.row); break;
        case 'fraud_review_decide': this.fraudDecisions.push(op); break;
        case 'topup_update': this.topupUpdates.push(op); break;
      }
    }
  }

  /** every row but the balances; needs no account lock */
  /** the batch's row writes, in order, not yet sent (the caller pipelines them) */
  rowStatements(tx: Queryable, state: BatchState, now: Date): PromiseLike<unknown>[] {
    const q: PromiseLike<unknown>[] = [];
    const ts = (d: Date) => d.toISOString();
    // Parents before children: payments before the transfers that reference their accounts is
    // not needed (accounts exist), but payments must precede refunds; pipelined in this order.
    if (this.paymentInserts.length) {
      const r = this.paymentInserts;
      q.push(tx`insert into payments (id, shard, payer_id, merchant_id, payer_wallet_id, merchant_wallet_id, payment_method_id, source, amount, currency, status, decline_code, captured_amount, refunded_amount, network_ref, expires_at, created_at)
        select * from unnest(${pgArray(r.map((x) => x.id))}::text[], ${pgArray(r.map((x) => x.shard))}::smallint[], ${pgArray(r.map((x) => x.payerId))}::text[], ${pgArray(r.map((x) => x.merchantId))}::text[],
          ${pgArray(r.map((x) => x.payerWalletId))}::text[], ${pgArray(r.map((x) => x.merchantWalletId))}::text[], ${pgArray(r.map((x) => x.paymentMethodId))}::text[], ${pgArray(r.map((x) => x.source))}::text[],
          ${pgArray((r.map((x) => x.amount)))}::bigint[], ${pgArray(r.map((x) => x.currency))}::text[], ${pgArray(r.map((x) => x.status))}::text[], ${pgArray(r.map((x) => x.declineCode))}::text[],
          ${pgArray((r.map((x) => x.capturedAmount)))}::bigint[], ${pgArray((r.map((x) => x.refundedAmount)))}::bigint[], ${pgArray(r.map((x) => x.networkRef))}::text[],
          ${pgArray(r.map((x) => (x.expiresAt ? ts(x.expiresAt) : null)))}::timestamptz[], ${pgArray(r.map((x) => ts(x.createdAt)))}::timestamptz[])`);
    }
    if (this.transfers.length || this.resolves.length) {
      const t = this.transfers;
      const rs = this.resolves;
      const holds = (r: (typeof rs)[number]) => state.pendingTransfer(r.pendingId)!;
      const ids = [...t.map((x) => x.id), ...rs.map((x) => x.id)];
      const debit = [...t.map((x) => x.debit), ...rs.map((x) => holds(x).debitAccountId)];
      const credit = [...t.map((x) => x.credit), ...rs.map((x) => holds(x).creditAccountId)];
      // a void records the released amount (the hold's) so the row stays a positive movement
      const amount = [...t.map((x) => x.amount), ...rs.map((x) => (x.amount > 0n ? x.amount : holds(x).amount))];
      const currency = [...t.map((x) => x.currency), ...rs.map((x) => holds(x).currency)];
      const status = [...t.map((x) => (x.pending ? 'pending' : 'posted')), ...rs.map((x) => (x.amount > 0n ? 'posted' : 'voided'))];
      const pendingId = [...t.map(() => null), ...rs.map((x) => x.pendingId)];
      const kind = [...t.map((x) => x.kind), ...rs.map((x) => x.kind)];
      const refId = [...t.map((x) => x.refId), ...rs.map((x) => x.refId)];
      const shard = [...t.map((x) => x.shard), ...rs.map((x) => x.shard)];
      q.push(tx`insert into ledger_transfers (id, debit_account_id, credit_account_id, amount, currency, status, pending_id, kind, ref_id, shard, created_at)
        select *, ${now}::timestamptz from unnest(${pgArray(ids)}::text[], ${pgArray(debit)}::text[], ${pgArray(credit)}::text[], ${pgArray((amount))}::bigint[], ${pgArray(currency)}::text[], ${pgArray(status)}::text[], ${pgArray(pendingId)}::text[], ${pgArray(kind)}::text[], ${pgArray(refId)}::text[], ${pgArray(shard)}::smallint[])`);
      if (state.resolved.size) {
        q.push(tx`update ledger_transfers as l set status = d.status from unnest(${pgArray([...state.resolved.keys()])}::text[], ${pgArray([...state.resolved.values()])}::text[]) as d(id, status) where l.id = d.id`);
      }
    }
    if (this.history.length) {
      const h = this.history;
      q.push(tx`insert into transactions (id, user_id, shard, wallet_id, type, direction, amount, currency, status, counterparty, note, created_at, updated_at)
        select *, ${now}::timestamptz from unnest(${pgArray(h.map((x) => x.id))}::text[], ${pgArray(h.map((x) => x.userId))}::text[], ${pgArray(h.map((x) => x.shard))}::smallint[], ${pgArray(h.map((x) => x.walletId))}::text[],
          ${pgArray(h.map((x) => x.type))}::text[], ${pgArray(h.map((x) => x.direction))}::text[], ${pgArray((h.map((x) => x.amount)))}::bigint[], ${pgArray(h.map((x) => x.currency))}::text[], ${pgArray(h.map((x) => x.status))}::text[],
          ${pgArray(h.map((x) => x.counterparty))}::text[], ${pgArray(h.map((x) => x.note))}::text[], ${pgArray(h.map((x) => ts(x.createdAt)))}::timestamptz[])`);
    }
    if (this.historyStatus.length) {
      const h = this.historyStatus;
      q.push(tx`update transactions as t set status = d.status, amount = d.amount, updated_at = ${now}
        from unnest(${pgArray(h.map((x) => x.userId))}::text[], ${pgArray(h.map((x) => x.id))}::text[], ${pgArray(h.map((x) => ts(x.createdAt)))}::timestamptz[], ${pgArray(h.map((x) => x.status))}::text[], ${pgArray((h.map((x) => x.amount)))}::bigint[]) as d(user_id, id, created_at, status, amount)
        where t.user_id = d.user_id and t.id = d.id and t.created_at = d.created_at`);
    }
    if (this.topups.length) {
      const r = this.topups;
      q.push(tx`insert into topups (id, shard, user_id, wallet_id, payment_method_id, amount, currency, status, decline_code, network_ref, created_at)
        select * from unnest(${pgArray(r.map((x) => x.id))}::text[], ${pgArray(r.map((x) => x.shard))}::smallint[], ${pgArray(r.map((x) => x.userId))}::text[], ${pgArray(r.map((x) => x.walletId))}::text[],
          ${pgArray(r.map((x) => x.paymentMethodId))}::text[], ${pgArray((r.map((x) => x.amount)))}::bigint[], ${pgArray(r.map((x) => x.currency))}::text[], ${pgArray(r.map((x) => x.status))}::text[],
          ${pgArray(r.map((x) => x.declineCode))}::text[], ${pgArray(r.map((x) => x.networkRef))}::text[], ${pgArray(r.map((x) => ts(x.createdAt)))}::timestamptz[])`);
    }
    if (this.fraudReviews.length) {
      const r = this.fraudReviews;
      q.push(tx`insert into fraud_reviews (id, shard, user_id, kind, counterparty_id, amount, currency, score, reasons, created_at)
        select d.id, d.shard, d.user_id, d.kind, d.cp, d.amount, d.currency, d.score, string_to_array(d.reasons, ','), d.created_at
        from unnest(${pgArray(r.map((x) => x.id))}::text[], ${pgArray(r.map((x) => x.shard))}::smallint[], ${pgArray(r.map((x) => x.userId))}::text[], ${pgArray(r.map((x) => x.kind))}::text[],
          ${pgArray(r.map((x) => x.counterpartyId))}::text[], ${pgArray(r.map((x) => x.amount))}::bigint[], ${pgArray(r.map((x) => x.currency))}::text[], ${pgArray(r.map((x) => x.score))}::float8[],
          ${pgArray(r.map((x) => x.reasons.join(',')))}::text[], ${pgArray(r.map((x) => ts(x.createdAt)))}::timestamptz[]) as d(id, shard, user_id, kind, cp, amount, currency, score, reasons, created_at)`);
    }
    if (this.fraudDecisions.length) {
      const r = this.fraudDecisions;
      q.push(tx`update fraud_reviews as f set status = d.status, decided_by = d.by, decided_at = ${now}
        from unnest(${pgArray(r.map((x) => x.id))}::text[], ${pgArray(r.map((x) => x.status))}::text[], ${pgArray(r.map((x) => x.decidedBy))}::text[]) as d(id, status, by)
        where f.id = d.id and f.status = 'pending'`);
    }
    if (this.topupUpdates.length) {
      const u = this.topupUpdates;
      q.push(tx`update topups as t set status = d.status, decline_code = d.code
        from unnest(${pgArray(u.map((x) => x.id))}::text[], ${pgArray(u.map((x) => x.status))}::text[], ${pgArray(u.map((x) => x.declineCode))}::text[]) as d(id, status, code)
        where t.id = d.id and t.status = 'pending_review'`);
    }
    if (this.paymentUpdates.size) {
      const u = [...this.paymentUpdates.values()];
      q.push(tx`update payments as p set status = d.status, captured_amount = d.captured, refunded_amount = d.refunded, updated_at = ${now}
        from unnest(${pgArray(u.map((x) => x.id))}::text[], ${pgArray(u.map((x) => x.status))}::text[], ${pgArray((u.map((x) => x.capturedAmount)))}::bigint[], ${pgArray((u.map((x) => x.refundedAmount)))}::bigint[]) as d(id, status, captured, refunded)
        where p.id = d.id`);
    }
    if (this.refunds.length) {
      const r = this.refunds;
      q.push(tx`insert into refunds (id, shard, payment_id, amount, currency, created_at)
        select * from unnest(${pgArray(r.map((x) => x.id))}::text[], ${pgArray(r.map((x) => x.shard))}::smallint[], ${pgArray(r.map((x) => x.paymentId))}::text[], ${pgArray((r.map((x) => x.amount)))}::bigint[], ${pgArray(r.map((x) => x.currency))}::text[], ${pgArray(r.map((x) => ts(x.createdAt)))}::timestamptz[])`);
    }
    if (this.outbox.length) {
      const o = this.outbox;
      q.push(tx`insert into outbox (event_id, topic, partition_key, shard, type, payload)
        select * from rows from (
          unnest(${pgArray(o.map((x) => x.eventId))}::text[], ${pgArray(o.map((x) => x.topic))}::text[], ${pgArray(o.map((x) => x.partitionKey))}::text[], ${pgArray(o.map((x) => x.shard))}::smallint[], ${pgArray(o.map((x) => x.type))}::text[]),
          json_array_elements(${jsonArray(o.map((x) => stringifyJson(x.payload)))}::text::json))`);
    }
    if (this.idempotency.length) {
      const i = this.idempotency;
      q.push(tx`insert into idempotency_keys (user_id, key, shard, request_hash, status_code, response, created_at)
        select d.user_id, d.key, d.shard, d.request_hash, d.status_code, d.response::text, ${now}::timestamptz
        from rows from (
          unnest(${pgArray(i.map((x) => x.userId))}::text[], ${pgArray(i.map((x) => x.key))}::text[], ${pgArray(i.map((x) => x.shard))}::smallint[], ${pgArray(i.map((x) => x.requestHash))}::text[], ${pgArray(i.map((x) => x.status))}::smallint[]),
          json_array_elements(${jsonArray(i.map((x) => x.json))}::text::json)
        ) as d(user_id, key, shard, request_hash, status_code, response)`);
    }
    return q;
  }
}

export type { Applied, Answer, Command, CommandResult };
