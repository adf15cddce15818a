import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Platform } from '../platform.js';
import { requestContext } from '../fraud/decide.js';
import { AmountIn, Bearer, Currency, IdempotencyHeaders, MoneyOut, Timestamp, problems } from '../http/schemas.js';
import { idempotentRequest } from '../http/idempotency.js';
import { createWalletDirectory } from '../ledger/wallet-directory.js';
import { createPaymentMethodService } from '../payment-methods/service.js';
import { createTopupService } from './service.js';

const CreateTopup = Type.Object({ paymentMethodId: Type.String({ minLength: 1, maxLength: 64 }), amount: AmountIn, currency: Currency }, { additionalProperties: false });
const TopupSchema = Type.Object({
  id: Type.String(),
  status: Type.Union([Type.Literal('completed'), Type.Literal('declined'), Type.Literal('pending_review')], { description: 'pending_review: held by fraud screening; the card is authorized and the credit pending until an analyst decides' }),
  amount: MoneyOut,
  currency: Type.String(),
  paymentMethodId: Type.String(),
  createdAt: Timestamp,
  declineCode: Type.Optional(Type.String({ description: 'card_declined, insufficient_funds, expired_card' })),
});

export function topupRoutes(p: Platform): FastifyPluginAsyncTypebox {
  const topups = createTopupService(p, createWalletDirectory(p.db), createPaymentMethodService(p));
  return async (app) => {
    app.addHook('onRequest', app.authenticate);
    app.post('/topups', {
      schema: { tags: ['topups'], summary: 'Fund the wallet from a card (authorized and captured at the network)', security: Bearer, headers: IdempotencyHeaders, body: CreateTopup, response: { 201: TopupSchema, ...problems(400, 401, 404, 409, 422, 503) } },
    }, async (req, reply) => {
      const b = req.body;
      return idempotentRequest(p.inFlight, req, reply, (idem) => topups.topup(req.principal!, { paymentMethodId: b.paymentMethodId, amountMinor: BigInt(b.amount), currency: b.currency }, idem, requestContext(req, p.config.fraudClientCountryHeader)));
    });
  };
}
