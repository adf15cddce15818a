import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Platform } from '../platform.js';
import { AmountIn, Bearer, Currency, IdParam, IdempotencyHeaders, MoneyOut, Timestamp, problems } from '../http/schemas.js';
import { ProblemError } from '../http/problem.js';
import { idempotentRequest } from '../http/idempotency.js';
import { createWalletDirectory } from '../ledger/wallet-directory.js';
import { createTransferService } from './service.js';
import { parseId } from '../shared/ids.js';
import { requestContext } from '../fraud/decide.js';

const CreateTransfer = Type.Object(
  { to: Type.String({ minLength: 1, maxLength: 64, description: 'recipient user id' }), amount: AmountIn, currency: Currency, note: Type.Optional(Type.String({ maxLength: 280 })) },
  { additionalProperties: false },
);
export const TransferSchema = Type.Object({
  id: Type.String(),
  status: Type.Union([Type.Literal('completed'), Type.Literal('pending_review'), Type.Literal('declined')], {
    description: 'completed: moved; pending_review: held by fraud screening until an analyst decides (the amount is reserved); declined: the analyst declined it and the hold was released',
  }),
  from: Type.String(),
  to: Type.String(),
  amount: MoneyOut,
  currency: Type.String(),
  note: Type.Optional(Type.String()),
  createdAt: Timestamp,
});

export function transferRoutes(p: Platform): FastifyPluginAsyncTypebox {
  const transfers = createTransferService(p, createWalletDirectory(p.db));
  return async (app) => {
    app.addHook('onRequest', app.authenticate);
    const tags = ['transfers'];

    app.post('/transfers', {
      schema: { tags, summary: 'Send money to another user (P2P)', security: Bearer, headers: IdempotencyHeaders, body: CreateTransfer, response: { 201: TransferSchema, ...problems(400, 401, 404, 409, 422, 503) } },
    }, async (req, reply) => {
      const b = req.body;
      return idempotentRequest(p.inFlight, req, reply, (idem) => transfers.transfer(req.principal!, { to: b.to, amountMinor: BigInt(b.amount), currency: b.currency, note: b.note }, idem, requestContext(req, p.config.fraudClientCountryHeader)));
    });

    app.get('/transfers/:id', { schema: { tags, summary: 'A transfer (its sender or recipient may read it)', security: Bearer, params: IdParam, response: { 200: TransferSchema, ...problems(401, 404) } } }, async (req) => {
      const me = req.principal!;
      const parsed = parseId(req.params.id, 'txn');
      if (!parsed) throw new ProblemError('not_found', 'No such transfer.');
      // The viewer's own history row: sender and recipient each have one; partition-pruned by the
      // id's time, in the hot months or the archive (src/db/partitions.ts), whichever holds the month.
      const [row] = await p.db.forShard(me.shard).sql`
        select id, direction, amount, currency, counterparty, note, status, created_at from transactions
        where user_id = ${me.userId} and id = ${req.params.id} and created_at = ${parsed.createdAt} and type = 'transfer'
        union all
        select id, direction, amount, currency, counterparty, note, status, created_at from archive.transactions
        where user_id = ${me.userId} and id = ${req.params.id} and created_at = ${parsed.createdAt} and type = 'transfer'`;
      if (!row) throw new ProblemError('not_found', 'No such transfer.');
      const outgoing = row.direction === 'debit';
      return {
        id: row.id as string,
        status: row.status === 'pending' ? ('pending_review' as const) : row.status === 'voided' ? ('declined' as const) : ('completed' as const),
        from: outgoing ? me.userId : (row.counterparty as string),
        to: outgoing ? (row.counterparty as string) : me.userId,
        amount: row.amount as bigint,
        currency: (row.currency as string),
        ...(row.note !== null ? { note: row.note as string } : {}),
        createdAt: row.created_at as Date,
      };
    });
  };
}
