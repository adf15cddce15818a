/** P2P transfers: validation and routing here, the money movement in the ledger engine. */
import type { Platform } from '../platform.js';
import type { Principal } from '../auth/tokens.js';
import { newId, parseId } from '../shared/ids.js';
import { problem } from '../http/problem.js';
import type { Command, CommandResult, Op } from '../ledger/types.js';
import type { WalletDirectory } from '../ledger/wallet-directory.js';
import { fraudAlert, type RequestContext } from '../fraud/decide.js';
import type { FraudRequest } from '../fraud/types.js';

export interface TransferInput {
  to: string;
  amountMinor: bigint;
  currency: string;
  note?: string;
}

export type Refusal = { status: number; body: ReturnType<typeof problem> };

export function createTransferService(p: Platform, wallets: WalletDirectory) {
  return {
    /** Checks what can be checked before the ledger; a refusal here moves nothing. */
    async prepare(me: Principal, input: TransferInput): Promise<{ ok: true; fromWallet: string; toWallet: string; toShard: number } | { ok: false; refusal: Refusal }> {
      const refuse = (status: number, code: Parameters<typeof problem>[0], detail: string) => ({ ok: false as const, refusal: { status, body: problem(code, detail) } });
      if (input.amountMinor > BigInt(p.config.maxAmountMinor)) return refuse(422, 'limit_exceeded', `The amount exceeds the per-movement maximum of ${p.config.maxAmountMinor} minor units.`);
      const to = parseId(input.to, 'usr');
      if (!to) return refuse(404, 'not_found', 'No such recipient.');
      if (input.to === me.userId) return refuse(409, 'conflict', 'A transfer needs a recipient other than yourself.');
      const [fromWallet, toWallet] = await Promise.all([wallets.find(me.userId, input.currency), wallets.find(input.to, input.currency)]);
      if (!toWallet && !(await wallets.userExists(input.to))) return refuse(404, 'not_found', 'No such recipient.');
      if (!fromWallet) return refuse(422, 'currency_mismatch', `You have no ${input.currency} wallet.`);
      if (!toWallet) return refuse(422, 'currency_mismatch', `The recipient has no ${input.currency} wallet.`);
      return { ok: true, fromWallet, toWallet, toShard: to.shard };
    },

    /**
     * Fraud scoring sits between the checks and the ledger: approve → the transfer; decline →
     * 422 fraud_declined (recorded under the idempotency key, nothing moves); review → the
     * amount is held (a pending transfer: the sender's available balance drops, the
     * recipient's pending rises) until an operator approves (posted) or declines (voided).
     */
    async transfer(me: Principal, input: TransferInput, idem: { key: string; requestHash: string }, ctx: RequestContext = {}): Promise<CommandResult> {
      // a replay answers what the first request got, without scoring it again
      const prior = await p.engine.findPrior(me.shard, me.userId, idem.key, idem.requestHash);
      if (prior) return prior;
      const ready = await this.prepare(me, input);
      if (!ready.ok) return { ...ready.refusal, replayed: false, json: JSON.stringify(ready.refusal.body) };
      const createdAt = new Date();
      const id = newId('txn', me.shard, createdAt);
      const { fromWallet, toWallet, toShard } = ready;
      const fraudReq: FraudRequest = { requestId: `${me.userId}:${idem.key}`, kind: 'transfer', userId: me.userId, amountMinor: input.amountMinor, currency: input.currency, counterpartyId: input.to, ipCountry: ctx.clientCountry, at: createdAt };
      const decision = await p.fraud.check(fraudReq);
      const note = input.note ?? null;
      const held = decision.outcome === 'review';
      const body = { id, status: held ? 'pending_review' : 'completed', from: me.userId, to: input.to, amount: input.amountMinor, currency: input.currency, ...(note !== null ? { note } : {}), createdAt: createdAt.toISOString() };
      const idempotency = { userId: me.userId, ...idem };
      if (decision.outcome === 'decline') {
        const declined = problem('fraud_declined', 'This transfer was declined by fraud screening.');
        const result = await p.engine.submit({
          shard: me.shard,
          idempotency,
          accounts: [],
          apply: () => ({ ops: [fraudAlert(me.userId, me.shard, createdAt, 'fraud.declined', { requestId: fraudReq.requestId, kind: 'transfer', to: input.to, amount: input.amountMinor, currency: input.currency, decision })], answer: { status: 422, body: declined } }),
        });
        if (!result.replayed) p.metrics.movement('p2p', input.currency, 'fraud_declined', input.amountMinor);
        return result;
      }
      const status = held ? 'pending' : 'completed';
      // Another cluster: this leg moves the money to this cluster's clearing account; the
      // clearing consumer credits the recipient's cluster from the event (src/transfers/clearing.ts).
      // Built from the routing, so rebuilt when a shard move changes it while the command waits
      // at the move's fence (Command.reroute); the event says which way it went (viaClearing).
      const build = async (): Promise<Command> => {
        const home = p.db.forShard(me.shard);
        const cross = p.db.forShard(toShard) !== home;
        const credit = cross ? await p.systemAccounts.account(home, 'clearing', input.currency, id) : toWallet;
        const ops: Op[] = [
          { t: 'transfer', id, debit: fromWallet, credit, amount: input.amountMinor, currency: input.currency, pending: held, kind: 'p2p', refId: id },
          { t: 'history', row: { id, userId: me.userId, shard: me.shard, walletId: fromWallet, type: 'transfer', direction: 'debit', amount: input.amountMinor, currency: input.currency, status, counterparty: input.to, note, createdAt } },
        ];
        if (!cross) ops.push({ t: 'history', row: { id, userId: input.to, shard: toShard, walletId: toWallet, type: 'transfer', direction: 'credit', amount: input.amountMinor, currency: input.currency, status, counterparty: me.userId, note, createdAt } });
        if (held) {
          ops.push(
            { t: 'fraud_review', row: { id, shard: me.shard, userId: me.userId, kind: 'transfer', counterpartyId: input.to, amount: input.amountMinor, currency: input.currency, score: decision.score, reasons: decision.reasons, createdAt } },
            fraudAlert(me.userId, me.shard, createdAt, 'fraud.review', { requestId: fraudReq.requestId, kind: 'transfer', transferId: id, to: input.to, amount: input.amountMinor, currency: input.currency, decision }),
          );
        } else {
          ops.push({ t: 'outbox', event: { eventId: newId('evt', me.shard, createdAt), topic: 'transaction-events', partitionKey: me.userId, shard: me.shard, type: 'transfer.completed', payload: { ...body, fromWallet, toWallet, viaClearing: cross } } });
        }
        return { shard: me.shard, idempotency, accounts: [fromWallet, credit], apply: () => ({ ops, answer: { status: 201, body } }), reroute: build };
      };
      const result = await p.engine.submit(await build());
      if (!result.replayed) {
        p.metrics.movement('p2p', input.currency, result.status === 201 ? (held ? 'pending_review' : 'completed') : String((result.body as { code?: string }).code ?? result.status), input.amountMinor);
        if (result.status === 201 && !held) p.fraud.completed(fraudReq);
      }
      return result;
    },
  };
}
