/**
 * Top-ups: authorize and capture the card at the payment network, then credit the wallet from
 * a card-funding system account in one ledger command. The network call is idempotent by the
 * user's Idempotency-Key, so a retry after a timeout or a crash never charges twice; a declined
 * card is recorded (and replayed) but moves no money.
 */
import type { Platform } from '../platform.js';
import type { Principal } from '../auth/tokens.js';
import { newId } from '../shared/ids.js';
import { problem } from '../http/problem.js';
import { NetworkTimeout } from '../network/index.js';
import { ProblemError } from '../http/problem.js';
import type { CommandResult, Op } from '../ledger/types.js';
import type { WalletDirectory } from '../ledger/wallet-directory.js';
import type { PaymentMethodService } from '../payment-methods/service.js';
import { isExpired } from '../payment-methods/cards.js';
import { fraudAlert, type RequestContext } from '../fraud/decide.js';
import type { FraudRequest } from '../fraud/types.js';

export interface TopupInput {
  paymentMethodId: string;
  amountMinor: bigint;
  currency: string;
}

export function createTopupService(p: Platform, wallets: WalletDirectory, methods: PaymentMethodService) {
  return {
    async topup(me: Principal, input: TopupInput, idem: { key: string; requestHash: string }, ctx: RequestContext = {}): Promise<CommandResult> {
      const refuse = (status: number, body: ReturnType<typeof problem>): CommandResult => ({ status, body, replayed: false, json: JSON.stringify(body) });
      const cluster = p.db.forShard(me.shard);
      // A replay must not reach the network again.
      const prior = await p.engine.findPrior(me.shard, me.userId, idem.key, idem.requestHash);
      if (prior) return prior;
      if (input.amountMinor > BigInt(p.config.maxAmountMinor)) return refuse(422, problem('limit_exceeded', `The amount exceeds the per-movement maximum of ${p.config.maxAmountMinor} minor units.`));
      const card = await methods.cardDetails(me.userId, me.shard, input.paymentMethodId);
      if (!card) return refuse(404, problem('not_found', 'No such payment method.'));
      const walletId = await wallets.find(me.userId, input.currency);
      if (!walletId) return refuse(422, problem('currency_mismatch', `You have no ${input.currency} wallet.`));

      const createdAt = new Date();
      const id = newId('top', me.shard, createdAt);
      // Scored before the card is touched. Decline: nothing is charged. Review: the card is
      // only authorized and the wallet's credit is pending until an operator decides
      // (fraud/reviews.ts captures or voids the authorization).
      const fraudReq: FraudRequest = { requestId: `${me.userId}:${idem.key}`, kind: 'topup', userId: me.userId, amountMinor: input.amountMinor, currency: input.currency, paymentMethodId: input.paymentMethodId, ipCountry: ctx.clientCountry, at: createdAt };
      const decision = await p.fraud.check(fraudReq);
      if (decision.outcome === 'decline') {
        const declined = problem('fraud_declined', 'This top-up was declined by fraud screening; the card was not charged.');
        const result = await p.engine.submit({
          shard: me.shard,
          idempotency: { userId: me.userId, ...idem },
          accounts: [],
          apply: () => ({ ops: [fraudAlert(me.userId, me.shard, createdAt, 'fraud.declined', { requestId: fraudReq.requestId, kind: 'topup', amount: input.amountMinor, currency: input.currency, decision })], answer: { status: 422, body: declined } }),
        });
        if (!result.replayed) p.metrics.movement('topup', input.currency, 'fraud_declined', input.amountMinor);
        return result;
      }
      const held = decision.outcome === 'review';
      let auth;
      if (isExpired(card.expMonth, card.expYear, createdAt)) {
        auth = { approved: false as const, declineCode: 'expired_card' as const };
      } else {
        try {
          auth = await p.network.authorize({ card, amountMinor: input.amountMinor, currency: input.currency, idempotencyKey: `${me.userId}:${idem.key}`, capture: !held });
        } catch (err) {
          if (err instanceof NetworkTimeout) throw new ProblemError('unavailable', 'The card network did not answer in time; nothing was charged. Retry with the same Idempotency-Key.', { headers: { 'retry-after': '2' } });
          throw err;
        }
      }
      const base = { id, amount: input.amountMinor, currency: input.currency, paymentMethodId: input.paymentMethodId, createdAt: createdAt.toISOString() };
      const row = { id, shard: me.shard, userId: me.userId, walletId, paymentMethodId: input.paymentMethodId, amount: input.amountMinor, currency: input.currency, createdAt };
      let result: CommandResult;
      if (!auth.approved) {
        const body = { ...base, status: 'declined', declineCode: auth.declineCode };
        result = await p.engine.submit({
          shard: me.shard,
          idempotency: { userId: me.userId, ...idem },
          accounts: [],
          apply: () => ({ ops: [{ t: 'topup', row: { ...row, status: 'declined', declineCode: auth.declineCode, networkRef: null } }], answer: { status: 201, body } }),
        });
      } else {
        const funding = await p.systemAccounts.account(cluster, 'card_funding', input.currency, id);
        const status = held ? ('pending_review' as const) : ('completed' as const);
        const body = { ...base, status };
        const ops: Op[] = [
          { t: 'transfer', id, debit: funding, credit: walletId, amount: input.amountMinor, currency: input.currency, pending: held, kind: 'topup', refId: id },
          { t: 'history', row: { id, userId: me.userId, shard: me.shard, walletId, type: 'topup', direction: 'credit', amount: input.amountMinor, currency: input.currency, status: held ? 'pending' : 'completed', counterparty: null, note: null, createdAt } },
          { t: 'topup', row: { ...row, status, declineCode: null, networkRef: auth.ref } },
        ];
        if (held) {
          ops.push(
            { t: 'fraud_review', row: { id, shard: me.shard, userId: me.userId, kind: 'topup', counterpartyId: null, amount: input.amountMinor, currency: input.currency, score: decision.score, reasons: decision.reasons, createdAt } },
            fraudAlert(me.userId, me.shard, createdAt, 'fraud.review', { requestId: fraudReq.requestId, kind: 'topup', topupId: id, amount: input.amountMinor, currency: input.currency, decision }),
          );
        } else {
          ops.push({ t: 'outbox', event: { eventId: newId('evt', me.shard, createdAt), topic: 'transaction-events', partitionKey: me.userId, shard: me.shard, type: 'topup.completed', payload: { ...body, walletId } } });
        }
        result = await p.engine.submit({ shard: me.shard, idempotency: { userId: me.userId, ...idem }, accounts: [funding, walletId], apply: () => ({ ops, answer: { status: 201, body } }) });
      }
      if (!result.replayed) {
        p.metrics.movement('topup', input.currency, !auth.approved ? 'declined' : held ? 'pending_review' : 'completed', input.amountMinor);
        if (auth.approved && !held && result.status === 201) p.fraud.completed(fraudReq);
      }
      return result;
    },
  };
}
