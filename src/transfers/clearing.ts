/**
 * Transfers between clusters (DESIGN.md, "A transfer's path", step 3): no distributed lock, no
 * two-phase commit.
 *
 * 1. The sender's cluster (A), in the batch that answers the API: the sender's wallet → A's
 *    clearing account, the sender's history row, and `transfer.completed` in A's outbox. The
 *    API answers `completed`: from here the credit is guaranteed, because the event is durable
 *    with the debit and the steps below are retried until they succeed.
 * 2. The `clearing` consumer group (workers role) takes `transfer.completed` events whose
 *    recipient lives on another cluster (B) and submits the credit leg to B's engine: B's
 *    clearing account → the recipient's wallet, the recipient's history row. The ledger transfer
 *    keeps the transfer's id, so B applies it at most once (its primary key; a redelivery finds
 *    it and does nothing).
 * 3. If B cannot apply it (the recipient has no wallet in that currency any more, or the event
 *    names a wallet that is not the recipient's), B records the refusal under the idempotency key
 *    `clearing:<transfer id>` of the system user `sys:clearing`, the same key the credit uses:
 *    whichever decision commits first is the only one, a later delivery replays it. Refusals are
 *    kept past the idempotency TTL (src/maintenance). Then A's engine applies the reversal:
 *    A's clearing → the sender's wallet under id `rev_<body of the transfer id>` (at most once,
 *    by primary key), a history row for the sender, and `transfer.reversed` in A's outbox.
 *
 * The handler acknowledges the event only after both steps, so a crash between them redelivers
 * it; each step is idempotent. Over all clusters the clearing accounts net to zero when nothing
 * is in flight (src/ledger/reconcile-clearing.ts checks it).
 */
import type { Platform } from '../platform.js';
import type { Op } from '../ledger/types.js';
import { requestHash } from '../ledger/engine.js';
import { newId, parseId } from '../shared/ids.js';
import { PoisonEvent, type BusEvent, type ConsumerSpec } from '../events/types.js';

export const CLEARING_GROUP = 'clearing';
/** the idempotency records of clearing decisions are this system user's */
export const CLEARING_USER = 'sys:clearing';
export const REFUSED_STATUS = 409;
/** deliveries of one event before a dead letter: with the backoff's cap, days */
export const CLEARING_MAX_DELIVER = 100_000;

/**
 * The id of the credit leg when the sender's leg is on the recipient's cluster (a shard move put
 * both users there after the sender's leg went through clearing). Reconcile matches it to its
 * debit leg by the part before ':' (src/ledger/reconcile-clearing.ts), like a history row.
 */
export function sameClusterCreditId(transferId: string): string {
  return `${transferId}:credit`;
}

/** the id of the reversal of cross-cluster transfer `txn_…`: same shard and time, its own prefix */
export function reversalId(transferId: string): string {
  return `rev_${transferId.slice(4)}`;
}

export interface CrossTransfer {
  id: string;
  from: string;
  to: string;
  fromWallet: string;
  amount: bigint;
  currency: string;
  note: string | null;
  createdAt: Date;
}

function minor(v: unknown): bigint | undefined {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0) return BigInt(v);
  if (typeof v === 'bigint' && v > 0n) return v;
  if (typeof v === 'string' && /^[1-9][0-9]{0,18}$/.test(v)) return BigInt(v);
  return undefined;
}

/** the cross-cluster transfer an event announces; undefined when the event is not one */
export function crossTransferOf(p: Pick<Platform, 'db'>, event: BusEvent): CrossTransfer | undefined {
  if (event.type !== 'transfer.completed') return undefined;
  const q = event.payload;
  const bad = (why: string) => new PoisonEvent(`clearing: ${event.id}: ${why}`);
  const id = typeof q.id === 'string' ? parseId(q.id, 'txn') : undefined;
  const from = typeof q.from === 'string' ? parseId(q.from, 'usr') : undefined;
  const to = typeof q.to === 'string' ? parseId(q.to, 'usr') : undefined;
  if (!id || !from || !to) throw bad('id, from or to is not one of our ids');
  // The sender's leg records which way the money went: routing may have changed since (a shard
  // move, src/db/shard-move.ts), so the leg decides, not the routing of now. Events written
  // before viaClearing existed fall back to the routing.
  if (q.viaClearing === false) return undefined;
  if (q.viaClearing !== true && p.db.forShard(from.shard) === p.db.forShard(to.shard)) return undefined;
  const amount = minor(q.amount);
  const fromWallet = typeof q.fromWallet === 'string' ? parseId(q.fromWallet, 'wal') : undefined;
  if (amount === undefined) throw bad('amount is not a positive integer of minor units');
  if (typeof q.currency !== 'string' || !/^[A-Z]{3}$/.test(q.currency)) throw bad('currency is not an ISO 4217 code');
  if (!fromWallet || fromWallet.shard !== from.shard) throw bad("fromWallet is not a wallet of the sender's shard");
  return { id: q.id as string, from: q.from as string, to: q.to as string, fromWallet: q.fromWallet as string, amount, currency: q.currency, note: typeof q.note === 'string' ? q.note : null, createdAt: id.createdAt };
}

export type CreditOutcome = { outcome: 'credited' } | { outcome: 'refused'; reason: string };

export function createClearing(p: Platform) {
  const walletOf = async (userId: string, currency: string) => {
    const [row] = await p.db.forShard(parseId(userId)!.shard).sql<{ id: string }[]>`select id from accounts where user_id = ${userId} and currency = ${currency} and kind = 'user'`;
    return row?.id;
  };

  /** step 2 on the recipient's cluster: the credit, or the recorded refusal */
  const credit = async (t: CrossTransfer): Promise<CreditOutcome> => {
    const toShard = parseId(t.to)!.shard;
    const cluster = p.db.forShard(toShard);
    const [toWallet, clearing] = await Promise.all([walletOf(t.to, t.currency), p.systemAccounts.account(cluster, 'clearing', t.currency, t.id)]);
    const result = await p.engine.submit({
      shard: toShard,
      idempotency: { userId: CLEARING_USER, key: `clearing:${t.id}`, requestHash: requestHash([t.id, t.to, t.amount, t.currency]) },
      accounts: toWallet ? [clearing, toWallet] : [],
      pendingTransfers: [t.id, sameClusterCreditId(t.id)],
      apply: (v) => {
        const here = v.pendingTransfer(t.id);
        // applied before, its idempotency record purged since: nothing to do
        if (v.pendingTransfer(sameClusterCreditId(t.id)) || (here && here.debitAccountId !== t.fromWallet)) return { status: 201, body: { outcome: 'credited' } };
        if (!toWallet) return { status: REFUSED_STATUS, body: { outcome: 'refused', reason: 'recipient_wallet_missing' } };
        // The sender's leg is on this cluster too: a shard move has brought the two users together
        // since it was written. The credit cannot take the transfer's id here (one row per id).
        const legId = here ? sameClusterCreditId(t.id) : t.id;
        const ops: Op[] = [
          { t: 'transfer', id: legId, debit: clearing, credit: toWallet, amount: t.amount, currency: t.currency, pending: false, kind: 'p2p', refId: legId },
          { t: 'history', row: { id: t.id, userId: t.to, shard: toShard, walletId: toWallet, type: 'transfer', direction: 'credit', amount: t.amount, currency: t.currency, status: 'completed', counterparty: t.from, note: t.note, createdAt: t.createdAt } },
        ];
        return { ops, answer: { status: 201, body: { outcome: 'credited' } } };
      },
    });
    if (result.status === 201) return { outcome: 'credited' };
    if (result.status === REFUSED_STATUS) return { outcome: 'refused', reason: String((result.body as { reason?: unknown }).reason ?? 'refused') };
    throw new Error(`clearing: the credit of ${t.id} on ${cluster.name} answered ${result.status}: ${result.json}`);
  };

  /** step 3 on the sender's cluster: the money back, once */
  const reverse = async (t: CrossTransfer, reason: string): Promise<void> => {
    const fromShard = parseId(t.from)!.shard;
    const cluster = p.db.forShard(fromShard);
    const revId = reversalId(t.id);
    const clearing = await p.systemAccounts.account(cluster, 'clearing', t.currency, t.id);
    const result = await p.engine.submit({
      shard: fromShard,
      accounts: [clearing, t.fromWallet],
      pendingTransfers: [revId],
      apply: (v) => {
        if (v.pendingTransfer(revId)) return { status: 200, body: { outcome: 'reversed' } };
        const wallet = v.account(t.fromWallet);
        if (wallet.kind !== 'user' || wallet.userId !== t.from || wallet.currency !== t.currency) return { status: 422, body: { outcome: 'failed', reason: "fromWallet is not the sender's wallet in this currency" } };
        const ops: Op[] = [
          { t: 'transfer', id: revId, debit: clearing, credit: t.fromWallet, amount: t.amount, currency: t.currency, pending: false, kind: 'p2p', refId: revId },
          { t: 'history', row: { id: revId, userId: t.from, shard: fromShard, walletId: t.fromWallet, type: 'transfer', direction: 'credit', amount: t.amount, currency: t.currency, status: 'completed', counterparty: t.to, note: `Returned: ${reason.replace(/_/g, ' ')}`, createdAt: t.createdAt } },
          {
            t: 'outbox',
            event: {
              eventId: newId('evt', fromShard, v.now),
              topic: 'transaction-events',
              partitionKey: t.from,
              shard: fromShard,
              type: 'transfer.reversed',
              payload: { id: t.id, reversalId: revId, status: 'reversed', from: t.from, to: t.to, amount: t.amount, currency: t.currency, declineCode: reason, createdAt: v.now.toISOString() },
            },
          },
        ];
        return { ops, answer: { status: 201, body: { outcome: 'reversed' } } };
      },
    });
    if (result.status !== 200 && result.status !== 201) throw new PoisonEvent(`clearing: the reversal of ${t.id} on ${cluster.name} answered ${result.status}: ${result.json}`);
    p.metrics.movement('p2p_reversal', t.currency, 'completed', t.amount);
  };

  return {
    credit,
    reverse,
    /** one event: not a cross-cluster transfer → nothing; otherwise credit, or refuse and reverse */
    async handle(event: BusEvent): Promise<void> {
      const t = crossTransferOf(p, event);
      if (!t) return;
      const done = await credit(t);
      if (done.outcome === 'refused') await reverse(t, done.reason);
    },
  };
}

export function clearingConsumers(p: Platform): ConsumerSpec[] {
  const clearing = createClearing(p);
  // A credit must land (or be refused and reversed): a failover or a cluster down for a while is
  // retried, never dead-lettered, however long it takes. Only a malformed event is poison.
  return [{ group: CLEARING_GROUP, topic: 'transaction-events', handler: (event) => clearing.handle(event), options: { concurrency: 64, maxDeliver: CLEARING_MAX_DELIVER } }];
}
