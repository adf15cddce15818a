/**
 * Builds the Fastify app (no listen): infrastructure plugins, then one encapsulated plugin per
 * feature. Tests call buildApp() and use app.inject().
 */
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { constants as zlib } from 'node:zlib';
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import compress from '@fastify/compress';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { Ajv, type Options as AjvOptions } from 'ajv';
import addFormats from 'ajv-formats';
import type { Platform } from './platform.js';
import { ProblemError, problem, type Problem } from './http/problem.js';
import { EngineUnavailable } from './ledger/engine.js';
import { fencedShardOf } from './db/shard-map.js';
import { isConnectionLoss } from './db/index.js';
import { ProblemSchema } from './http/schemas.js';
import { authRoutes } from './auth/routes.js';
import { userRoutes } from './users/routes.js';
import { walletRoutes } from './wallets/routes.js';
import { transferRoutes } from './transfers/routes.js';
import { historyRoutes } from './history/routes.js';
import { receiptRoutes } from './receipts/routes.js';
import { paymentMethodRoutes } from './payment-methods/routes.js';
import { topupRoutes } from './topups/routes.js';
import { paymentRoutes } from './payments/routes.js';
import { notificationRoutes } from './notify/routes.js';
import { webhookRoutes } from './webhooks/routes.js';
import { fraudAdminRoutes } from './fraud/routes.js';
import { operationsRoutes } from './observability/routes.js';
import { docsHttpCaching } from './http/l3.js';
import { refuseNul } from './http/nul.js';
import { registerShedding, shedLimits } from './http/shedding.js';
import type { Principal } from './auth/tokens.js';
import { securityHeaders } from './http/security-headers.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

/** the longest path parameter the router takes (ids are far shorter) */
const MAX_PARAM_LENGTH = 200;
const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;
/** the files @fastify/swagger-ui serves under /docs/static/ */
const SWAGGER_UI_STATIC = join(dirname(createRequire(import.meta.url).resolve('@fastify/swagger-ui')), 'static');

function makeAjv(opts: AjvOptions): Ajv {
  const ajv = new Ajv({ removeAdditional: false, useDefaults: true, allErrors: false, strict: false, ...opts });
  (addFormats as unknown as (a: Ajv) => void)(ajv);
  return ajv;
}

export async function buildApp(platform: Platform): Promise<FastifyInstance> {
  const { config } = platform;
  const security = securityHeaders({ contentSecurityPolicy: { directives: { 'img-src': ["'self'", 'data:'] } }, strictTransportSecurity: config.nodeEnv === 'production' });
  const app = Fastify({
    loggerInstance: platform.log,
    bodyLimit: config.bodyLimitBytes,
    requestIdHeader: false,
    genReqId: (req) => {
      const incoming = req.headers['x-request-id'];
      return typeof incoming === 'string' && REQUEST_ID_RE.test(incoming) ? incoming : randomUUID();
    },
    return503OnClosing: true,
    // one line per request only when debugging: at 10k req/s request logs cost more than the work
    logController: new LogController({ disableRequestLogging: config.logLevel !== 'debug' && config.logLevel !== 'trace' }),
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: MAX_PARAM_LENGTH },
    // URLs the router refuses before any hook runs (a malformed percent-escape, an overlong
    // path segment): a problem like every other answer, with the headers the hooks would add
    frameworkErrors: (err, req, reply) => {
      const { status, body } =
        err.code === 'FST_ERR_BAD_URL'
          ? { status: 400, body: problem('validation_failed', 'The URL is not valid: it has a malformed percent-escape.') }
          : err.code === 'FST_ERR_MAX_PARAM_LENGTH'
            ? { status: 400, body: problem('validation_failed', `A path segment is longer than ${MAX_PARAM_LENGTH} characters.`) }
            : { status: 500, body: problem('internal', `Something went wrong on our side. Quote request id ${req.id} when reporting it.`) };
      if (status === 500) req.log.error({ err, reqId: req.id }, 'unhandled framework error');
      (reply as FastifyReply).code(status).headers(security).header('x-request-id', req.id).type('application/problem+json').send(body);
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Bodies are never coerced ("100" is not an amount); query strings and paths are text, so
  // they are coerced to the declared types.
  const bodyAjv = makeAjv({ coerceTypes: false });
  const textAjv = makeAjv({ coerceTypes: 'array' });
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? bodyAjv.compile(schema) : textAjv.compile(schema)));

  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });
  app.addHook('onResponse', async (req, reply) => {
    platform.metrics.httpRequest(req.method, req.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
  });

  app.setErrorHandler((err: FastifyError, req, reply) => {
    const { status, body, headers } = toProblem(err, req, platform);
    reply.code(status).headers(headers).type('application/problem+json').send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).type('application/problem+json').send(problem('not_found', `No route ${req.method} ${req.url.split('?')[0]}`));
  });

  app.addHook('onRequest', (_req, reply, done) => {
    reply.headers(security);
    done();
  });
  await app.register(compress, { global: true, threshold: 1024, encodings: ['br', 'gzip'], brotliOptions: { params: { [zlib.BROTLI_PARAM_QUALITY]: 4 } } });
  // after the security headers, so a shed answer carries them too; before every route's auth
  registerShedding(app as unknown as FastifyInstance, shedLimits(config), platform.metrics.registry);
  refuseNul(app as unknown as FastifyInstance);
  app.addSchema(ProblemSchema);
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'Wallet platform API', version: '1.0.0', description: 'The public HTTP contract of the wallet platform (see API.md). Money is in integer minor units.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
    },
    refResolver: { buildLocalReference: (json, _base, _frag, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
  });
  // L3: the document and the UI's files are cacheable (ETag, 304, Cache-Control), in a scope of their own
  await app.register(async (docs) => {
    docsHttpCaching(docs, { staticRoot: SWAGGER_UI_STATIC, documentMaxAgeSeconds: 300, assetMaxAgeSeconds: 86_400 });
    await docs.register(swaggerUi, { routePrefix: '/docs', staticCSP: true, uiConfig: { docExpansion: 'list' } });
  });

  app.decorate('authenticate', async (req: FastifyRequest) => {
    const header = req.headers.authorization;
    const token = typeof header === 'string' && header.startsWith('Bearer ') ? header.slice(7).trim() : undefined;
    const principal = token ? platform.tokens.verify(token) : undefined;
    if (!principal) throw new ProblemError('unauthorized', 'A valid bearer token is required.', { headers: { 'www-authenticate': 'Bearer' } });
    req.principal = principal;
  });

  await app.register(operationsRoutes(platform));
  await app.register(authRoutes(platform), { prefix: '/v1' });
  await app.register(userRoutes(platform), { prefix: '/v1' });
  await app.register(walletRoutes(platform), { prefix: '/v1' });
  await app.register(paymentMethodRoutes(platform), { prefix: '/v1' });
  await app.register(topupRoutes(platform), { prefix: '/v1' });
  await app.register(transferRoutes(platform), { prefix: '/v1' });
  await app.register(historyRoutes(platform), { prefix: '/v1' });
  await app.register(receiptRoutes(platform), { prefix: '/v1' });
  await app.register(paymentRoutes(platform), { prefix: '/v1' });
  await app.register(notificationRoutes(platform), { prefix: '/v1' });
  await app.register(webhookRoutes(platform), { prefix: '/v1' });
  await app.register(fraudAdminRoutes(platform), { prefix: '/v1' });
  await app.ready();
  return app as unknown as FastifyInstance;
}

declare module 'fastify' {
  interface FastifyInstance {
    authenticate(req: FastifyRequest): Promise<void>;
  }
}

/** One place that turns any failure into a problem; 5xx never carry internals. */
function toProblem(err: FastifyError, req: FastifyRequest, platform: Platform): { status: number; body: Problem; headers: Record<string, string> } {
  if (err instanceof ProblemError) return { status: err.problem.status, body: err.problem, headers: err.headers };
  if (err instanceof EngineUnavailable) return { status: 503, body: problem('unavailable', 'The ledger is busy; retry with the same Idempotency-Key.'), headers: { 'retry-after': '1' } };
  if (err.validation) {
    const errors = err.validation.map((v) => ({ path: `${err.validationContext ?? ''}${v.instancePath}`, message: v.message ?? 'is not valid', ...(v.keyword === 'additionalProperties' ? { field: (v.params as { additionalProperty?: string }).additionalProperty } : {}) }));
    const first = errors[0]!;
    const detail = first.field ? `${first.path || err.validationContext}: unknown field "${first.field}"` : `${first.path}: ${first.message}`;
    return { status: 400, body: problem('validation_failed', detail, { errors }), headers: {} };
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { status: 413, body: problem('payload_too_large', `The body exceeds ${platform.config.bodyLimitBytes} bytes.`), headers: {} };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { status: 415, body: problem('unsupported_media_type', 'Send JSON (Content-Type: application/json).'), headers: {} };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return { status: 400, body: problem('validation_failed', 'The body is not valid JSON.'), headers: {} };
  }
  if (err instanceof SyntaxError || (err.statusCode === 400 && err.code?.startsWith('FST_'))) {
    return { status: 400, body: problem('validation_failed', 'The request could not be parsed.'), headers: {} };
  }
  if (err.statusCode === 503) return { status: 503, body: problem('unavailable'), headers: { 'retry-after': '1' } };
  if (fencedShardOf(err) !== undefined) {
    // a write outside the ledger engine met a shard move's fence (src/db/shard-map.ts): this
    // process's routing is stale or the move is in its final step; a retry goes where it lives now
    void platform.db.refreshShardMap().catch(() => undefined);
    return { status: 503, body: problem('unavailable', 'Your data is moving between database clusters; retry in a second (with the same Idempotency-Key for money requests).'), headers: { 'retry-after': '1' } };
  }
  if (isDatabaseUnavailable(err)) {
    // a cluster down or failing over: only its shards' users get this, and a retry with the same
    // Idempotency-Key is safe (an answer that was lost replays)
    req.log.warn({ err: { code: (err as { code?: string }).code, message: err.message }, reqId: req.id }, 'database unavailable');
    return { status: 503, body: problem('unavailable', 'Your data is briefly unavailable; retry in a few seconds (with the same Idempotency-Key for money requests).'), headers: { 'retry-after': '2' } };
  }
  if (isMissingPrincipal(err, req.principal?.userId)) {
    // a valid token for a user the database does not hold (PATCH /me and GET /me answer the same)
    return { status: 401, body: problem('unauthorized', 'The user of this token no longer exists.'), headers: { 'www-authenticate': 'Bearer' } };
  }
  req.log.error({ err, reqId: req.id }, 'unhandled error');
  return { status: 500, body: problem('internal', `Something went wrong on our side. Quote request id ${req.id} when reporting it.`), headers: {} };
}

/** connection loss, refused or timed-out connections, a server shutting down or not yet accepting, a write reaching a standby */
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '08000', '08001', '08003', '08004', '08006', '25006', '53300']);

export function isDatabaseUnavailable(err: unknown): boolean {
  if (isConnectionLoss(err)) return true;
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && (UNAVAILABLE_SQLSTATES.has(code) || code === 'DB_DEADLINE');
}

/**
 * A foreign-key violation naming the caller's own user id as missing from users: a row of theirs
 * (a wallet, a card, a webhook) was to be written for a user that does not exist. Matched on the
 * constraint (`<table>_user_id_fkey`, PostgreSQL's default name for a `user_id references users`)
 * and on the key in the detail, `(user_id)=(<id>)`, the one part of that message PostgreSQL
 * never translates (lc_messages in German: "Schlüssel (user_id)=(…) ist nicht in Tabelle »users«
 * vorhanden."). Only the caller's own id counts, so a missing counterparty can never pass for a
 * bad token.
 */
export function isMissingPrincipal(err: unknown, userId: string | undefined): boolean {
  const e = err as { code?: unknown; detail?: unknown; constraint_name?: unknown };
  return (
    userId !== undefined &&
    e.code === '23503' &&
    typeof e.constraint_name === 'string' &&
    e.constraint_name.endsWith('_user_id_fkey') &&
    typeof e.detail === 'string' &&
    e.detail.includes(`(user_id)=(${userId})`)
  );
}
