/**
 * The operator commands as an operator runs them: `node bin/wallet.js ...` in a child process,
 * configured by environment variables, against a test database of its own.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../config/index.js';
import { createPlatform, type Platform } from '../platform.js';
import { buildApp } from '../app.js';
import { createLogger } from '../observability/logger.js';
import { TEST_CARDS } from '../network/index.js';
import { addCard, createTestDatabase, fund, moneyPost, signUp, PERMISSIVE_FRAUD_RULES } from '../test-support/platform.js';
import { appendAudit } from '../audit/chain.js';
import { runWalletCli, type CliResult } from '../test-support/cli.js';
import { newId } from '../shared/ids.js';

const TEST_ENV = { NODE_ENV: 'test', LOG_LEVEL: 'silent', LEDGER_BATCH_WINDOW_MS: '1', NETWORK_TIMEOUT_MS: '300', DB_POOL_MAX: '5', PASSWORD_HASH_LOG2_COST: '10', FRAUD_RULES_FILE: PERMISSIVE_FRAUD_RULES } as const;
const databases: { drop(): Promise<void> }[] = [];
afterAll(async () => {
  await Promise.all(databases.map((d) => d.drop()));
});

async function database(): Promise<string> {
  const db = await createTestDatabase();
  databases.push(db);
  return db.url;
}

/** Runs the CLI with only the configuration given here (nothing inherited that names a database). */
function wallet(args: string[], env: Record<string, string>): Promise<CliResult> {
  return runWalletCli(args, { ...TEST_ENV, LOG_LEVEL: 'warn', ...env });
}

async function withPlatform<T>(url: string, env: Record<string, string>, fn: (p: Platform, app: Awaited<ReturnType<typeof buildApp>>) => Promise<T>): Promise<T> {
  const platform = createPlatform(loadConfig({ ...TEST_ENV, ...env }), { databaseUrl: url, log: createLogger('silent') });
  const app = await buildApp(platform);
  try {
    return await fn(platform, app);
  } finally {
    await app.close();
    await platform.close();
  }
}

describe('wallet reconcile', () => {
  it('exits 0 on clean data and 2 after a balance is changed behind the ledger, naming it', async () => {
    const url = await database();
    await withPlatform(url, {}, async (_p, app) => {
      const [a, b] = await Promise.all([signUp(app), signUp(app)]);
      await fund(app, a, 5_000);
      expect((await moneyPost(app, a, '/v1/transfers', { to: b.id, amount: 1_234, currency: 'USD' })).statusCode).toBe(201);
    });
    const clean = await wallet(['reconcile'], { DATABASE_URL: url });
    expect(clean.stderr).toBe('');
    expect(clean.code).toBe(0);
    expect(clean.stdout).toMatch(/1\. books_balance: ok/);
    expect(clean.stdout).toMatch(/reconcile: OK/);

    await withPlatform(url, {}, async (p) => {
      await p.db.clusters[0]!.sql`update accounts set debits_posted = debits_posted + 1 where kind = 'card_funding' and debits_posted > 0`;
    });
    const dirty = await wallet(['reconcile'], { DATABASE_URL: url });
    expect(dirty.code).toBe(2);
    expect(dirty.stdout).toMatch(/2\. account_balances: 1 finding/);
    expect(dirty.stdout).toMatch(/balance_mismatch \[main\]: 1:/);
    expect(dirty.stdout).toMatch(/account=sys_card_funding_USD_\d{3} kind=card_funding/);
    expect(dirty.stdout).toMatch(/reconcile: VIOLATIONS in books_balance, account_balances/);

    const json = await wallet(['reconcile', '--json'], { DATABASE_URL: url });
    expect(json.code).toBe(2);
    const report = JSON.parse(json.stdout);
    expect(report.ok).toBe(false);
    expect(report.checks.find((c: { id: string }) => c.id === 'account_balances').findings[0]).toMatchObject({ code: 'balance_mismatch', cluster: 'main', count: 1 });
  });
});

describe('wallet seed', () => {
  it('creates funded users that reconcile clean and can sign in through the API', async () => {
    const url = await database();
    const seeded = await wallet(['seed', '--users', '50', '--balance', '2500'], { DATABASE_URL: url });
    expect(seeded.stderr).toBe('');
    expect(seeded.code).toBe(0);
    expect(seeded.stdout).toMatch(/seeded 50 users \(49 persons, 1 merchant\), 50 wallets funded with 2500 minor units of USD/);
    const person = /person\s+(\S+@example\.com)\s+(\S+)/.exec(seeded.stdout);
    expect(person).not.toBeNull();
    const [, email, password] = person!;

    const reconciled = await wallet(['reconcile'], { DATABASE_URL: url });
    expect(reconciled.code).toBe(0);
    expect(reconciled.stdout).toMatch(/cluster main: 66 accounts, 50 ledger transfers, 50 history rows/); // 50 wallets + 16 card-funding sub-accounts

    await withPlatform(url, {}, async (_p, app) => {
      const login = await app.inject({ method: 'POST', url: '/v1/auth/token', payload: { email, password } });
      expect(login.statusCode).toBe(200);
      const auth = { authorization: `Bearer ${login.json().accessToken}` };
      const wallets = await app.inject({ method: 'GET', url: '/v1/wallets', headers: auth });
      expect(wallets.json().wallets).toEqual([expect.objectContaining({ currency: 'USD', available: 2500, pending: 0 })]);
      const history = await app.inject({ method: 'GET', url: '/v1/transactions', headers: auth });
      expect(history.json().transactions).toEqual([expect.objectContaining({ type: 'topup', direction: 'credit', amount: 2500, status: 'completed' })]);
    });
  });

  it('refuses bad arguments before touching the database', async () => {
    const res = await wallet(['seed', '--users', '0'], { DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' });
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/--users must be an integer from 1 to/);
  });
});

describe('wallet vault rotate-kek', () => {
  it('re-wraps every data key under the new KEK; the cards still decrypt with only the new key', async () => {
    const url = await database();
    const keyA = randomBytes(32).toString('base64');
    const keyB = randomBytes(32).toString('base64');
    const onlyA = { VAULT_KEKS: `A:${keyA}` };
    const both = { VAULT_KEKS: `A:${keyA},B:${keyB}`, VAULT_ACTIVE_KEK: 'B' };
    const onlyB = { VAULT_KEKS: `B:${keyB}` };
    const pans = [TEST_CARDS.visa, TEST_CARDS.mastercard, TEST_CARDS.declined];

    await withPlatform(url, onlyA, async (_p, app) => {
      const user = await signUp(app);
      for (const pan of pans) await addCard(app, user, pan);
    });
    const tokensOf = (p: Platform) => p.db.clusters[0]!.sql<{ token: string; kek_id: string }[]>`select token, kek_id from vault_cards order by created_at, token`;
    const before = await withPlatform(url, onlyA, async (p) => tokensOf(p));
    expect(before.map((r) => r.kek_id)).toEqual(['A', 'A', 'A']);

    const rotated = await wallet(['vault', 'rotate-kek'], { DATABASE_URL: url, ...both });
    expect(rotated.stderr).toBe('');
    expect(rotated.code).toBe(0);
    expect(rotated.stdout).toBe('re-wrapped 3 data keys under KEK B\n');

    for (const env of [both, onlyB]) {
      await withPlatform(url, env, async (p) => {
        const rows = await tokensOf(p);
        expect(rows.map((r) => r.kek_id)).toEqual(['B', 'B', 'B']);
        expect(await Promise.all(rows.map((r) => p.vault.reveal(p.db.clusters[0]!.sql, r.token)))).toEqual(pans);
      });
    }
    // the old key alone no longer opens anything: nothing is left under it
    await withPlatform(url, onlyA, async (p) => {
      await expect(p.vault.reveal(p.db.clusters[0]!.sql, before[0]!.token)).rejects.toThrow(/KEK B is not configured/);
    });

    const again = await wallet(['vault', 'rotate-kek'], { DATABASE_URL: url, ...onlyB });
    expect(again.code).toBe(0);
    expect(again.stdout).toBe('every data key is already under KEK B; nothing to re-wrap\n');
    // each rotation is a security event for the audit log
    const events = await withPlatform(url, onlyB, async (p) => p.db.clusters[0]!.sql`select topic, partition_key, type from outbox where type = 'security.kek_rotated'`);
    expect(events).toEqual([0, 1].map(() => ({ topic: 'audit-logs', partition_key: 'system:vault', type: 'security.kek_rotated' })));
  });
});

describe('KEK rotation over many cards', () => {
  it('re-wraps every card in batches, each batch starting where the last one ended', async () => {
    const url = await database();
    const keyA = randomBytes(32).toString('base64');
    const keyB = randomBytes(32).toString('base64');
    const n = 1_234; // three batches of at most 500
    await withPlatform(url, { VAULT_KEKS: `A:${keyA}` }, async (p) => {
      const sql = p.db.clusters[0]!.sql;
      for (let i = 0; i < n; i++) await p.vault.tokenize(sql, 1, TEST_CARDS.visa);
    });
    await withPlatform(url, { VAULT_KEKS: `A:${keyA},B:${keyB}`, VAULT_ACTIVE_KEK: 'B' }, async (p) => {
      const progress: number[] = [];
      expect(await p.vault.rotateKek(p.db, (done) => progress.push(done))).toEqual({ rewrapped: n, activeKek: 'B' });
      expect(progress).toEqual([500, 1_000, n]);
      const left = await p.db.clusters[0]!.sql`select count(*)::int as n from vault_cards where kek_id <> 'B'`;
      expect(left[0]!.n).toBe(0);
    });
  });
});

describe('wallet audit verify', () => {
  it('exits 0 on an untouched chain, printing its head, and 2 once a record is deleted, naming the gap', async () => {
    const url = await database();
    await withPlatform(url, {}, async (p) => {
      const at = new Date().toISOString();
      await appendAudit(p.db.clusters[0]!.sql, [1, 2, 3].map((i) => ({ id: newId('evt', 7), topic: 'audit-logs' as const, key: 'system:test', type: 'security.login', shard: 7, at, payload: { i } })));
    });
    const clean = await wallet(['audit', 'verify'], { DATABASE_URL: url });
    expect(clean.stderr).toBe('');
    expect(clean.code).toBe(0);
    expect(clean.stdout).toMatch(/cluster main: 3 records checked/);
    expect(clean.stdout).toMatch(/head main:3:[0-9a-f]{64}\n/);
    expect(clean.stdout).toMatch(/audit: OK/);

    await withPlatform(url, {}, async (p) => {
      await p.db.clusters[0]!.sql.begin(async (tx) => {
        await tx`alter table audit_log disable trigger user`;
        await tx`delete from audit_log where seq = 2`;
        await tx`alter table audit_log enable trigger user`;
      });
    });
    const anchor = /head (main:3:[0-9a-f]{64})/.exec(clean.stdout)![1]!;
    const dirty = await wallet(['audit', 'verify', '--anchor', anchor], { DATABASE_URL: url });
    expect(dirty.code).toBe(2);
    expect(dirty.stdout).toMatch(/sequence_gap at seq 3: records 2..2 are missing/);
    expect(dirty.stdout).toMatch(/audit: VIOLATIONS on main/);
  });
});
