import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Platform } from '../platform.js';
import { Bearer, Currency, problems } from '../http/schemas.js';
import { ProblemError } from '../http/problem.js';
import { createUserService, REGIONS } from './service.js';
import { createWalletReads } from '../wallets/service.js';
import { UserSchema } from './schemas.js';

const Region = Type.Union(REGIONS.map((r) => Type.Literal(r)), { description: 'home region; decides the shard range the user lives in' });

const CreateUser = Type.Object(
  {
    email: Type.String({ format: 'email', maxLength: 254 }),
    password: Type.String({ minLength: 10, maxLength: 256 }),
    name: Type.String({ minLength: 1, maxLength: 200 }),
    kind: Type.Optional(Type.Union([Type.Literal('person'), Type.Literal('merchant')], { default: 'person' })),
    region: Type.Optional(Region),
    currency: Type.Optional(Currency),
  },
  { additionalProperties: false },
);
const PatchUser = Type.Object({ name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })), region: Type.Optional(Region) }, { additionalProperties: false, minProperties: 1 });

export function userRoutes(p: Platform): FastifyPluginAsyncTypebox {
  const users = createUserService(p);
  const reads = createWalletReads(p);
  return async (app) => {
    app.post('/users', { schema: { tags: ['users'], summary: 'Sign up; opens a wallet in `currency` (default USD)', body: CreateUser, response: { 201: UserSchema, ...problems(400, 409) } } }, async (req, reply) => {
      const b = req.body;
      const result = await users.create({ email: b.email, password: b.password, name: b.name, kind: b.kind ?? 'person', region: b.region ?? 'us-east', currency: b.currency ?? 'USD' });
      if (!result.ok) throw new ProblemError('conflict', 'A user with this email already exists.');
      return reply.code(201).send(result.user);
    });

    app.get('/me', { onRequest: app.authenticate, schema: { tags: ['users'], summary: 'The signed-in user', security: Bearer, response: { 200: UserSchema, ...problems(401) } } }, async (req) => {
        const profile = await reads.profile(req.principal!.userId, req.principal!.shard);
        if (!profile) throw new ProblemError('unauthorized', 'The user of this token no longer exists.');
        return profile.user;
      });
    app.patch('/me', { onRequest: app.authenticate, schema: { tags: ['users'], summary: 'Update name or region', security: Bearer, body: PatchUser, response: { 200: UserSchema, ...problems(400, 401) } } }, async (req) => {
        const user = await users.update(req.principal!.userId, req.principal!.shard, req.body);
        if (!user) throw new ProblemError('unauthorized', 'The user of this token no longer exists.');
        await reads.forget(user.id);
        return user;
      });
  };
}
