/**
 * The analysts' review queue: GET /v1/admin/fraud/reviews, GET /v1/admin/fraud/reviews/{id},
 * POST /v1/admin/fraud/reviews/{id}/approve|decline. Only tokens carrying the `operator` role
 * (issued by `wallet operator-token`); anyone else gets 404, as for any other user's data.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Platform } from '../platform.js';
import { Bearer, IdParam, MoneyOut, Timestamp, problems } from '../http/schemas.js';
import { ProblemError } from '../http/problem.js';
import { sendResult, unavailableFrom } from '../http/idempotency.js';
import { createReviewService, REVIEWS_PAGE_MAX } from './reviews.js';

export const OPERATOR_ROLE = 'operator';

const ReviewSchema = Type.Object({
  id: Type.String({ description: 'the held transfer, top-up or payment' }),
  kind: Type.Union([Type.Literal('transfer'), Type.Literal('topup'), Type.Literal('payment')]),
  userId: Type.String(),
  counterpartyId: Type.Union([Type.String(), Type.Null()]),
  amount: MoneyOut,
  currency: Type.String(),
  score: Type.Number({ minimum: 0, maximum: 1 }),
  reasons: Type.Array(Type.String()),
  status: Type.Union([Type.Literal('pending'), Type.Literal('approved'), Type.Literal('declined')]),
  decidedBy: Type.Union([Type.String(), Type.Null()]),
  decidedAt: Type.Union([Timestamp, Type.Null()]),
  createdAt: Timestamp,
});

export function fraudAdminRoutes(p: Platform): FastifyPluginAsyncTypebox {
  const reviews = createReviewService(p);
  return async (app) => {
    app.addHook('onRequest', app.authenticate);
    app.addHook('onRequest', async (req) => {
      if (!req.principal?.roles.includes(OPERATOR_ROLE)) throw new ProblemError('not_found', `No route ${req.method} ${req.url.split('?')[0]}`);
    });
    const tags = ['fraud review (operators)'];

    app.get('/admin/fraud/reviews', {
      schema: {
        tags,
        summary: 'The review queue (pending: oldest first; decided: newest first)',
        security: Bearer,
        querystring: Type.Object({ status: Type.Optional(Type.Union([Type.Literal('pending'), Type.Literal('approved'), Type.Literal('declined')], { default: 'pending' })), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: REVIEWS_PAGE_MAX, default: 50 })) }, { additionalProperties: false }),
        response: { 200: Type.Object({ reviews: Type.Array(ReviewSchema) }), ...problems(400, 401, 404) },
      },
    }, async (req) => ({ reviews: await reviews.list(req.query.status ?? 'pending', req.query.limit ?? 50) }));

    app.get('/admin/fraud/reviews/:id', { schema: { tags, summary: 'One review', security: Bearer, params: IdParam, response: { 200: ReviewSchema, ...problems(401, 404) } } }, async (req) => {
      const r = await reviews.get(req.params.id);
      if (!r) throw new ProblemError('not_found', 'No such review.');
      return r;
    });

    for (const verdict of ['approve', 'decline'] as const) {
      app.post(`/admin/fraud/reviews/:id/${verdict}`, {
        schema: {
          tags,
          summary: verdict === 'approve' ? 'Approve: the held money moves' : 'Decline: the hold is released to the sender',
          security: Bearer,
          params: IdParam,
          response: { 200: ReviewSchema, ...problems(401, 404, 409, 503) },
        },
      }, async (req, reply) => sendResult(reply, await reviews.decide(req.principal!.userId, req.params.id, verdict).catch(unavailableFrom)));
    }
  };
}
