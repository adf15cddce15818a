import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Platform } from '../platform.js';

const Health = Type.Object({ status: Type.String(), failing: Type.Optional(Type.Array(Type.String())) });

export function operationsRoutes(p: Platform): FastifyPluginAsyncTypebox {
  return async (app) => {
    const tags = ['operations'];
    app.get('/healthz', { schema: { tags, summary: 'The process lives', response: { 200: Health } } }, async () => ({ status: 'ok' }));

    app.get('/readyz', { schema: { tags, summary: 'Every dependency of this role answers', response: { 200: Health, 503: Health } } }, async (_req, reply) => {
      const failing = (await p.db.unreachable()).map((name) => `postgres:${name}`);
      if (failing.length) return reply.code(503).header('retry-after', '5').send({ status: 'unavailable', failing });
      return { status: 'ready' };
    });

    app.get('/metrics', { schema: { tags, summary: 'Prometheus metrics (text format)', hide: false } }, async (_req, reply) => {
      reply.type(p.metrics.registry.contentType);
      return p.metrics.registry.metrics();
    });
  };
}
