/**
 * A real platform on a database of its own (cloned from the migrated template), and its app.
 * Tests talk to it through app.inject: the public surface, a real PostgreSQL behind it.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { inject } from 'vitest';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { loadConfig, type Config } from '../config/index.js';
import { createPlatform, type Platform, type PlatformOverrides } from '../platform.js';
import { buildApp } from '../app.js';
import { createLogger } from '../observability/logger.js';
import { TEST_CARDS } from '../network/index.js';
import { validateTopology, type Topology } from '../db/topology.js';
import { SHARD_COUNT } from '../shared/ids.js';

export interface TestPlatform {
  platform: Platform;
  app: FastifyInstance;
  config: Config;
  databaseUrl: string;
  close(): Promise<void>;
}

export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const adminUrl = inject('pgAdminUrl');
  const name = `wallet_t_${randomBytes(6).toString('hex')}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => undefined });
  // CREATE DATABASE ... TEMPLATE needs the template to have no other sessions; retry briefly if a
  // parallel file is cloning at the same moment.
  for (let attempt = 0; ; attempt++) {
    try {
      await admin.unsafe(`create database ${name} template ${inject('pgTemplate')}`);
      break;
    } catch (err) {
      if (attempt >= 20) throw err;
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
    }
  }
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    drop: async () => {
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end({ timeout: 2 });
    },
  };
}

/**
 * Fraud scoring runs in every test platform; tests that are not about fraud get rules that
 * approve everything (no thresholds, model thresholds at 1, a generous budget), so their rapid
 * transfers between fresh accounts are not held. Fraud tests pass FRAUD_RULES_FILE.
 */
export const PERMISSIVE_FRAUD_RULES = fileURLToPath(new URL('./fraud-rules-permissive.json', import.meta.url));

/** A platform of a test configuration (fast batches and hashing) and its app. */
async function startTestPlatform(env: Record<string, string>, overrides: PlatformOverrides): Promise<{ platform: Platform; app: FastifyInstance; config: Config }> {
  const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', LEDGER_BATCH_WINDOW_MS: '1', NETWORK_TIMEOUT_MS: '300', DB_POOL_MAX: '10', PASSWORD_HASH_LOG2_COST: '10', FRAUD_RULES_FILE: PERMISSIVE_FRAUD_RULES, ...env });
  const platform = createPlatform(config, { log: createLogger(config.logLevel), ...overrides });
  await platform.ready();
  return { platform, app: await buildApp(platform), config };
}

export async function createTestPlatform(env: Record<string, string> = {}, overrides: PlatformOverrides = {}): Promise<TestPlatform> {
  const db = await createTestDatabase();
  const { platform, app, config } = await startTestPlatform(env, { databaseUrl: db.url, ...overrides });
  return {
    platform,
    app,
    config,
    databaseUrl: db.url,
    async close() {
      await app.close();
      await platform.close();
      await db.drop();
    },
  };
}

/** The plan's regions by shard range, for `n` clusters (4: us-east, us-west, eu-west, apac). */
export function regionalTopology(urls: string[], replicas: string[][] = []): Topology {
  const regions = ['us-east', 'us-west', 'eu-west', 'apac'];
  const per = Math.ceil(SHARD_COUNT / urls.length);
  return validateTopology({
    clusters: urls.map((primary, i) => ({
      name: regions[i] ?? `cluster-${i}`,
      region: regions[i] ?? regions[i % regions.length]!,
      shards: [i * per, Math.min(SHARD_COUNT, (i + 1) * per) - 1],
      primary,
      ...(replicas[i]?.length ? { replicas: replicas[i] } : {}),
    })),
  });
}

/**
 * A platform over several clusters, each a database of its own on the test PostgreSQL (the
 * behaviour of routing and clearing does not depend on where the databases run; the replica and
 * failover tests start real separate instances, src/test-support/clusters.ts).
 */
export async function createMultiClusterTestPlatform(clusters: number, env: Record<string, string> = {}, overrides: PlatformOverrides = {}): Promise<TestPlatform & { topology: Topology }> {
  const dbs = await Promise.all(Array.from({ length: clusters }, () => createTestDatabase()));
  const topology = regionalTopology(dbs.map((d) => d.url));
  const { platform, app, config } = await startTestPlatform({ DB_POOL_MAX: '5', ...env }, { topology, ...overrides });
  return {
    platform,
    app,
    config,
    topology,
    databaseUrl: dbs[0]!.url,
    async close() {
      await app.close();
      await platform.close();
      await Promise.all(dbs.map((d) => d.drop()));
    },
  };
}

let counter = 0;
export function uniqueEmail(prefix = 'user'): string {
  return `${prefix}-${process.pid}-${Date.now()}-${counter++}@example.com`;
}

export interface TestUser {
  id: string;
  email: string;
  token: string;
  auth: { authorization: string };
}

/** A user signed up and signed in through the API. */
export async function signUp(app: FastifyInstance, body: Record<string, unknown> = {}): Promise<TestUser> {
  const email = (body.email as string) ?? uniqueEmail();
  const password = 'correct horse battery staple';
  const created = await app.inject({ method: 'POST', url: '/v1/users', payload: { email, password, name: 'Test User', ...body } });
  if (created.statusCode !== 201) throw new Error(`sign-up failed: ${created.statusCode} ${created.body}`);
  const login = await app.inject({ method: 'POST', url: '/v1/auth/token', payload: { email, password } });
  if (login.statusCode !== 200) throw new Error(`login failed: ${login.statusCode} ${login.body}`);
  const token = login.json().accessToken as string;
  return { id: created.json().id, email, token, auth: { authorization: `Bearer ${token}` } };
}

let keyCounter = 0;
export function idemKey(): string {
  return `test-${process.pid}-${Date.now()}-${keyCounter++}`;
}

/** A POST that moves money, with a fresh Idempotency-Key unless one is given. */
export function moneyPost(app: FastifyInstance, user: TestUser, url: string, payload: unknown, key = idemKey()): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url, payload: payload as object, headers: { ...user.auth, 'idempotency-key': key } });
}

export async function addCard(app: FastifyInstance, user: TestUser, number: string = TEST_CARDS.visa): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/v1/payment-methods', headers: user.auth, payload: { type: 'card', number, expMonth: 12, expYear: new Date().getUTCFullYear() + 2, cvc: '123' } });
  if (res.statusCode !== 201) throw new Error(`add card failed: ${res.statusCode} ${res.body}`);
  return res.json().id;
}

/** Funds a wallet through a card top-up, the way a user would. */
/** minorUnits: the JSON integer the API takes (bigint inside the platform) */
export async function fund(app: FastifyInstance, user: TestUser, minorUnits: number, currency = 'USD'): Promise<void> {
  const pm = await addCard(app, user);
  const res = await moneyPost(app, user, '/v1/topups', { paymentMethodId: pm, amount: minorUnits, currency });
  if (res.statusCode !== 201 || res.json().status !== 'completed') throw new Error(`top-up failed: ${res.statusCode} ${res.body}`);
}

export async function balance(app: FastifyInstance, user: TestUser, currency = 'USD'): Promise<{ available: number; pending: number }> {
  const res = await app.inject({ method: 'GET', url: '/v1/wallets', headers: user.auth });
  const w = (res.json().wallets as { currency: string; available: number; pending: number }[]).find((x) => x.currency === currency);
  if (!w) throw new Error(`no ${currency} wallet`);
  return { available: w.available, pending: w.pending };
}

/** Polls until check() holds; fails naming what it waited for (what: text, or built lazily). */
export async function until(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string | (() => string), everyMs = 25): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${typeof what === 'string' ? what : what()}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
