import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Platform } from '../platform.js';
import { Bearer, IdParam, Timestamp, problems } from '../http/schemas.js';
import { ProblemError } from '../http/problem.js';
import { createPaymentMethodService } from './service.js';

const AddCard = Type.Object(
  {
    type: Type.Literal('card'),
    number: Type.String({ pattern: '^[0-9]{12,19}$', description: 'card number, digits only; stored only in the vault, never returned' }),
    expMonth: Type.Integer({ minimum: 1, maximum: 12 }),
    expYear: Type.Integer({ minimum: 2000, maximum: 2100 }),
    cvc: Type.String({ pattern: '^[0-9]{3,4}$', description: 'checked for shape, never stored' }),
  },
  { additionalProperties: false },
);
export const PaymentMethodSchema = Type.Object({
  id: Type.String(),
  type: Type.Literal('card'),
  brand: Type.String(),
  last4: Type.String(),
  expMonth: Type.Integer(),
  expYear: Type.Integer(),
  createdAt: Timestamp,
});

export function paymentMethodRoutes(p: Platform): FastifyPluginAsyncTypebox {
  const methods = createPaymentMethodService(p);
  return async (app) => {
    app.addHook('onRequest', app.authenticate);
    const tags = ['payment-methods'];
    app.post('/payment-methods', { schema: { tags, summary: 'Add a card (tokenized in the vault)', security: Bearer, body: AddCard, response: { 201: PaymentMethodSchema, ...problems(400, 401, 422) } } }, async (req, reply) => {
      const me = req.principal!;
      const result = await methods.addCard(me.userId, me.shard, req.body);
      if (!result.ok && result.error === 'too_many') throw new ProblemError('limit_exceeded', `You have ${p.config.paymentMethodsMax} payment methods, the most one user may hold; remove one to add another.`);
      if (!result.ok) throw new ProblemError('card_invalid', result.error === 'expired' ? 'The card has expired.' : 'The card number is not valid.');
      return reply.code(201).send(result.value);
    });
    app.get('/payment-methods', { schema: { tags, summary: "The user's payment methods", security: Bearer, response: { 200: Type.Object({ paymentMethods: Type.Array(PaymentMethodSchema) }), ...problems(401) } } }, async (req) => {
      const me = req.principal!;
      return { paymentMethods: await methods.list(me.userId, me.shard) };
    });
    app.delete('/payment-methods/:id', { schema: { tags, summary: 'Remove a payment method', security: Bearer, params: IdParam, response: { 204: Type.Null(), ...problems(401, 404) } } }, async (req, reply) => {
      const me = req.principal!;
      if (!(await methods.remove(me.userId, me.shard, req.params.id))) throw new ProblemError('not_found', 'No such payment method.');
      return reply.code(204).send(null);
    });
  };
}
