/** P2P transfers: validation and routing here, the money movement in the ledger engine. */
import type { Platform } from '../platform.js';
import type { Principal } from '../auth/tokens.js';
import { newId, parseId } from '../shared/ids.js';
import { problem } from '../http/problem.js';
import type { CommandResult } from '../ledger/types.js';
import type { WalletDirectory } from '../ledger/wallet-directory.js';

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
      if (p.db.forShard(to.shard) !== p.db.forShard(me.shard)) {
        return refuse(503, 'unavailable', 'Transfers between clusters are not enabled in this deployment.');
      }
      const [fromWallet, toWallet] = await Promise.all([wallets.find(me.userId, input.currency), wallets.find(input.to, input.currency)]);
      if (!toWallet && !(await wallets.userExists(input.to))) return refuse(404, 'not_found', 'No such recipient.');
      if (!fromWallet) return refuse(422, 'currency_mismatch', `You have no ${input.currency} wallet.`);
      if (!toWallet) return refuse(422, 'currency_mismatch', `The recipient has no ${input.currency} wallet.`);
      return { ok: true, fromWallet, toWallet, toShard: to.shard };
    },

    async transfer(me: Principal, input: TransferInput, idem: { key: string; requestHash: string }): Promise<CommandResult> {
      const ready = await this.prepare(me, input);
      if (!ready.ok) return { ...ready.refusal, replayed: false, json: JSON.stringify(ready.refusal.body) };
      const createdAt = new Date();
      const id = newId('txn', me.shard, createdAt);
      const { fromWallet, toWallet, toShard } = ready;
      const note = input.note ?? null;
      const body = { id, status: 'completed', from: me.userId, to: input.to, amount: input.amountMinor, currency: input.currency, ...(note !== null ? { note } : {}), createdAt: createdAt.toISOString() };
      const result = await p.engine.submit({
        shard: me.shard,
        idempotency: { userId: me.userId, ...idem },
        accounts: [fromWallet, toWallet],
        apply: () => ({
          ops: [
            { t: 'transfer', id, debit: fromWallet, credit: toWallet, amount: input.amountMinor, currency: input.currency, pending: false, kind: 'p2p', refId: id },
            { t: 'history', row: { id, userId: me.userId, shard: me.shard, walletId: fromWallet, type: 'transfer', direction: 'debit', amount: input.amountMinor, currency: input.currency, status: 'completed', counterparty: input.to, note, createdAt } },
            { t: 'history', row: { id, userId: input.to, shard: toShard, walletId: toWallet, type: 'transfer', direction: 'credit', amount: input.amountMinor, currency: input.currency, status: 'completed', counterparty: me.userId, note, createdAt } },
            {
              t: 'outbox',
              event: { eventId: newId('evt', me.shard, createdAt), topic: 'transaction-events', partitionKey: me.userId, shard: me.shard, type: 'transfer.completed', payload: { ...body, fromWallet, toWallet } },
            },
          ],
          answer: { status: 201, body },
        }),
      });
      if (!result.replayed) p.metrics.movement('p2p', input.currency, result.status === 201 ? 'completed' : String((result.body as { code?: string }).code ?? result.status), input.amountMinor);
      return result;
    },
  };
}
