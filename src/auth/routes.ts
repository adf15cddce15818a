/**
 * POST /v1/auth/token. Unknown email and wrong password get the same answer after the same
 * work. Failed logins are limited per account and per client address (failures only), in the
 * database so every api process shares the counts. Every sign-in and failed sign-in is a
 * security event for the audit log (src/audit/security.ts).
 */
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Platform } from '../platform.js';
import { problems } from '../http/schemas.js';
import { ProblemError } from '../http/problem.js';
import { createUserService, normalizeEmail } from '../users/service.js';
import { dummyHash, verifyPassword } from './passwords.js';
import { hashShard } from '../shared/ids.js';
import type { Sql } from '../db/index.js';
import { failedLoginEvent, recordSecurityEvent, type SecurityEvent } from '../audit/security.js';

const Credentials = Type.Object({ email: Type.String({ minLength: 1, maxLength: 254 }), password: Type.String({ minLength: 1, maxLength: 256 }) }, { additionalProperties: false });
const TokenSchema = Type.Object({ accessToken: Type.String(), tokenType: Type.Literal('Bearer'), expiresIn: Type.Integer({ description: 'seconds' }) });

export function authRoutes(p: Platform): FastifyPluginAsyncTypebox {
  const users = createUserService(p);
  const { loginWindowSeconds: windowS } = p.config;
  const limits = [
    { prefix: 'acct', max: p.config.loginMaxFailuresPerAccount },
    { prefix: 'ip', max: p.config.loginMaxFailuresPerIp },
  ];
  const sqlFor = (bucket: string) => p.db.forShard(hashShard(bucket)).sql;

  /** seconds until the bucket may try again, or 0 */
  async function blockedFor(bucket: string, max: number): Promise<number> {
    const rows = await sqlFor(bucket)<{ at: Date }[]>`
      select at from login_failures where bucket = ${bucket} and at > now() - make_interval(secs => ${windowS}) order by at desc limit ${max}`;
    if (rows.length < max) return 0;
    const oldest = rows[rows.length - 1]!.at.getTime();
    return Math.max(1, Math.ceil((oldest + windowS * 1000 - Date.now()) / 1000));
  }

  /**
   * The failure counts and the security event, one transaction per cluster they fall on: where
   * the event shares a cluster with a count (always, for an unknown email), both commit or neither.
   */
  async function recordFailure(buckets: string[], event: SecurityEvent): Promise<void> {
    const writes = new Map<Sql, { buckets: string[]; event?: SecurityEvent }>();
    const on = (sql: Sql) => writes.get(sql) ?? writes.set(sql, { buckets: [] }).get(sql)!;
    for (const b of buckets) on(sqlFor(b)).buckets.push(b);
    on(p.db.forShard(event.shard).sql).event = event;
    await Promise.all(
      [...writes].map(([sql, w]) =>
        sql.begin(async (tx) => {
          if (w.buckets.length) await tx`insert into login_failures (bucket) select unnest(${w.buckets}::text[])`;
          if (w.event) await recordSecurityEvent(tx, w.event);
        }),
      ),
    );
  }

  return async (app) => {
    app.post('/auth/token', { schema: { tags: ['auth'], summary: 'Exchange email and password for an access token', body: Credentials, response: { 200: TokenSchema, ...problems(400, 401, 429) } } }, async (req, reply) => {
      const buckets = [`acct:${normalizeEmail(req.body.email)}`, `ip:${req.ip}`];
      for (const [i, bucket] of buckets.entries()) {
        const wait = await blockedFor(bucket, limits[i]!.max);
        if (wait > 0) {
          throw new ProblemError('rate_limited', 'Too many failed sign-in attempts; try again later.', {
            headers: { 'retry-after': String(wait), 'ratelimit-limit': String(limits[i]!.max), 'ratelimit-remaining': '0', 'ratelimit-reset': String(wait) },
          });
        }
      }
      const user = await users.findForLogin(req.body.email);
      const ok = await verifyPassword(req.body.password, user?.passwordHash ?? dummyHash(p.config.passwordHashLog2Cost));
      if (!user || !ok) {
        await recordFailure(buckets, failedLoginEvent({ user, email: req.body.email, ip: req.ip, secret: p.config.jwtSecret, shard: hashShard(buckets[0]!) }));
        throw new ProblemError('unauthorized', 'The email or password is not correct.');
      }
      await recordSecurityEvent(p.db.forShard(user.shard).sql, { type: 'security.login', userId: user.id, shard: user.shard, ip: req.ip });
      return reply.send({ ...p.tokens.issue(user.id), tokenType: 'Bearer' as const });
    });
  };
}
