/**
 * Merchant payments, two-phase. Authorizing is a pending ledger transfer whose id is the payment
 * id (payer wallet, or a card-funding system account for card payments, to the merchant's
 * wallet); capture posts part or all of that hold and releases the rest; void and expiry release
 * it; refunds are posted transfers back from the merchant. Every decision that depends on the
 * payment's state is made in apply() against the locked payment row, so concurrent captures,
 * voids and refunds of one payment serialise in the ledger and never overshoot.
 *
 * The payment row lives on the payer's shard; the merchant's wallet must be on the same cluster
 * (as for transfers, cross-cluster movements are not enabled yet).
 *
 * Card payments: the network is asked first when authorizing (a decline or timeout moves
 * nothing); for capture, void, expiry and refunds the ledger decides first, under its locks, and
 * the network is told after the commit. A failure of that follow-up is logged with the payment
 * id; the matching outbox event carries everything needed to retry it.
 */
import type { Platform } from '../platform.js';
import { cacheKey } from '../cache/index.js';
import type { Principal } from '../auth/tokens.js';
import type { Cluster } from '../db/index.js';
import { newId, parseId, shardOf } from '../shared/ids.js';
import { problem, ProblemError, type ProblemCode } from '../http/problem.js';
import { NetworkTimeout, type AuthorizeResult } from '../network/index.js';
import { paymentFromRow } from '../ledger/engine.js';
import { openWallet } from '../ledger/accounts.js';
import type { Answer, BatchView, CommandResult, Op, PaymentState } from '../ledger/types.js';
import type { WalletDirectory } from '../ledger/wallet-directory.js';
import type { PaymentMethodService } from '../payment-methods/service.js';
import { fraudAlert, type RequestContext } from '../fraud/decide.js';
import type { FraudRequest } from '../fraud/types.js';
import { isExpired } from '../payment-methods/cards.js';

export interface CreatePaymentInput {
  merchantId: string;
  amountMinor: bigint;
  currency: string;
  capture: boolean;
  paymentMethodId?: string;
}

export interface Idem {
  key: string;
  requestHash: string;
}

type EventType = 'payment.authorized' | 'payment.captured' | 'payment.voided' | 'payment.expired' | 'payment.refunded' | 'payment.declined';

const refusal = (code: ProblemCode, detail: string): Answer => {
  const body = problem(code, detail);
  return { status: body.status, body };
};
const asResult = (a: Answer): CommandResult => ({ ...a, replayed: false, json: JSON.stringify(a.body) });

/** The payment as the API shows it (amounts stay bigint; the engine writes them as JSON integers). */
export function paymentView(pay: PaymentState, declineCode: string | null = null): Record<string, unknown> {
  return {
    id: pay.id,
    status: pay.status,
    merchantId: pay.merchantId,
    payerId: pay.payerId,
    amount: pay.amount,
    currency: pay.currency,
    capturedAmount: pay.capturedAmount,
    refundedAmount: pay.refundedAmount,
    source: pay.source,
    createdAt: pay.createdAt.toISOString(),
    ...(pay.expiresAt ? { expiresAt: pay.expiresAt.toISOString() } : {}),
    ...(declineCode ? { declineCode } : {}),
  };
}

export function outbox(pay: PaymentState, type: EventType, at: Date, payload: Record<string, unknown>): Op {
  const shard = shardOf(pay.id);
  return { t: 'outbox', event: { eventId: newId('evt', shard, at), topic: 'transaction-events', partitionKey: pay.payerId, shard, type, payload } };
}

/** The history rows of an authorization: the payer's debit (wallet payments only) and the merchant's credit. */
function historyRows(pay: PaymentState, status: 'pending' | 'completed'): Op[] {
  const base = { id: pay.id, type: 'payment' as const, amount: pay.amount, currency: pay.currency, status, note: null, createdAt: pay.createdAt };
  const rows: Op[] = [{ t: 'history', row: { ...base, userId: pay.merchantId, shard: shardOf(pay.merchantId), walletId: pay.merchantWalletId!, direction: 'credit', counterparty: pay.payerId } }];
  if (pay.source === 'wallet') rows.push({ t: 'history', row: { ...base, userId: pay.payerId, shard: shardOf(pay.payerId), walletId: pay.payerWalletId!, direction: 'debit', counterparty: pay.merchantId } });
  return rows;
}

/** Moves both sides' history rows of a payment to a new status (and the amount that finally moved). */
export function historyStatus(pay: PaymentState, status: 'completed' | 'voided', amount: bigint): Op[] {
  const users = pay.source === 'wallet' ? [pay.merchantId, pay.payerId] : [pay.merchantId];
  return users.map((userId) => ({ t: 'history_status', userId, id: pay.id, createdAt: pay.createdAt, status, amount }));
}

/** The locked payment, if `me` is its merchant and it can still be captured or released. */
function authorizedFor(view: BatchView, id: string, merchantId: string, verb: string): PaymentState | Answer {
  const pay = view.payment(id);
  if (!pay || pay.merchantId !== merchantId) return refusal('not_found', 'No such payment.');
  if (pay.status !== 'authorized') return refusal('conflict', `The payment is ${pay.status}; only an authorized payment can be ${verb}.`);
  const hold = view.pendingTransfer(id);
  if (hold?.status !== 'pending') throw new Error(`payments: ${id} is authorized but its hold is ${hold?.status ?? 'missing'}`);
  return pay;
}

export function createPaymentService(p: Platform, wallets: WalletDirectory, methods: PaymentMethodService) {
  const clusterOf = (paymentId: string): Cluster => p.db.forShard(shardOf(paymentId));

  /** The payer side of a payment's ledger transfers: the payer's wallet, or the card-funding sub-account picked by the payment id. */
  const payerAccount = async (pay: Pick<PaymentState, 'id' | 'source' | 'payerWalletId' | 'currency'>): Promise<string> =>
    pay.source === 'wallet' ? pay.payerWalletId! : p.systemAccounts.account(clusterOf(pay.id), 'card_funding', pay.currency, pay.id);

  /** The merchant's wallet in the currency, opened on first payment. */
  const merchantWallet = async (merchantId: string, currency: string): Promise<string> => {
    const found = await wallets.find(merchantId, currency);
    if (found) return found;
    const shard = shardOf(merchantId);
    const opened = await openWallet(p.db.forShard(shard).sql, merchantId, shard, currency);
    if (opened) {
      await p.cache.invalidate([cacheKey.user(merchantId)]); // the cached profile lists the wallets
      return opened.id;
    }
    // opened concurrently by another request
    const raced = await wallets.find(merchantId, currency);
    if (!raced) throw new Error(`payments: no ${currency} wallet for ${merchantId} after opening one`);
    return raced;
  };

  /**
   * A payment row for commands that lock it: it must exist and be the merchant's (else 404).
   * With it, whether a fraud review holds it (a review has its payment's id): one round trip.
   */
  const loadForMerchant = async (me: Principal, id: string): Promise<PaymentState & { underReview: boolean }> => {
    const parsed = parseId(id, 'pay');
    if (!parsed) throw new ProblemError('not_found', 'No such payment.');
    const [row] = await p.db.forShard(parsed.shard).sql`
      select p.*, exists (select 1 from fraud_reviews f where f.id = p.id and f.status = 'pending') as under_review from payments p where p.id = ${id}`;
    if (!row || row.merchant_id !== me.userId) throw new ProblemError('not_found', 'No such payment.');
    return { ...paymentFromRow(row), underReview: row.under_review as boolean };
  };

  /** Best-effort network follow-up after the ledger has committed (see the file comment). */
  const tellNetwork = async (pay: PaymentState, what: string, call: (ref: string) => Promise<void>): Promise<void> => {
    if (pay.source !== 'card' || !pay.networkRef) return;
    try {
      await call(pay.networkRef);
    } catch (err) {
      p.log.error({ err, paymentId: pay.id, action: what }, 'payment network follow-up failed after the ledger committed; retry it from the outbox event');
    }
  };

  /** Checks that do not depend on the payment's state; a refusal here moves nothing. */
  const prepare = async (me: Principal, input: CreatePaymentInput): Promise<Answer | undefined> => {
    if (input.amountMinor > BigInt(p.config.maxAmountMinor)) return refusal('limit_exceeded', `The amount exceeds the per-movement maximum of ${p.config.maxAmountMinor} minor units.`);
    if (input.merchantId === me.userId) return refusal('conflict', 'You cannot pay yourself.');
    const merchant = parseId(input.merchantId, 'usr');
    if (!merchant) return refusal('not_found', 'No such merchant.');
    const [user] = await p.db.forShard(merchant.shard).sql<{ kind: string }[]>`select kind from users where id = ${input.merchantId}`;
    if (user?.kind !== 'merchant') return refusal('not_found', 'No such merchant.');
    if (p.db.forShard(merchant.shard) !== p.db.forShard(me.shard)) return refusal('unavailable', 'Payments between clusters are not enabled in this deployment.');
    return undefined;
  };

  /** Writes an approved authorization (and, with capture, its posting) in one command. */
  const authorize = (me: Principal, pay: PaymentState, debit: string, idem: Idem, extra: (pay: PaymentState) => Op[] = () => []): Promise<CommandResult> => {
    const captured = pay.status === 'captured';
    return p.engine.submit({
      shard: me.shard,
      idempotency: { userId: me.userId, ...idem },
      accounts: [debit, pay.merchantWalletId!],
      apply: () => ({
        ops: [
          // captured at once: one posted transfer; otherwise a hold that capture posts later
          { t: 'transfer', id: pay.id, debit, credit: pay.merchantWalletId!, amount: pay.amount, currency: pay.currency, pending: !captured, kind: 'payment', refId: pay.id },
          { t: 'payment_insert', row: { ...pay, shard: me.shard, declineCode: null } },
          ...historyRows(pay, captured ? 'completed' : 'pending'),
          outbox(pay, captured ? 'payment.captured' : 'payment.authorized', pay.createdAt, { ...paymentView(pay), payerAccount: debit, merchantWalletId: pay.merchantWalletId }),
          ...extra(pay),
        ],
        answer: { status: 201, body: paymentView(pay) },
      }),
    });
  };

  const newPayment = (me: Principal, input: CreatePaymentInput, fields: Pick<PaymentState, 'source' | 'payerWalletId' | 'merchantWalletId' | 'networkRef' | 'paymentMethodId'>): PaymentState => {
    const createdAt = new Date();
    return {
      id: newId('pay', me.shard, createdAt),
      payerId: me.userId,
      merchantId: input.merchantId,
      amount: input.amountMinor,
      currency: input.currency,
      status: input.capture ? 'captured' : 'authorized',
      capturedAmount: input.capture ? input.amountMinor : 0n,
      refundedAmount: 0n,
      expiresAt: input.capture ? null : new Date(createdAt.getTime() + p.config.holdExpiryMinutes * 60_000),
      createdAt,
      ...fields,
    };
  };

  const fromWallet = async (me: Principal, input: CreatePaymentInput, idem: Idem, extra?: (pay: PaymentState) => Op[]): Promise<CommandResult> => {
    const payerWallet = await wallets.find(me.userId, input.currency);
    if (!payerWallet) return asResult(refusal('currency_mismatch', `You have no ${input.currency} wallet.`));
    const pay = newPayment(me, input, { source: 'wallet', payerWalletId: payerWallet, merchantWalletId: await merchantWallet(input.merchantId, input.currency), networkRef: null, paymentMethodId: null });
    return authorize(me, pay, payerWallet, idem, extra);
  };

  const fromCard = async (me: Principal, input: CreatePaymentInput & { paymentMethodId: string }, idem: Idem, extra?: (pay: PaymentState) => Op[]): Promise<CommandResult> => {
    // A replay must not reach the network again.
    const prior = await p.engine.findPrior(me.shard, me.userId, idem.key, idem.requestHash);
    if (prior) return prior;
    const card = await methods.cardDetails(me.userId, me.shard, input.paymentMethodId);
    if (!card) return asResult(refusal('not_found', 'No such payment method.'));
    const merchantWalletId = await merchantWallet(input.merchantId, input.currency);
    let auth: AuthorizeResult | { approved: false; declineCode: 'expired_card' };
    if (isExpired(card.expMonth, card.expYear)) {
      auth = { approved: false, declineCode: 'expired_card' };
    } else {
      try {
        // keyed by the client's key and request: a retry after a timeout or crash gets the same authorization
        auth = await p.network.authorize({ card, amountMinor: input.amountMinor, currency: input.currency, idempotencyKey: `payment:${me.userId}:${idem.key}:${idem.requestHash}`, capture: input.capture });
      } catch (err) {
        if (err instanceof NetworkTimeout) throw new ProblemError('unavailable', 'The card network did not answer in time; nothing was charged. Retry with the same Idempotency-Key.', { headers: { 'retry-after': '2' } });
        throw err;
      }
    }
    const fields = { source: 'card' as const, payerWalletId: null, merchantWalletId, paymentMethodId: input.paymentMethodId };
    if (auth.approved) {
      const pay = newPayment(me, input, { ...fields, networkRef: auth.ref });
      return authorize(me, pay, await payerAccount(pay), idem, extra);
    }
    const declineCode = auth.declineCode;
    const pay: PaymentState = { ...newPayment(me, input, { ...fields, networkRef: null }), status: 'declined', capturedAmount: 0n, expiresAt: null };
    return p.engine.submit({
      shard: me.shard,
      idempotency: { userId: me.userId, ...idem },
      accounts: [],
      apply: () => ({
        ops: [{ t: 'payment_insert', row: { ...pay, shard: me.shard, declineCode } }, outbox(pay, 'payment.declined', pay.createdAt, paymentView(pay, declineCode))],
        answer: { status: 201, body: paymentView(pay, declineCode) },
      }),
    });
  };

  /** Releases an authorized payment's hold: the merchant's void, or expiry. */
  const release = (pay: PaymentState, kind: 'void' | 'expire', apply: (view: BatchView) => PaymentState | Answer, idem?: { userId: string } & Idem) =>
    payerAccount(pay).then((debit) =>
      p.engine.submit({
        shard: shardOf(pay.id),
        ...(idem ? { idempotency: idem } : {}),
        accounts: [debit, pay.merchantWalletId!],
        payments: [pay.id],
        pendingTransfers: [pay.id],
        apply: (view) => {
          const locked = apply(view);
          if (!('id' in locked)) return locked;
          const after: PaymentState = { ...locked, status: kind === 'void' ? 'voided' : 'expired' };
          return {
            ops: [
              { t: 'resolve', id: `${pay.id}:${kind}`, pendingId: pay.id, kind, amount: 0n, refId: pay.id },
              { t: 'payment_update', id: pay.id, status: after.status, capturedAmount: 0n, refundedAmount: 0n },
              ...historyStatus(locked, 'voided', locked.amount),
              outbox(locked, kind === 'void' ? 'payment.voided' : 'payment.expired', view.now, paymentView(after)),
            ],
            answer: { status: 200, body: paymentView(after) },
          };
        },
      }),
    );

  return {
    /**
     * Scored before any money or card is touched. Decline: 422, nothing moves. Review: the
     * payment is only authorized (a hold, even when capture was asked), and the merchant cannot
     * capture it until an operator approves; a declined review voids it (fraud/reviews.ts).
     */
    async create(me: Principal, input: CreatePaymentInput, idem: Idem, ctx: RequestContext = {}): Promise<CommandResult> {
      const prior = await p.engine.findPrior(me.shard, me.userId, idem.key, idem.requestHash);
      if (prior) return prior;
      const refused = await prepare(me, input);
      if (refused) return asResult(refused);
      const at = new Date();
      const fraudReq: FraudRequest = { requestId: `${me.userId}:${idem.key}`, kind: 'payment', userId: me.userId, amountMinor: input.amountMinor, currency: input.currency, counterpartyId: input.merchantId, ...(input.paymentMethodId ? { paymentMethodId: input.paymentMethodId } : {}), ipCountry: ctx.clientCountry, at };
      const decision = await p.fraud.check(fraudReq);
      if (decision.outcome === 'decline') {
        const result = await p.engine.submit({
          shard: me.shard,
          idempotency: { userId: me.userId, ...idem },
          accounts: [],
          apply: () => ({
            ops: [fraudAlert(me.userId, me.shard, at, 'fraud.declined', { requestId: fraudReq.requestId, kind: 'payment', outcome: decision.outcome, merchantId: input.merchantId, amount: input.amountMinor, currency: input.currency, decision })],
            answer: { status: 422, body: problem('fraud_declined', 'This payment was declined by fraud screening.') },
          }),
        });
        if (!result.replayed) p.metrics.movement('payment', input.currency, 'fraud_declined', input.amountMinor);
        return result;
      }
      const held = decision.outcome === 'review';
      const asked = held ? { ...input, capture: false } : input;
      const extra = held
        ? (pay: PaymentState): Op[] => [
            { t: 'fraud_review', row: { id: pay.id, shard: me.shard, userId: me.userId, kind: 'payment', counterpartyId: input.merchantId, amount: input.amountMinor, currency: input.currency, score: decision.score, reasons: decision.reasons, createdAt: pay.createdAt } },
            fraudAlert(me.userId, me.shard, pay.createdAt, 'fraud.review', { requestId: fraudReq.requestId, kind: 'payment', paymentId: pay.id, merchantId: input.merchantId, amount: input.amountMinor, currency: input.currency, decision }),
          ]
        : undefined;
      const result = asked.paymentMethodId ? await fromCard(me, { ...asked, paymentMethodId: asked.paymentMethodId }, idem, extra) : await fromWallet(me, asked, idem, extra);
      if (!result.replayed) {
        const status = (result.body as { status?: unknown; code?: string }).code ?? (result.body as { status: string }).status;
        p.metrics.movement('payment', input.currency, status === 'captured' ? 'completed' : String(status), input.amountMinor);
        if (result.status === 201 && !held && (status === 'captured' || status === 'authorized')) p.fraud.completed(fraudReq);
      }
      return result;
    },

    /** The payment, for its payer or its merchant; undefined for anyone else. Index: the primary key. */
    async get(me: Principal, id: string): Promise<Record<string, unknown> | undefined> {
      const parsed = parseId(id, 'pay');
      if (!parsed) return undefined;
      const [row] = await p.db.forShard(parsed.shard).sql`select * from payments where id = ${id}`;
      if (!row || (row.payer_id !== me.userId && row.merchant_id !== me.userId)) return undefined;
      return paymentView(paymentFromRow(row), row.decline_code as string | null);
    },

    /** Posts `amountMinor` (default: all) of the hold and releases the rest. */
    async capture(me: Principal, id: string, amountMinor: bigint | undefined, idem: Idem): Promise<CommandResult> {
      const pay = await loadForMerchant(me, id);
      if (pay.underReview) return asResult(refusal('conflict', 'The payment is under fraud review; it can be captured once approved.'));
      const debit = await payerAccount(pay);
      const result = await p.engine.submit({
        shard: shardOf(id),
        idempotency: { userId: me.userId, ...idem },
        accounts: [debit, pay.merchantWalletId!],
        payments: [id],
        pendingTransfers: [id],
        apply: (view) => {
          const locked = authorizedFor(view, id, me.userId, 'captured');
          if (!('id' in locked)) return locked;
          if (locked.expiresAt && locked.expiresAt <= view.now) return refusal('conflict', 'The authorization has expired.');
          const amount = amountMinor ?? locked.amount;
          if (amount > locked.amount) return refusal('limit_exceeded', `At most the authorized ${locked.amount} can be captured.`);
          const after: PaymentState = { ...locked, status: 'captured', capturedAmount: amount };
          return {
            ops: [
              { t: 'resolve', id: `${id}:capture`, pendingId: id, kind: 'capture', amount, refId: id },
              { t: 'payment_update', id, status: 'captured', capturedAmount: amount, refundedAmount: 0n },
              ...historyStatus(locked, 'completed', amount),
              outbox(locked, 'payment.captured', view.now, paymentView(after)),
            ],
            answer: { status: 200, body: paymentView(after) },
          };
        },
      });
      if (!result.replayed) {
        p.metrics.movement('capture', pay.currency, result.status === 200 ? 'completed' : String((result.body as { code?: string }).code), amountMinor ?? pay.amount);
        if (result.status === 200) await tellNetwork(pay, 'capture', (ref) => p.network.capture(ref, (result.body as { capturedAmount: bigint }).capturedAmount));
      }
      return result;
    },

    async void(me: Principal, id: string, idem: Idem): Promise<CommandResult> {
      const pay = await loadForMerchant(me, id);
      const result = await release(pay, 'void', (view) => authorizedFor(view, id, me.userId, 'voided'), { userId: me.userId, ...idem });
      if (!result.replayed && result.status === 200) await tellNetwork(pay, 'void', (ref) => p.network.void(ref));
      return result;
    },

    /** Sends captured money back: to the payer's wallet, or to the card through the network. */
    async refund(me: Principal, id: string, amountMinor: bigint | undefined, idem: Idem): Promise<CommandResult> {
      const pay = await loadForMerchant(me, id);
      const credit = await payerAccount(pay);
      const createdAt = new Date();
      const refundId = newId('ref', shardOf(id), createdAt);
      const result = await p.engine.submit({
        shard: shardOf(id),
        idempotency: { userId: me.userId, ...idem },
        accounts: [credit, pay.merchantWalletId!],
        payments: [id],
        apply: (view) => {
          const locked = view.payment(id);
          if (!locked || locked.merchantId !== me.userId) return refusal('not_found', 'No such payment.');
          if (locked.status !== 'captured') return refusal('conflict', `The payment is ${locked.status}; only a captured payment can be refunded.`);
          const left = locked.capturedAmount - locked.refundedAmount;
          const amount = amountMinor ?? left;
          if (left === 0n) return refusal('limit_exceeded', 'The payment is already fully refunded.');
          if (amount > left) return refusal('limit_exceeded', `At most ${left} of this payment is left to refund.`);
          const body = { id: refundId, paymentId: id, amount, currency: locked.currency, status: 'completed', createdAt: createdAt.toISOString() };
          const row = { id: refundId, type: 'refund' as const, amount, currency: locked.currency, status: 'completed' as const, note: null, createdAt };
          return {
            ops: [
              { t: 'transfer', id: refundId, debit: locked.merchantWalletId!, credit, amount, currency: locked.currency, pending: false, kind: 'refund', refId: id },
              { t: 'payment_update', id, status: 'captured', capturedAmount: locked.capturedAmount, refundedAmount: locked.refundedAmount + amount },
              { t: 'refund', row: { id: refundId, shard: shardOf(id), paymentId: id, amount, currency: locked.currency, createdAt } },
              { t: 'history', row: { ...row, userId: locked.merchantId, shard: shardOf(locked.merchantId), walletId: locked.merchantWalletId!, direction: 'debit', counterparty: locked.payerId } },
              ...(locked.source === 'wallet'
                ? [{ t: 'history', row: { ...row, userId: locked.payerId, shard: shardOf(locked.payerId), walletId: locked.payerWalletId!, direction: 'credit', counterparty: locked.merchantId } } as const]
                : []),
              outbox(locked, 'payment.refunded', createdAt, { ...body, payerId: locked.payerId, merchantId: locked.merchantId, refundedAmount: locked.refundedAmount + amount }),
            ],
            answer: { status: 201, body },
          };
        },
      });
      if (!result.replayed) {
        p.metrics.movement('refund', pay.currency, result.status === 201 ? 'completed' : String((result.body as { code?: string }).code), (result.body as { amount?: bigint }).amount ?? 0n);
        if (result.status === 201) await tellNetwork(pay, 'refund', (ref) => p.network.refund(ref, (result.body as { amount: bigint }).amount));
      }
      return result;
    },

    /**
     * Expires authorized payments whose hold ran out by `now`, at most `limit` per call (index
     * payments_expiring); returns how many it expired.
     */
    async expireDue(cluster: Cluster, now: Date, limit: number): Promise<number> {
      const rows = await cluster.sql`select * from payments where status = 'authorized' and expires_at <= ${now} order by expires_at limit ${limit}`;
      const due = rows.map(paymentFromRow);
      const results = await Promise.all(
        due.map((pay) =>
          release(pay, 'expire', (view) => {
            const locked = view.payment(pay.id);
            // captured, voided or expired meanwhile: nothing to do
            if (locked?.status !== 'authorized' || !locked.expiresAt || locked.expiresAt > now) return refusal('conflict', 'No longer due to expire.');
            return authorizedFor(view, pay.id, locked.merchantId, 'expired');
          }),
        ),
      );
      let expired = 0;
      for (const [i, result] of results.entries()) {
        if (result.status !== 200) continue;
        expired++;
        await tellNetwork(due[i]!, 'expire', (ref) => p.network.void(ref));
      }
      return expired;
    },
  };
}

export type PaymentService = ReturnType<typeof createPaymentService>;
