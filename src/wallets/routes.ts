import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Platform } from '../platform.js';
import { Bearer, Currency, IdParam, MoneyOut, Timestamp, problems } from '../http/schemas.js';
import { ProblemError } from '../http/problem.js';
import { openWallet, walletsOf, WALLET_COLUMNS, walletFromRow, type WalletRow } from '../ledger/accounts.js';
import { parseId } from '../shared/ids.js';

export const WalletSchema = Type.Object({
  id: Type.String(),
  currency: Type.String(),
  available: MoneyOut,
  pending: MoneyOut,
  updatedAt: Timestamp,
});

const view = (w: WalletRow) => ({ id: w.id, currency: w.currency, available: w.available, pending: w.pending, updatedAt: w.updatedAt });

export function walletRoutes(p: Platform): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.addHook('onRequest', app.authenticate);
    const tags = ['wallets'];

    app.get('/wallets', { schema: { tags, summary: "The user's wallets and balances", security: Bearer, response: { 200: Type.Object({ wallets: Type.Array(WalletSchema) }), ...problems(401) } } }, async (req) => {
      const me = req.principal!;
      return { wallets: (await walletsOf(p.db.forShard(me.shard).sql, me.userId)).map(view) };
    });

    app.post('/wallets', { schema: { tags, summary: 'Open a wallet in another currency', security: Bearer, body: Type.Object({ currency: Currency }, { additionalProperties: false }), response: { 201: WalletSchema, ...problems(400, 401, 409) } } }, async (req, reply) => {
      const me = req.principal!;
      const wallet = await openWallet(p.db.forShard(me.shard).sql, me.userId, me.shard, req.body.currency);
      if (!wallet) throw new ProblemError('conflict', `You already have a ${req.body.currency} wallet.`);
      return reply.code(201).send(view(wallet));
    });

    app.get('/wallets/:id', { schema: { tags, summary: 'One wallet', security: Bearer, params: IdParam, response: { 200: WalletSchema, ...problems(401, 404) } } }, async (req) => {
      const me = req.principal!;
      const parsed = parseId(req.params.id, 'wal');
      if (!parsed || parsed.shard !== me.shard) throw new ProblemError('not_found', 'No such wallet.');
      const [row] = await p.db.forShard(me.shard).sql.unsafe(`select ${WALLET_COLUMNS} from accounts where id = $1 and user_id = $2 and kind = 'user'`, [req.params.id, me.userId]);
      if (!row) throw new ProblemError('not_found', 'No such wallet.');
      return view(walletFromRow(row));
    });
  };
}
