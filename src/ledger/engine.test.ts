/** The batching engine, driven directly: batching, isolation of a bad command, retries, back-pressure. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPlatform, fund, moneyPost, signUp, type TestPlatform, type TestUser } from '../test-support/platform.js';
import postgres from 'postgres';
import { createLedgerEngine, EngineUnavailable, findIdempotencyRecords } from './engine.js';
import { createWalletDirectory } from './wallet-directory.js';
import type { Command } from './types.js';
import { newId } from '../shared/ids.js';
import { stringifyJson } from '../shared/json.js';

let t: TestPlatform;
beforeAll(async () => {
  t = await createTestPlatform();
});
afterAll(() => t?.close());

async function walletOf(u: TestUser): Promise<string> {
  return (await createWalletDirectory(t.platform.db).find(u.id, 'USD'))!;
}

function p2p(from: string, to: string, amount: bigint, shard = 0): Command {
  const id = newId('txn', shard);
  return {
    shard,
    accounts: [from, to],
    apply: () => ({ ops: [{ t: 'transfer', id, debit: from, credit: to, amount, currency: 'USD', pending: false, kind: 'p2p', refId: id }], answer: { status: 201, body: { id } } }),
  };
}

async function available(walletId: string): Promise<bigint> {
  const [row] = await t.platform.db.clusters[0]!.sql`select credits_posted - debits_posted - debits_pending as a from accounts where id = ${walletId}`;
  return row!.a as bigint;
}

describe('batching engine', () => {
  it('commits many concurrent commands in few batches, each with its own result', async () => {
    const [a, b] = [await signUp(t.app), await signUp(t.app)];
    await fund(t.app, a, 1_000);
    const [wa, wb] = [await walletOf(a), await walletOf(b)];
    const sizes: number[] = [];
    const engine = createLedgerEngine(t.platform.db, { batchMaxSize: 100, batchWindowMs: 5, queueMax: 1000, concurrentBatches: 1, retries: 2 }, { batchCommitted: (n) => sizes.push(n), batchFailed: () => undefined, queueDepth: () => undefined });
    const results = await Promise.all(Array.from({ length: 150 }, () => engine.submit(p2p(wa, wb, 10n))));
    await engine.stop();
    expect(results.filter((r) => r.status === 201)).toHaveLength(100);
    expect(results.filter((r) => r.status === 422)).toHaveLength(50);
    expect(sizes.length).toBeLessThan(10);
    expect(await available(wa)).toBe(0n);
    expect(await available(wb)).toBe(1_000n);
  });

  it('is not held up by the key-share lock a foreign-key check leaves on its wallet (so two such batches cannot deadlock)', async () => {
    const [a, b] = [await signUp(t.app), await signUp(t.app)];
    await fund(t.app, a, 1_000);
    const [wa, wb] = [await walletOf(a), await walletOf(b)];
    const engine = createLedgerEngine(t.platform.db, { batchMaxSize: 10, batchWindowMs: 0, queueMax: 10, concurrentBatches: 1, retries: 0 });
    const other = await t.platform.db.clusters[0]!.sql.reserve();
    try {
      // what inserting a payment or a top-up that references wa does in another open transaction
      await other`begin`;
      await other`select 1 from accounts where id = ${wa} for key share`;
      const outcome = await Promise.race([engine.submit(p2p(wa, wb, 100n)).then((r) => r.status), new Promise((r) => setTimeout(() => r('waiting for the other transaction'), 5_000))]);
      expect(outcome).toBe(201);
    } finally {
      await other`rollback`;
      other.release();
      await engine.stop();
    }
    expect(await available(wb)).toBe(100n);
  });

  it('fails only the command that breaks, never its neighbours, and writes nothing of it', async () => {
    const [a, b] = [await signUp(t.app), await signUp(t.app)];
    await fund(t.app, a, 1_000);
    const [wa, wb] = [await walletOf(a), await walletOf(b)];
    const engine = createLedgerEngine(t.platform.db, { batchMaxSize: 100, batchWindowMs: 20, queueMax: 1000, concurrentBatches: 1, retries: 1 });
    const poisoned: Command = { ...p2p(wa, wb, 1n), apply: () => { throw new Error('a bug in one command'); } };
    const settled = await Promise.allSettled([engine.submit(p2p(wa, wb, 100n)), engine.submit(poisoned), engine.submit(p2p(wa, wb, 200n))]);
    await engine.stop();
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(await available(wa)).toBe(700n);
    expect(await available(wb)).toBe(300n);
  });

  it('retries a batch that failed on a transient error, applying it exactly once', async () => {
    const [a, b] = [await signUp(t.app), await signUp(t.app)];
    await fund(t.app, a, 1_000);
    const [wa, wb] = [await walletOf(a), await walletOf(b)];
    const engine = createLedgerEngine(t.platform.db, { batchMaxSize: 100, batchWindowMs: 1, queueMax: 1000, concurrentBatches: 1, retries: 3 });
    let calls = 0;
    const base = p2p(wa, wb, 250n);
    const flaky: Command = {
      ...base,
      apply: (view) => {
        calls++;
        if (calls === 1) throw Object.assign(new Error('could not serialize access'), { code: '40001' });
        return base.apply(view);
      },
    };
    const result = await engine.submit(flaky);
    await engine.stop();
    expect(result.status).toBe(201);
    expect(calls).toBe(2);
    expect(await available(wb)).toBe(250n);
  });

  it('never overdraws under many concurrent batches from several engines (optimistic batches re-check under lock)', async () => {
    const [a, b] = [await signUp(t.app), await signUp(t.app)];
    await fund(t.app, a, 100);
    const [wa, wb] = [await walletOf(a), await walletOf(b)];
    const failures: string[] = [];
    const metrics = { batchCommitted: () => undefined, batchFailed: (r: string) => failures.push(r), queueDepth: () => undefined };
    const engines = [1, 2, 3].map(() => createLedgerEngine(t.platform.db, { batchMaxSize: 4, batchWindowMs: 0, queueMax: 1000, concurrentBatches: 4, retries: 20 }, metrics));
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => engines[i % 3]!.submit(p2p(wa, wb, 1n))));
    await Promise.all(engines.map((e) => e.stop()));
    expect(results.filter((r) => r.status === 201)).toHaveLength(100);
    expect(results.filter((r) => r.status === 422)).toHaveLength(200);
    expect(await available(wa)).toBe(0n);
    expect(await available(wb)).toBe(100n);
    expect(failures.filter((f) => f === 'error')).toEqual([]);
    // the optimistic batches did meet moved balances (the balance update's CHECK refused them) and ran again locked
    expect(failures).toContain('stale');
    // and a refused batch left none of the rows it had written ahead of the refused update (its
    // COMMIT, already on the wire behind them, rolled back)
    const [rows] = await t.platform.db.clusters[0]!.sql<{ n: number }[]>`select count(*)::int as n from ledger_transfers where debit_account_id = ${wa}`;
    expect(rows!.n).toBe(100);
  });

  it('refuses work beyond its queue bound instead of growing without limit', async () => {
    const [a, b] = [await signUp(t.app), await signUp(t.app)];
    await fund(t.app, a, 1_000);
    const [wa, wb] = [await walletOf(a), await walletOf(b)];
    const engine = createLedgerEngine(t.platform.db, { batchMaxSize: 5, batchWindowMs: 50, queueMax: 10, concurrentBatches: 1, retries: 0 });
    const settled = await Promise.allSettled(Array.from({ length: 30 }, () => engine.submit(p2p(wa, wb, 1n))));
    await engine.stop();
    const refused = settled.filter((s) => s.status === 'rejected');
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((s) => (s as PromiseRejectedResult).reason instanceof EngineUnavailable)).toBe(true);
    const done = settled.length - refused.length;
    expect(await available(wb)).toBe(BigInt(done));
  });

  it('answers 503 with Retry-After over HTTP when the ledger queue is full', async () => {
    const small = await createTestPlatform({ LEDGER_QUEUE_MAX: '2', LEDGER_CONCURRENT_BATCHES: '1', LEDGER_BATCH_MAX_SIZE: '1', LEDGER_BATCH_WINDOW_MS: '20' });
    try {
      const [a, b] = [await signUp(small.app), await signUp(small.app)];
      await fund(small.app, a, 1_000);
      const results = await Promise.all(Array.from({ length: 20 }, () => moneyPost(small.app, a, '/v1/transfers', { to: b.id, amount: 1, currency: 'USD' })));
      const busy = results.filter((r) => r.statusCode === 503);
      expect(busy.length).toBeGreaterThan(0);
      expect(busy[0]!.json().code).toBe('unavailable');
      expect(busy[0]!.headers['retry-after']).toBe('1');
      const ok = results.filter((r) => r.statusCode === 201).length;
      const wallets = await small.app.inject({ method: 'GET', url: '/v1/wallets', headers: b.auth });
      expect(wallets.json().wallets[0].available).toBe(ok);
    } finally {
      await small.close();
    }
  });

  it('stores each answer and event document byte for byte, quotes, backslashes and escapes included, and replays the answer verbatim', async () => {
    const [a, b] = [await signUp(t.app), await signUp(t.app)];
    await fund(t.app, a, 1_000);
    const [wa, wb] = [await walletOf(a), await walletOf(b)];
    const engine = createLedgerEngine(t.platform.db, { batchMaxSize: 100, batchWindowMs: 20, queueMax: 100, concurrentBatches: 1, retries: 0 });
    const notes = ['say "hi"', 'C:\\dir\\', 'tab\tnewline\n', 'lone \ud800 surrogate', 'nul \u0000 char', 'emoji 💸 and ünïcode', '{"not":"an object"}', '[1,2]', ''];
    const command = (note: string, i: number): Command => {
      const id = newId('txn', 0);
      return {
        ...p2p(wa, wb, 1n),
        idempotency: { userId: a.id, key: `doc-${i}`, requestHash: `h${i}` },
        apply: () => ({
          ops: [
            { t: 'transfer', id, debit: wa, credit: wb, amount: 1n, currency: 'USD', pending: false, kind: 'p2p', refId: id },
            { t: 'outbox', event: { eventId: `evt_doc_${id}`, topic: 'transaction-events', partitionKey: a.id, shard: 0, type: 'test.doc', payload: { id, note, nested: { note, list: [note, 1n, null] } } } },
          ],
          answer: { status: 201, body: { id, note } },
        }),
      };
    };
    // one batch: every document goes through the same statement
    const results = await Promise.all(notes.map((n, i) => engine.submit(command(n, i))));
    const sql = t.platform.db.clusters[0]!.sql;
    const stored = await sql<{ key: string; response: string }[]>`select key, response from idempotency_keys where user_id = ${a.id} and key like 'doc-%'`;
    const events = await sql<{ event_id: string; payload: string }[]>`select event_id, payload::text as payload from outbox where event_id = any(${results.map((r) => `evt_doc_${(r.body as { id: string }).id}`)})`;
    const replays = await Promise.all(notes.map((n, i) => engine.submit(command(n, i))));
    await engine.stop();
    expect(results.every((r) => r.status === 201)).toBe(true);
    results.forEach((r, i) => {
      expect(JSON.parse(r.json).note).toBe(notes[i]);
      expect(stored.find((s) => s.key === `doc-${i}`)?.response).toBe(r.json);
      expect(replays[i]).toMatchObject({ replayed: true, json: r.json });
    });
    expect(events).toHaveLength(notes.length);
    results.forEach((r, i) => {
      const id = (r.body as { id: string }).id;
      const note = notes[i]!;
      expect(events.find((e) => e.event_id === `evt_doc_${id}`)?.payload).toBe(stringifyJson({ id, note, nested: { note, list: [note, 1n, null] } }));
    });
  });

  it('looks idempotency keys up by primary key even with a plan made while the table was empty', async () => {
    // A session of its own, like a long-lived pool connection: generic plans from the first run,
    // and an empty idempotency_keys (a temporary copy shadows the real table in this session only).
    const sql = postgres(t.databaseUrl, { max: 1, onnotice: () => undefined, types: { bigint: postgres.BigInt }, connection: { plan_cache_mode: 'force_generic_plan' } });
    try {
      await sql`create temporary table idempotency_keys (like public.idempotency_keys including all)`;
      expect((await findIdempotencyRecords(sql, [{ userId: 'usr_none', key: 'k' }])).size).toBe(0);
      await sql`insert into idempotency_keys (user_id, key, shard, request_hash, status_code, response)
        select 'usr_' || g, 'key', 0, 'hash', 201, '{"n":' || g || '}' from generate_series(1, 5000) g`;
      // this session's scans of the table so far, flushed to the statistics or not
      const scans = async () => (await sql<{ seq: number; idx: number }[]>`select seq_scan::int as seq, idx_scan::int as idx from pg_stat_xact_all_tables where relid = 'idempotency_keys'::regclass`)[0]!;
      const before = await scans();
      const found = await findIdempotencyRecords(sql, [{ userId: 'usr_42', key: 'key' }, { userId: 'usr_43', key: 'other' }]);
      const after = await scans();
      expect([...found.values()]).toEqual([{ requestHash: 'hash', statusCode: 201, response: '{"n":42}' }]);
      expect({ seq: after.seq - before.seq, idx: after.idx - before.idx }).toEqual({ seq: 0, idx: 2 });
    } finally {
      await sql.end();
    }
  });
});
