import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import type { Platform } from '../platform.js';
import { requestContext } from '../fraud/decide.js';
import { AmountIn, Bearer, Currency, IdParam, IdempotencyHeaders, MoneyOut, Timestamp, problems } from '../http/schemas.js';
import { ProblemError } from '../http/problem.js';
import { idempotentRequest } from '../http/idempotency.js';
import { createWalletDirectory } from '../ledger/wallet-directory.js';
import { createPaymentMethodService } from '../payment-methods/service.js';
import { createPaymentService } from './service.js';

const CreatePayment = Type.Object(
  {
    merchantId: Type.String({ minLength: 1, maxLength: 64, description: 'user id of a merchant' }),
    amount: AmountIn,
    currency: Currency,
    capture: Type.Optional(Type.Boolean({ default: true, description: 'false: only authorize (hold) now, capture later' })),
    paymentMethodId: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'pay with this card instead of the wallet balance' })),
  },
  { additionalProperties: false },
);
const OptionalAmount = Type.Object({ amount: Type.Optional(AmountIn) }, { additionalProperties: false });
const NoBody = Type.Object({}, { additionalProperties: false });

export const PaymentSchema = Type.Object({
  id: Type.String(),
  status: Type.Union(['authorized', 'captured', 'voided', 'expired', 'declined'].map((s) => Type.Literal(s))),
  merchantId: Type.String(),
  payerId: Type.String(),
  amount: MoneyOut,
  currency: Type.String(),
  capturedAmount: MoneyOut,
  refundedAmount: MoneyOut,
  source: Type.Union([Type.Literal('wallet'), Type.Literal('card')]),
  createdAt: Timestamp,
  expiresAt: Type.Optional(Timestamp),
  declineCode: Type.Optional(Type.String({ description: 'card_declined, insufficient_funds, expired_card' })),
});
export const RefundSchema = Type.Object({
  id: Type.String(),
  paymentId: Type.String(),
  amount: MoneyOut,
  currency: Type.String(),
  status: Type.Literal('completed'),
  createdAt: Timestamp,
});

/** capture and refunds: no amount means all (what is authorized, or what is left) */
const amountOrAll = (body: { amount?: number }): bigint | undefined => (body.amount === undefined ? undefined : BigInt(body.amount));

/** capture, void and refunds may be sent without a body: it means "all" */
async function emptyBodyIsEmptyObject(req: FastifyRequest): Promise<void> {
  if (req.body === undefined || req.body === null) req.body = {};
}

export function paymentRoutes(p: Platform): FastifyPluginAsyncTypebox {
  const payments = createPaymentService(p, createWalletDirectory(p.db), createPaymentMethodService(p));


  return async (app) => {
    app.addHook('onRequest', app.authenticate);
    const tags = ['payments'];
    const merchantOnly = 'The merchant of the payment only; anyone else gets 404.';

    app.post('/payments', {
      schema: { tags, summary: 'Pay a merchant from the wallet or a card (authorize, and capture unless capture is false)', security: Bearer, headers: IdempotencyHeaders, body: CreatePayment, response: { 201: PaymentSchema, ...problems(400, 401, 404, 409, 422, 503) } },
    }, async (req, reply) => {
      const b = req.body;
      const input = { merchantId: b.merchantId, amountMinor: BigInt(b.amount), currency: b.currency, capture: b.capture ?? true, ...(b.paymentMethodId !== undefined ? { paymentMethodId: b.paymentMethodId } : {}) };
      return idempotentRequest(p.inFlight, req, reply, (idem) => payments.create(req.principal!, input, idem, requestContext(req, p.config.fraudClientCountryHeader)));
    });

    app.get('/payments/:id', {
      schema: { tags, summary: 'A payment with its captured and refunded amounts (payer or merchant)', security: Bearer, params: IdParam, response: { 200: PaymentSchema, ...problems(401, 404) } },
    }, async (req) => {
      const payment = await payments.get(req.principal!, req.params.id);
      if (!payment) throw new ProblemError('not_found', 'No such payment.');
      return payment as typeof PaymentSchema.static;
    });

    app.post('/payments/:id/capture', {
      preValidation: emptyBodyIsEmptyObject,
      schema: { tags, summary: 'Capture an authorized payment (all, or part: the rest of the hold is released)', description: merchantOnly, security: Bearer, headers: IdempotencyHeaders, params: IdParam, body: OptionalAmount, response: { 200: PaymentSchema, ...problems(400, 401, 404, 409, 422, 503) } },
    }, async (req, reply) => {
      const amount = amountOrAll(req.body);
      return idempotentRequest(p.inFlight, req, reply, (idem) => payments.capture(req.principal!, req.params.id, amount, idem));
    });

    app.post('/payments/:id/void', {
      preValidation: emptyBodyIsEmptyObject,
      schema: {
        tags,
        summary: 'Void an authorized payment: the hold is released',
        description: merchantOnly,
        security: Bearer, headers: IdempotencyHeaders, params: IdParam, body: NoBody, response: { 200: PaymentSchema, ...problems(400, 401, 404, 409, 422, 503) },
      },
    }, async (req, reply) => {
      return idempotentRequest(p.inFlight, req, reply, (idem) => payments.void(req.principal!, req.params.id, idem));
    });

    app.post('/payments/:id/refunds', {
      preValidation: emptyBodyIsEmptyObject,
      schema: { tags, summary: 'Refund a captured payment (default: all that is left) to the payer', description: merchantOnly, security: Bearer, headers: IdempotencyHeaders, params: IdParam, body: OptionalAmount, response: { 201: RefundSchema, ...problems(400, 401, 404, 409, 422, 503) } },
    }, async (req, reply) => {
      const amount = amountOrAll(req.body);
      return idempotentRequest(p.inFlight, req, reply, (idem) => payments.refund(req.principal!, req.params.id, amount, idem));
    });
  };
}
