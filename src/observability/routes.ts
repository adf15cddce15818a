import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Platform } from '../platform.js';

const Health = Type.Object({ status: Type.String() });
const Readiness = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('degraded'), Type.Literal('unavailable')], { description: 'degraded: the API answers, without an optional dependency' }),
  failing: Type.Optional(Type.Array(Type.String(), { description: 'required dependencies that do not answer, e.g. postgres:main' })),
  degraded: Type.Optional(Type.Array(Type.String(), { description: 'optional dependencies that are not used now, e.g. redis (reads fall through to PostgreSQL)' })),
});

export function operationsRoutes(p: Platform): FastifyPluginAsyncTypebox {
  return async (app) => {
    const tags = ['operations'];
    app.get('/healthz', { schema: { tags, summary: 'The process lives', response: { 200: Health } } }, async () => ({ status: 'ok' }));

    app.get('/readyz', { schema: { tags, summary: 'Every required dependency of this role answers (503 names those that do not); Redis down is degraded, not unready', response: { 200: Readiness, 503: Readiness } } }, async (_req, reply) => {
      const failing = (await p.db.unreachable()).map((name) => `postgres:${name}`);
      const degraded = p.cache.redisStatus() === 'degraded' ? ['redis'] : [];
      if (failing.length) return reply.code(503).header('retry-after', '5').send({ status: 'unavailable', failing, ...(degraded.length ? { degraded } : {}) });
      // without Redis the API keeps answering (L1 and PostgreSQL): taking the instance out of the load balancer would only make things worse
      if (degraded.length) return { status: 'degraded' as const, degraded };
      return { status: 'ready' as const };
    });

    app.get('/metrics', { schema: { tags, summary: 'Prometheus metrics (text format)', hide: false } }, async (_req, reply) => {
      reply.type(p.metrics.registry.contentType);
      return p.metrics.registry.metrics();
    });
  };
}
