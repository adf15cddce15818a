/**
 * `reconcile` on a database with real movements made through the API (top-ups, transfers,
 * payments captured at once, captured later in part, voided, left open, refunded): clean data
 * passes, live traffic reconciles clean, and each kind of tampering is found and named.
 * The movements are made once; every test works on its own clone of that database.
 */
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../config/index.js';
import { createDb, type Db, type Sql } from '../db/index.js';
import { singleClusterTopology } from '../db/topology.js';
import { createPlatform } from '../platform.js';
import { buildApp } from '../app.js';
import { createLogger } from '../observability/logger.js';
import { newId, shardOf } from '../shared/ids.js';
import { createTestDatabase, fund, moneyPost, signUp, type TestUser, PERMISSIVE_FRAUD_RULES } from '../test-support/platform.js';
import { reconcile, type CheckId, type ReconcileReport } from './reconcile.js';

const TEST_ENV = { NODE_ENV: 'test', LOG_LEVEL: 'silent', LEDGER_BATCH_WINDOW_MS: '1', NETWORK_TIMEOUT_MS: '300', DB_POOL_MAX: '10', PASSWORD_HASH_LOG2_COST: '10', FRAUD_RULES_FILE: PERMISSIVE_FRAUD_RULES };

let base: Awaited<ReturnType<typeof createTestDatabase>>;
let alice: TestUser, bob: TestUser, shop: TestUser;
let transferId: string;
let capturedPaymentId: string;
const clones: { drop(): Promise<void> }[] = [];

beforeAll(async () => {
  base = await createTestDatabase();
  const platform = createPlatform(loadConfig(TEST_ENV), { databaseUrl: base.url, log: createLogger('silent') });
  const app = await buildApp(platform);
  try {
    [alice, bob, shop] = await Promise.all([signUp(app), signUp(app), signUp(app, { kind: 'merchant' })]);
    await fund(app, alice, 10_000);
    await fund(app, bob, 5_000);
    const sent = await moneyPost(app, alice, '/v1/transfers', { to: bob.id, amount: 1_500, currency: 'USD', note: 'rent' });
    expect(sent.statusCode).toBe(201);
    transferId = sent.json().id;
    expect((await moneyPost(app, bob, '/v1/transfers', { to: alice.id, amount: 700, currency: 'USD' })).statusCode).toBe(201);
    expect((await moneyPost(app, bob, '/v1/transfers', { to: alice.id, amount: 1_000_000, currency: 'USD' })).statusCode).toBe(422);

    const pay = (body: object) => moneyPost(app, alice, '/v1/payments', { merchantId: shop.id, currency: 'USD', ...body });
    expect((await pay({ amount: 2_000 })).json().status).toBe('captured');
    const held = (await pay({ amount: 3_000, capture: false })).json();
    expect(held.status).toBe('authorized');
    expect((await moneyPost(app, shop, `/v1/payments/${held.id}/capture`, { amount: 2_500 })).statusCode).toBe(200);
    capturedPaymentId = held.id;
    expect((await moneyPost(app, shop, `/v1/payments/${held.id}/refunds`, { amount: 1_000 })).statusCode).toBe(201);
    const voided = (await pay({ amount: 1_000, capture: false })).json();
    expect((await moneyPost(app, shop, `/v1/payments/${voided.id}/void`, {})).statusCode).toBe(200);
    expect((await pay({ amount: 500, capture: false })).json().status).toBe('authorized'); // left open
  } finally {
    await app.close();
    await platform.close();
  }
});

afterAll(async () => {
  await Promise.all(clones.map((c) => c.drop()));
  await base?.drop();
});

/** A database of its own with the movements above, and a Db on it. */
async function clone(): Promise<{ db: Db; sql: Sql; url: string }> {
  const admin = postgres(inject('pgAdminUrl'), { max: 1, onnotice: () => undefined });
  const name = `wallet_t_${randomBytes(6).toString('hex')}`;
  const baseName = new URL(base.url).pathname.slice(1);
  for (let attempt = 0; ; attempt++) {
    try {
      await admin.unsafe(`create database ${name} template ${baseName}`);
      break;
    } catch (err) {
      // another test is cloning the same template at this moment
      if (attempt >= 30) throw err;
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
    }
  }
  const u = new URL(base.url);
  u.pathname = `/${name}`;
  const db = createDb(singleClusterTopology(u.toString()), { poolMax: 4, statementTimeoutMs: 60_000 });
  clones.push({
    drop: async () => {
      await db.close();
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end({ timeout: 2 });
    },
  });
  return { db, sql: db.clusters[0]!.sql, url: u.toString() };
}

function check(report: ReconcileReport, id: CheckId) {
  return report.checks.find((c) => c.id === id)!;
}

function codes(report: ReconcileReport): string[] {
  return report.checks.flatMap((c) => c.findings.map((f) => `${c.id}/${f.code}`)).sort();
}

async function walletOf(sql: Sql, userId: string): Promise<string> {
  const [w] = await sql<{ id: string }[]>`select id from accounts where user_id = ${userId} and kind = 'user'`;
  return w!.id;
}

describe('reconcile', () => {
  it('passes on a database with top-ups, transfers, holds captured, voided and open, and refunds', async () => {
    const { db } = await clone();
    const report = await reconcile(db);
    expect(codes(report)).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.checks.map((c) => [c.id, c.ok])).toEqual([
      ['books_balance', true],
      ['account_balances', true],
      ['available_non_negative', true],
      ['holds_resolved_once', true],
      ['history_matches_ledger', true],
      ['applied_once', true],
      ['clearing_nets_to_zero', true],
    ]);
    // 2 top-ups, 2 transfers, 4 payments, 2 resolutions, 1 refund
    expect(report.clusters).toEqual([expect.objectContaining({ name: 'main', transfers: 11 })]);
  });

  it('passes on one snapshot while transfers commit concurrently', async () => {
    const { db, url } = await clone();
    const platform = createPlatform(loadConfig(TEST_ENV), { databaseUrl: url, log: createLogger('silent') });
    const app = await buildApp(platform);
    try {
      let moving = true;
      const traffic = (async () => {
        let n = 0;
        while (moving && n < 400) {
          await Promise.all(Array.from({ length: 20 }, (_, i) => moneyPost(app, i % 2 ? alice : bob, '/v1/transfers', { to: i % 2 ? bob.id : alice.id, amount: 1, currency: 'USD' })));
          n += 20;
        }
      })();
      const reports: ReconcileReport[] = [];
      for (let i = 0; i < 4; i++) reports.push(await reconcile(db));
      moving = false;
      await traffic;
      reports.push(await reconcile(db));
      for (const r of reports) expect(codes(r)).toEqual([]);
      expect(reports.at(-1)!.clusters[0]!.transfers).toBeGreaterThan(11);
    } finally {
      await app.close();
      await platform.close();
    }
  });

  it('names an account balance changed behind the ledger (and the unbalanced books)', async () => {
    const { db, sql } = await clone();
    const wallet = await walletOf(sql, alice.id);
    await sql`update accounts set credits_posted = credits_posted + 100 where id = ${wallet}`;
    const report = await reconcile(db);
    expect(report.ok).toBe(false);
    expect(codes(report)).toEqual(['account_balances/balance_mismatch', 'books_balance/posted_unbalanced']);
    const mismatch = check(report, 'account_balances').findings[0]!;
    expect(mismatch).toMatchObject({ cluster: 'main', count: 1 });
    expect(mismatch.examples[0]).toMatchObject({ account: wallet, kind: 'user', currency: 'USD' });
    expect(check(report, 'books_balance').findings[0]!.examples[0]).toMatchObject({ currency: 'USD', difference: '-100' });
  });

  it('names a movement whose history row was deleted', async () => {
    const { db, sql } = await clone();
    await sql`delete from transactions where user_id = ${bob.id} and id = ${transferId}`;
    const report = await reconcile(db);
    expect(codes(report)).toEqual(['history_matches_ledger/movement_without_history']);
    expect(check(report, 'history_matches_ledger').findings[0]!.examples[0]).toMatchObject({ transfer: transferId, user: bob.id, id: transferId, direction: 'credit', amount: '1500' });
  });

  it('names a duplicate history row under another id', async () => {
    const { db, sql } = await clone();
    const copy = newId('txn', shardOf(bob.id));
    await sql`insert into transactions (id, user_id, shard, wallet_id, type, direction, amount, currency, status, counterparty, note, created_at)
      select ${copy}, user_id, shard, wallet_id, type, direction, amount, currency, status, counterparty, note, created_at
      from transactions where user_id = ${bob.id} and id = ${transferId}`;
    const report = await reconcile(db);
    expect(codes(report)).toEqual(['history_matches_ledger/history_without_movement']);
    expect(check(report, 'history_matches_ledger').findings[0]!.examples[0]).toMatchObject({ user: bob.id, id: copy, amount: '1500' });
  });

  it('names a history row that disagrees with its movement', async () => {
    const { db, sql } = await clone();
    await sql`update transactions set amount = amount + 1 where user_id = ${alice.id} and id = ${transferId}`;
    const report = await reconcile(db);
    expect(codes(report)).toEqual(['history_matches_ledger/history_mismatch']);
  });

  it('names a user wallet with a negative available balance, even when every row agrees', async () => {
    const { db, sql } = await clone();
    await sql`alter table accounts drop constraint user_available_never_negative`;
    // an overdraft written consistently everywhere: transfer row, both balances, both history rows
    const [from, to] = [await walletOf(sql, bob.id), await walletOf(sql, alice.id)];
    const id = newId('txn', shardOf(bob.id));
    const amount = 1_000_000n;
    await sql.begin(async (tx) => {
      await tx`insert into ledger_transfers (id, debit_account_id, credit_account_id, amount, currency, status, kind, ref_id, shard) values (${id}, ${from}, ${to}, ${amount}, 'USD', 'posted', 'p2p', ${id}, ${shardOf(bob.id)})`;
      await tx`update accounts set debits_posted = debits_posted + ${amount} where id = ${from}`;
      await tx`update accounts set credits_posted = credits_posted + ${amount} where id = ${to}`;
      await tx`insert into transactions (id, user_id, shard, wallet_id, type, direction, amount, currency, status, created_at) values
        (${id}, ${bob.id}, ${shardOf(bob.id)}, ${from}, 'transfer', 'debit', ${amount}, 'USD', 'completed', now()),
        (${id}, ${alice.id}, ${shardOf(alice.id)}, ${to}, 'transfer', 'credit', ${amount}, 'USD', 'completed', now())`;
    });
    const report = await reconcile(db);
    expect(codes(report)).toEqual(['available_non_negative/negative_available']);
    expect(check(report, 'available_non_negative').findings[0]!.examples[0]).toMatchObject({ account: from, user: bob.id });
  });

  it('names a hold resolved twice', async () => {
    const { db, sql } = await clone();
    await sql`drop index ledger_transfers_resolve_once`;
    await sql`insert into ledger_transfers (id, debit_account_id, credit_account_id, amount, currency, status, pending_id, kind, ref_id, shard)
      select id || ':void', debit_account_id, credit_account_id, amount, currency, 'voided', id, 'void', id, shard from ledger_transfers where id = ${capturedPaymentId}`;
    const report = await reconcile(db);
    expect(check(report, 'holds_resolved_once').findings.map((f) => f.code)).toContain('resolved_twice');
    expect(check(report, 'holds_resolved_once').findings.find((f) => f.code === 'resolved_twice')!.examples[0]).toMatchObject({ hold: capturedPaymentId });
  });

  it('names a transfer applied twice under a second id', async () => {
    const { db, sql } = await clone();
    await sql`insert into ledger_transfers (id, debit_account_id, credit_account_id, amount, currency, status, kind, ref_id, shard)
      select id || ':again', debit_account_id, credit_account_id, amount, currency, status, kind, ref_id, shard from ledger_transfers where id = ${transferId}`;
    const report = await reconcile(db);
    expect(check(report, 'applied_once').findings.map((f) => f.code)).toEqual(['ref_applied_twice']);
    expect(check(report, 'applied_once').findings[0]!.examples[0]).toMatchObject({ business_id: transferId, transfers: [transferId, `${transferId}:again`] });
    // the balances and the history did not follow the second application either
    expect(codes(report)).toEqual(expect.arrayContaining(['account_balances/balance_mismatch', 'history_matches_ledger/ambiguous_movement']));
  });

  it('names refunds that exceed what their payment captured', async () => {
    const { db, sql } = await clone();
    await sql`insert into ledger_transfers (id, debit_account_id, credit_account_id, amount, currency, status, kind, ref_id, shard)
      select ${newId('ref', shardOf(shop.id))}, credit_account_id, debit_account_id, 2000, currency, 'posted', 'refund', id, shard from ledger_transfers where id = ${capturedPaymentId}`;
    const report = await reconcile(db);
    const finding = check(report, 'applied_once').findings.find((f) => f.code === 'refunds_exceed_capture')!;
    expect(finding.examples[0]).toEqual({ payment: capturedPaymentId, captured: '2500', refunded: '3000', refunds: 2 });
  });
});
