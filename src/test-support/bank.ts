/**
 * The bank test's load and its checks, shared by the sharding tests (plain, primary killed,
 * shard moved): many clients move money between seeded users through the API (same-cluster and
 * cross-cluster pairs), retrying a 503 or a lost answer with the same Idempotency-Key as a real
 * client would; afterwards every acknowledged transfer must be in the ledger exactly once on both
 * sides, money conserved, and reconcile clean on every cluster and across them.
 */
import type { FastifyInstance } from 'fastify';
import { expect } from 'vitest';
import type { Platform } from '../platform.js';
import { seedUsers, type SeededUser } from '../cli/seed.js';
import { reconcile } from '../ledger/reconcile.js';
import { reconcileClearing } from '../ledger/reconcile-clearing.js';
import { until } from './platform.js';

export interface BankUser extends SeededUser {
  auth: { authorization: string };
}

export interface BankStats {
  /** ids of transfers answered 201, with the pair and amount */
  acknowledged: Map<string, { from: string; to: string; amount: bigint }>;
  /** answers by status (after retries) */
  statuses: Map<number, number>;
  /** requests that got a 503 or no answer at least once before their final answer */
  retried: number;
  crossCluster: number;
  sameCluster: number;
  /** slowest request, ms (including its retries) */
  slowestMs: number;
}

export async function seedBank(p: Platform, users: number, balanceMinor: bigint): Promise<BankUser[]> {
  const seeded = await seedUsers(p, { users, currency: 'USD', balanceMinor });
  return seeded.all.filter((u) => u.kind === 'person').map((u) => ({ ...u, auth: { authorization: `Bearer ${p.tokens.issue(u.id).accessToken}` } }));
}

/** total money in user wallets over all clusters (available + pending), minor units */
export async function moneyInWallets(p: Platform): Promise<bigint> {
  let total = 0n;
  for (const c of p.db.clusters) {
    const [row] = await c.sql<{ total: bigint }[]>`select coalesce(sum(credits_posted - debits_posted), 0)::bigint as total from accounts where kind = 'user'`;
    total += row!.total;
  }
  return total;
}

export interface BankLoadOptions {
  app: FastifyInstance;
  platform: Platform;
  users: BankUser[];
  seconds: number;
  clients: number;
  /** a 503 or a thrown request is retried with the same key, this long in all (ms) */
  retryForMs?: number;
  /** called every second with the seconds elapsed (kill a primary, move a shard...) */
  onSecond?: (elapsed: number) => Promise<void> | void;
}

export async function runBank(opts: BankLoadOptions): Promise<BankStats> {
  const { app, platform: p, users } = opts;
  const stats: BankStats = { acknowledged: new Map(), statuses: new Map(), retried: 0, crossCluster: 0, sameCluster: 0, slowestMs: 0 };
  const deadline = Date.now() + opts.seconds * 1000;
  const retryForMs = opts.retryForMs ?? 60_000;
  let seq = 0;
  let inFlight = 0;
  const pick = () => users[Math.floor(Math.random() * users.length)]!;

  const client = async (n: number) => {
    while (Date.now() < deadline) {
      const from = pick();
      let to = pick();
      while (to.id === from.id) to = pick();
      // mostly small amounts; now and then more than anyone has (an expected 422)
      const amount = Math.random() < 0.02 ? 10_000_000 : 1 + Math.floor(Math.random() * 500);
      const key = `bank-${n}-${seq++}`;
      const started = Date.now();
      let status = 0;
      let body: { id?: string } = {};
      let retried = false;
      inFlight++;
      for (;;) {
        try {
          const res = await app.inject({ method: 'POST', url: '/v1/transfers', headers: { ...from.auth, 'idempotency-key': key }, payload: { to: to.id, amount, currency: 'USD' } });
          status = res.statusCode;
          body = res.json();
        } catch {
          status = 0;
        }
        if ((status !== 503 && status !== 0) || Date.now() - started > retryForMs) break;
        retried = true;
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
      }
      inFlight--;
      if (retried) stats.retried++;
      stats.slowestMs = Math.max(stats.slowestMs, Date.now() - started);
      stats.statuses.set(status, (stats.statuses.get(status) ?? 0) + 1);
      if (status === 201) {
        stats.acknowledged.set(body.id!, { from: from.id, to: to.id, amount: BigInt(amount) });
        if (p.db.forShard(from.shard) === p.db.forShard(to.shard)) stats.sameCluster++;
        else stats.crossCluster++;
      }
      // a read now and then, as users do
      if (seq % 10 === 0) await app.inject({ method: 'GET', url: '/v1/wallets', headers: from.auth });
    }
  };
  const started = Date.now();
  let ticking = true;
  const ticker = (async () => {
    let second = 0;
    while (ticking) {
      await new Promise((r) => setTimeout(r, 1000));
      second = Math.floor((Date.now() - started) / 1000);
      if (process.env.BANK_TEST_DEBUG) console.error(`bank ${second}s: in flight ${inFlight}, answers ${JSON.stringify(Object.fromEntries(stats.statuses))}, retried ${stats.retried}`);
      if (ticking) await opts.onSecond?.(second);
    }
  })();
  await Promise.all(Array.from({ length: opts.clients }, (_, i) => client(i)));
  ticking = false;
  await ticker;
  return stats;
}

/**
 * After the load: every credit landed (nothing in flight), then the invariants. `initial` is the
 * money the wallets held before the load.
 */
export async function checkBank(p: Platform, stats: BankStats, initial: bigint, settleMs = 60_000): Promise<void> {
  try {
    await until(async () => (await reconcileClearing(p.db)).inFlight.length === 0, settleMs, 'every cross-cluster credit to land');
  } catch (err) {
    // say where they are stuck: not yet published, or published and not applied
    const open = (await reconcileClearing(p.db)).inFlight;
    const unsent: Record<string, number> = {};
    for (const c of p.db.clusters) {
      const [row] = await c.sql<{ n: number }[]>`select count(*)::int as n from outbox where sent_at is null`;
      unsent[c.name] = row!.n;
      if (row!.n && process.env.BANK_TEST_DEBUG) {
        const rows = await c.sql`select seq, shard, type, created_at from outbox where sent_at is null`;
        const acts = await c.sql`select pid, state, wait_event_type, wait_event, xact_start, query_start, left(query, 120) as q, application_name from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`;
        const locks = await c.sql`select l.locktype, l.mode, l.granted, l.pid, l.objid from pg_locks l where l.locktype in ('advisory', 'transactionid', 'tuple') limit 20`;
        const j = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? String(x) : x));
        console.error('stuck', c.name, j(rows), j(acts), j(locks));
      }
    }
    throw new Error(`${(err as Error).message}: in flight ${JSON.stringify(open)}; unsent outbox rows ${JSON.stringify(unsent)}`);
  }
  const clearing = await reconcileClearing(p.db);
  expect(clearing.findings).toEqual([]);
  expect(Object.values(clearing.net).every((v) => v === '0')).toBe(true);

  const report = await reconcile(p.db);
  expect(report.checks.filter((c) => !c.ok).flatMap((c) => c.findings)).toEqual([]);
  expect(await moneyInWallets(p)).toBe(initial);

  // every acknowledged transfer, once on the sender's side and once on the recipient's
  const ids = [...stats.acknowledged.keys()];
  const legs = new Map<string, { debit: number; credit: number; amount: bigint[] }>();
  for (const c of p.db.clusters) {
    const rows = await c.sql<{ id: string; user_id: string; direction: string; amount: bigint }[]>`
      select id, user_id, direction, amount from transactions where id = any(${ids}::text[]) and status = 'completed'`;
    for (const r of rows) {
      const l = legs.get(r.id) ?? { debit: 0, credit: 0, amount: [] };
      if (r.direction === 'debit') l.debit++;
      else l.credit++;
      l.amount.push(r.amount);
      legs.set(r.id, l);
    }
  }
  const wrong: string[] = [];
  for (const [id, t] of stats.acknowledged) {
    const l = legs.get(id);
    if (!l || l.debit !== 1 || l.credit !== 1 || l.amount.some((a) => a !== t.amount)) wrong.push(`${id}: ${JSON.stringify(l ? { debit: l.debit, credit: l.credit } : 'missing')}`);
  }
  expect(wrong.slice(0, 10)).toEqual([]);
  // and no transfer the clients were not told about (every request ended with a final answer)
  const inLedger = new Set<string>();
  for (const c of p.db.clusters) {
    // (a credit leg applied where its debit leg is, txn_X:credit, is txn_X's: src/transfers/clearing.ts)
    const rows = await c.sql<{ id: string }[]>`select split_part(id, ':', 1) as id from ledger_transfers where kind = 'p2p' and id like 'txn\\_%'`;
    for (const r of rows) inLedger.add(r.id);
  }
  expect([...inLedger].filter((id) => !stats.acknowledged.has(id)).slice(0, 10)).toEqual([]);
  expect(inLedger.size).toBe(stats.acknowledged.size);
}
