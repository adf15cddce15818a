/**
 * The review queue: requests scored "review" wait here with their funds held (a pending ledger
 * transfer). An operator approves (the hold is posted: the money moves, transfer.completed is
 * published) or declines (the hold is voided: the money returns to the sender's available
 * balance). Each decision is one ledger command: the hold's resolution, both history rows,
 * the review row and the events commit together, and a hold is resolved at most once (the
 * engine locks it), so two operators deciding at once get one decision and one 409.
 */
import type { Platform } from '../platform.js';
import type { CommandResult, Op, PaymentState } from '../ledger/types.js';
import { historyStatus, outbox as paymentOutbox, paymentView } from '../payments/service.js';
import { newId, parseId, shardOf } from '../shared/ids.js';
import { problem, ProblemError } from '../http/problem.js';
import { NetworkTimeout } from '../network/index.js';
import { fraudAlert } from './decide.js';

export interface ReviewView {
  id: string;
  kind: 'transfer' | 'topup' | 'payment';
  userId: string;
  counterpartyId: string | null;
  amount: bigint;
  currency: string;
  score: number;
  reasons: string[];
  status: 'pending' | 'approved' | 'declined';
  decidedBy: string | null;
  decidedAt: Date | null;
  createdAt: Date;
}

interface ReviewRow {
  id: string;
  kind: 'transfer' | 'topup' | 'payment';
  user_id: string;
  counterparty_id: string | null;
  amount: bigint;
  currency: string;
  score: number;
  reasons: string[];
  status: ReviewView['status'];
  decided_by: string | null;
  decided_at: Date | null;
  created_at: Date;
}

const view = (r: ReviewRow): ReviewView => ({
  id: r.id,
  kind: r.kind,
  userId: r.user_id,
  counterpartyId: r.counterparty_id,
  amount: r.amount,
  currency: r.currency,
  score: r.score,
  reasons: r.reasons,
  status: r.status,
  decidedBy: r.decided_by,
  decidedAt: r.decided_at,
  createdAt: r.created_at,
});

export const REVIEWS_PAGE_MAX = 200;

export function createReviewService(p: Platform) {
  return {
    /** oldest first (the queue order), across every cluster */
    async list(status: ReviewView['status'], limit: number): Promise<ReviewView[]> {
      const n = Math.min(REVIEWS_PAGE_MAX, Math.max(1, limit));
      const pages = await Promise.all(
        p.db.clusters.map((c) => c.sql<ReviewRow[]>`select id, kind, user_id, counterparty_id, amount, currency, score, reasons, status, decided_by, decided_at, created_at
          from fraud_reviews where status = ${status} order by created_at ${status === 'pending' ? c.sql`asc` : c.sql`desc`} limit ${n}`),
      );
      const all = pages.flat().map(view);
      all.sort((a, b) => (status === 'pending' ? 1 : -1) * (a.createdAt.getTime() - b.createdAt.getTime()));
      return all.slice(0, n);
    },

    async get(id: string): Promise<ReviewView | undefined> {
      const parsed = parseId(id, ['txn', 'top', 'pay']);
      if (!parsed) return undefined;
      const [row] = await p.db.forShard(parsed.shard).sql<ReviewRow[]>`select id, kind, user_id, counterparty_id, amount, currency, score, reasons, status, decided_by, decided_at, created_at from fraud_reviews where id = ${id}`;
      return row && view(row);
    },

    /** approve: post the hold; decline: void it. 404 unknown, 409 already decided. */
    async decide(operatorId: string, id: string, verdict: 'approve' | 'decline'): Promise<CommandResult> {
      const refuse = (status: number, body: ReturnType<typeof problem>): CommandResult => ({ status, body, replayed: false, json: JSON.stringify(body) });
      const review = await this.get(id);
      if (!review) return refuse(404, problem('not_found', 'No such review.'));
      if (review.status !== 'pending') return refuse(409, problem('conflict', `This review was already ${review.status}.`));
      const shard = shardOf(id);
      const sql = p.db.forShard(shard).sql;
      const [hold] = await sql<{ debit_account_id: string; credit_account_id: string }[]>`select debit_account_id, credit_account_id from ledger_transfers where id = ${id}`;
      if (!hold) return refuse(404, problem('not_found', 'The held transfer of this review is missing.'));
      const approved = verdict === 'approve';
      // one operator at a time: the card calls below must not race another decision (the same
      // operator may retry a decision that failed half-way)
      const claimed = await sql`update fraud_reviews set decided_by = ${operatorId} where id = ${id} and status = 'pending' and (decided_by is null or decided_by = ${operatorId}) returning 1`;
      if (!claimed.length) return refuse(409, problem('conflict', 'Another operator is deciding this review.'));
      if (review.kind === 'topup') {
        // the card first: capture what was authorized, or release it. Both are idempotent at the
        // network, so a retry after a failure below is safe.
        const [top] = await sql<{ network_ref: string | null }[]>`select network_ref from topups where id = ${id}`;
        if (!top?.network_ref) return refuse(404, problem('not_found', 'The held top-up of this review is missing.'));
        try {
          if (approved) await p.network.capture(top.network_ref, review.amount);
          else await p.network.void(top.network_ref);
        } catch (err) {
          if (err instanceof NetworkTimeout) throw new ProblemError('unavailable', 'The card network did not answer in time; the review is still pending. Retry.', { headers: { 'retry-after': '2' } });
          throw err;
        }
      }
      const result = await p.engine.submit({
        shard,
        accounts: [hold.debit_account_id, hold.credit_account_id],
        pendingTransfers: [id],
        ...(review.kind === 'payment' ? { payments: [id] } : {}),
        apply: (v) => {
          const h = v.pendingTransfer(id);
          if (!h || h.status !== 'pending') return { status: 409, body: problem('conflict', 'This review was already decided (or the hold expired).') };
          const now = v.now;
          const after = { ...review, status: approved ? ('approved' as const) : ('declined' as const), decidedBy: operatorId, decidedAt: now };
          const decided = [
            { t: 'fraud_review_decide', id, status: after.status, decidedBy: operatorId } as const,
            fraudAlert(review.userId, shard, now, approved ? 'fraud.review_approved' : 'fraud.review_declined', { reviewId: id, kind: review.kind, amount: review.amount, currency: review.currency, decidedBy: operatorId }),
          ];
          if (review.kind === 'payment') {
            // approved: the authorization stands and the merchant may capture it now;
            // declined: it is voided, as the merchant's void would
            const pay = v.payment(id);
            if (!pay || pay.status !== 'authorized') return { status: 409, body: problem('conflict', 'The payment is no longer authorized.') };
            if (approved) return { ops: decided, answer: { status: 200, body: after } };
            const voided: PaymentState = { ...pay, status: 'voided' };
            return {
              ops: [
                { t: 'resolve', id: `${id}:void`, pendingId: id, kind: 'void', amount: 0n, refId: id },
                { t: 'payment_update', id, status: 'voided', capturedAmount: 0n, refundedAmount: 0n },
                ...historyStatus(pay, 'voided', pay.amount),
                paymentOutbox(pay, 'payment.voided', now, paymentView(voided)),
                ...decided,
              ],
              answer: { status: 200, body: after },
            };
          }
          const ops: Op[] = [
            { t: 'resolve', id: `${id}:${approved ? 'capture' : 'void'}`, pendingId: id, kind: approved ? 'capture' : 'void', amount: approved ? h.amount : 0n, refId: id },
            ...decided,
          ];
          // a recipient on another cluster has no history row here: the clearing consumer writes
          // it there when the approved transfer's credit lands (src/transfers/clearing.ts)
          // (decided by the hold's credit account, not by the routing of now: a shard move may
          // have changed that since the hold was written)
          const sameCluster = review.counterpartyId !== null && !h.creditAccountId.startsWith('sys_clearing_');
          const users = sameCluster ? [review.userId, review.counterpartyId!] : [review.userId];
          for (const userId of users) ops.push({ t: 'history_status', userId, id, createdAt: review.createdAt, status: approved ? 'completed' : 'voided', amount: review.amount });
          if (review.kind === 'topup') {
            ops.push({ t: 'topup_update', id, status: approved ? 'completed' : 'declined', declineCode: approved ? null : 'fraud_review' });
            if (approved) {
              ops.push({
                t: 'outbox',
                event: { eventId: newId('evt', shard, now), topic: 'transaction-events', partitionKey: review.userId, shard, type: 'topup.completed', payload: { id, status: 'completed', amount: review.amount, currency: review.currency, createdAt: review.createdAt.toISOString(), walletId: h.creditAccountId, reviewedBy: operatorId } },
              });
            }
          }
          if (approved && review.kind === 'transfer') {
            ops.push({
              t: 'outbox',
              event: {
                eventId: newId('evt', shard, now),
                topic: 'transaction-events',
                partitionKey: review.userId,
                shard,
                type: 'transfer.completed',
                payload: { id, status: 'completed', from: review.userId, to: review.counterpartyId, amount: review.amount, currency: review.currency, createdAt: review.createdAt.toISOString(), fromWallet: h.debitAccountId, toWallet: h.creditAccountId, viaClearing: !sameCluster, reviewedBy: operatorId },
              },
            });
          }
          return { ops, answer: { status: 200, body: after } };
        },
      });
      if (result.status === 200 && review.kind === 'payment' && !approved) {
        const [pay] = await sql<{ network_ref: string | null }[]>`select network_ref from payments where id = ${id}`;
        if (pay?.network_ref) await p.network.void(pay.network_ref).catch((err) => p.log.error({ err, paymentId: id }, 'voiding the card authorization of a declined review failed; void it at the network'));
      }
      if (result.status === 200 && approved) {
        p.fraud.completed({ requestId: `review:${id}`, kind: review.kind, userId: review.userId, amountMinor: review.amount, currency: review.currency, ...(review.counterpartyId ? { counterpartyId: review.counterpartyId } : {}), at: review.createdAt });
      }
      return result;
    },
  };
}
