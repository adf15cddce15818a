import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Platform } from '../platform.js';
import { Bearer, Currency, IdParam, MoneyOut, Timestamp, problems } from '../http/schemas.js';
import { ProblemError } from '../http/problem.js';
import { openWallet } from '../ledger/accounts.js';
import { parseId } from '../shared/ids.js';
import { CONSISTENCY_HEADER, createWalletReads, parseConsistency } from './service.js';

export const WalletSchema = Type.Object({
  id: Type.String(),
  currency: Type.String(),
  available: MoneyOut,
  pending: MoneyOut,
  updatedAt: Timestamp,
});

const ConsistencyHeaders = Type.Object({
  'wallet-consistency': Type.Optional(Type.String({ maxLength: 2048, description: 'the Wallet-Consistency header of a money response (wal_…=version,…): balances at least that new are returned' })),
});

const view = (w: { id: string; currency: string; available: bigint; pending: bigint; updatedAt: Date }) => ({ id: w.id, currency: w.currency, available: w.available, pending: w.pending, updatedAt: w.updatedAt });

export function walletRoutes(p: Platform): FastifyPluginAsyncTypebox {
  const reads = createWalletReads(p);
  return async (app) => {
    app.addHook('onRequest', app.authenticate);
    const tags = ['wallets'];

    app.get('/wallets', { schema: { tags, summary: "The user's wallets and balances", security: Bearer, headers: ConsistencyHeaders, response: { 200: Type.Object({ wallets: Type.Array(WalletSchema) }), ...problems(401) } } }, async (req) => {
      const me = req.principal!;
      return { wallets: (await reads.balances(me.userId, me.shard, parseConsistency(req.headers[CONSISTENCY_HEADER]), { consistency: req.headers[CONSISTENCY_HEADER] })).map(view) };
    });

    app.post('/wallets', { schema: { tags, summary: 'Open a wallet in another currency', security: Bearer, body: Type.Object({ currency: Currency }, { additionalProperties: false }), response: { 201: WalletSchema, ...problems(400, 401, 409) } } }, async (req, reply) => {
      const me = req.principal!;
      const wallet = await openWallet(p.db.forShard(me.shard).sql, me.userId, me.shard, req.body.currency);
      if (!wallet) throw new ProblemError('conflict', `You already have a ${req.body.currency} wallet.`);
      await reads.forget(me.userId);
      return reply.code(201).send(view(wallet));
    });

    app.get('/wallets/:id', { schema: { tags, summary: 'One wallet', security: Bearer, headers: ConsistencyHeaders, params: IdParam, response: { 200: WalletSchema, ...problems(401, 404) } } }, async (req) => {
      const me = req.principal!;
      const parsed = parseId(req.params.id, 'wal');
      if (!parsed || parsed.shard !== me.shard) throw new ProblemError('not_found', 'No such wallet.');
      const wallet = (await reads.balances(me.userId, me.shard, parseConsistency(req.headers[CONSISTENCY_HEADER]), { consistency: req.headers[CONSISTENCY_HEADER] })).find((w) => w.id === req.params.id);
      if (!wallet) throw new ProblemError('not_found', 'No such wallet.');
      return view(wallet);
    });
  };
}
