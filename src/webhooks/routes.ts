import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Platform } from '../platform.js';
import { Bearer, IdParam, Timestamp, problems } from '../http/schemas.js';
import { ProblemError } from '../http/problem.js';
import { URL_MAX_LENGTH } from './addresses.js';
import { ALL_EVENTS, DELIVERY_STATUSES, WEBHOOK_EVENT_TYPES, createWebhookService, type DeliveryStatus } from './service.js';

const EventType = Type.Unsafe<string>({ type: 'string', enum: [...WEBHOOK_EVENT_TYPES, ALL_EVENTS], description: `a money event type, or "${ALL_EVENTS}" (alone) for every type` });
const Status = Type.Unsafe<DeliveryStatus>({ type: 'string', enum: [...DELIVERY_STATUSES] });

const CreateWebhook = Type.Object(
  {
    url: Type.String({ minLength: 1, maxLength: URL_MAX_LENGTH, description: 'where deliveries are POSTed; https (http only where the deployment allows it), no credentials, no fragment' }),
    eventTypes: Type.Array(EventType, { minItems: 1, maxItems: 20, uniqueItems: true }),
    description: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);

const WebhookSchema = Type.Object({
  id: Type.String(),
  url: Type.String(),
  eventTypes: Type.Array(Type.String()),
  description: Type.Optional(Type.String()),
  createdAt: Timestamp,
});
const CreatedWebhook = Type.Composite([
  WebhookSchema,
  Type.Object({
    secret: Type.String({
      description:
        'signing secret (whsec_...), shown only in this answer. Each delivery carries Wallet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 keyed with this secret over "<t>.<raw body>">; also Wallet-Event-Id, Wallet-Event-Type, Wallet-Delivery-Id. Refuse a t more than 5 minutes old.',
    }),
  }),
]);

const DeliverySchema = Type.Object({
  id: Type.String(),
  endpointId: Type.String(),
  eventId: Type.String({ description: 'the same on every attempt and every endpoint: de-duplicate by it' }),
  eventType: Type.String(),
  status: Type.Unsafe<DeliveryStatus>({ type: 'string', enum: [...DELIVERY_STATUSES], description: 'pending (being attempted, with backoff), delivered (a 2xx answer), dead (retries exhausted; POST .../retry)' }),
  attempts: Type.Integer({ minimum: 0 }),
  nextAttemptAt: Type.Optional(Timestamp),
  lastStatusCode: Type.Optional(Type.Integer({ description: 'HTTP status of the last attempt (absent when it got no answer)' })),
  lastError: Type.Optional(Type.String()),
  createdAt: Timestamp,
  deliveredAt: Type.Optional(Timestamp),
});

const DeliveryParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }), deliveryId: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false });
const DeliveriesQuery = Type.Object(
  {
    status: Type.Optional(Status),
    limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
    cursor: Type.Optional(Type.String({ pattern: '^dlv_[0-9A-Z]{29}$', description: 'nextCursor of the previous page' })),
  },
  { additionalProperties: false },
);

export function webhookRoutes(p: Platform): FastifyPluginAsyncTypebox {
  const webhooks = createWebhookService(p);
  return async (app) => {
    app.addHook('onRequest', app.authenticate);
    const tags = ['webhooks'];

    app.post('/webhooks', { schema: { tags, summary: 'Register a webhook endpoint for money events', security: Bearer, body: CreateWebhook, response: { 201: CreatedWebhook, ...problems(400, 401, 422) } } }, async (req, reply) => {
      const me = req.principal!;
      const result = await webhooks.create(me.userId, me.shard, req.body);
      if (!result.ok) throw new ProblemError(result.error, result.detail);
      return reply.code(201).send(result.value);
    });

    app.get('/webhooks', { schema: { tags, summary: "The user's webhook endpoints (no secrets)", security: Bearer, response: { 200: Type.Object({ webhooks: Type.Array(WebhookSchema) }), ...problems(401) } } }, async (req) => {
      const me = req.principal!;
      return { webhooks: await webhooks.list(me.userId, me.shard) };
    });

    app.get('/webhooks/:id', { schema: { tags, summary: 'A webhook endpoint', security: Bearer, params: IdParam, response: { 200: WebhookSchema, ...problems(401, 404) } } }, async (req) => {
      const me = req.principal!;
      const endpoint = await webhooks.get(me.userId, me.shard, req.params.id);
      if (!endpoint) throw new ProblemError('not_found', 'No such webhook.');
      return endpoint;
    });

    app.delete('/webhooks/:id', { schema: { tags, summary: 'Delete a webhook endpoint and its deliveries (pending ones are not sent)', security: Bearer, params: IdParam, response: { 204: Type.Null(), ...problems(401, 404) } } }, async (req, reply) => {
      const me = req.principal!;
      if (!(await webhooks.remove(me.userId, me.shard, req.params.id))) throw new ProblemError('not_found', 'No such webhook.');
      return reply.code(204).send(null);
    });

    app.get(
      '/webhooks/:id/deliveries',
      {
        schema: {
          tags,
          summary: "A webhook's deliveries, newest first; status=dead is the dead-letter list",
          security: Bearer,
          params: IdParam,
          querystring: DeliveriesQuery,
          response: { 200: Type.Object({ deliveries: Type.Array(DeliverySchema), nextCursor: Type.Optional(Type.String()) }), ...problems(400, 401, 404) },
        },
      },
      async (req) => {
        const me = req.principal!;
        const page = await webhooks.deliveries(me.userId, me.shard, req.params.id, req.query);
        if (!page) throw new ProblemError('not_found', 'No such webhook.');
        return page;
      },
    );

    app.post(
      '/webhooks/:id/deliveries/:deliveryId/retry',
      { schema: { tags, summary: 'Send a dead delivery again (a fresh retry window)', security: Bearer, params: DeliveryParams, response: { 202: DeliverySchema, ...problems(401, 404, 409) } } },
      async (req, reply) => {
        const me = req.principal!;
        const result = await webhooks.retry(me.userId, me.shard, req.params.id, req.params.deliveryId);
        if (!result.ok) throw new ProblemError(result.error, result.detail);
        return reply.code(202).send(result.value);
      },
    );
  };
}
