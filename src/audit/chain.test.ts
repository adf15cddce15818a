/**
 * The audit chain on a real PostgreSQL: appending builds a chain that verifies, an event is
 * recorded once, and each kind of tampering (edit, deletion, reordering, truncation against an
 * anchor) is found and named. Tampering runs in a transaction that is rolled back, so every
 * tamper test starts from the same untouched chain.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Queryable, type Sql } from '../db/index.js';
import type { BusEvent } from '../events/types.js';
import { newId, newShard } from '../shared/ids.js';
import { createTestDatabase } from '../test-support/platform.js';
import { appendAudit, auditEventProblem, canonicalJson, recordHash, type AuditHead } from './chain.js';
import { verifyAuditChain, type VerifyResult } from './verify.js';

const databases: { drop(): Promise<void> }[] = [];
const pools: Sql[] = [];
afterAll(async () => {
  await Promise.all(pools.map((s) => s.end({ timeout: 2 })));
  await Promise.all(databases.map((d) => d.drop()));
});

/** a database of its own, with an empty chain */
async function database(): Promise<Sql> {
  const db = await createTestDatabase();
  databases.push(db);
  const sql = connect(db.url, { poolMax: 4, statementTimeoutMs: 60_000 });
  pools.push(sql);
  return sql;
}

const user = { id: newId('usr', 42), shard: 42 };

function moneyEvent(amountMinor: bigint, at = new Date()): BusEvent {
  return { id: newId('evt', user.shard, at), topic: 'transaction-events', key: user.id, type: 'transfer.completed', shard: user.shard, at: at.toISOString(), payload: { from: user.id, to: newId('usr', newShard()), amount: amountMinor, currency: 'USD' } };
}

function securityEvent(type = 'security.login', at = new Date()): BusEvent {
  return { id: newId('evt', user.shard, at), topic: 'audit-logs', key: user.id, type, shard: user.shard, at: at.toISOString(), payload: { userId: user.id, ip: '203.0.113.7' } };
}

const problems = (r: VerifyResult) => r.findings.map((f) => [Number(f.seq), f.problem]);

class Rollback extends Error {}
/** runs fn in a transaction with the append-only trigger off, then rolls everything back */
async function tampered(sql: Sql, fn: (tx: Queryable) => Promise<void>): Promise<void> {
  await sql
    .begin(async (tx) => {
      await tx`alter table audit_log disable trigger user`;
      await fn(tx);
      throw new Rollback();
    })
    .catch((err) => {
      if (!(err instanceof Rollback)) throw err;
    });
}

describe('appending', () => {
  it('builds a chain of money and security events that verifies', async () => {
    const sql = await database();
    const events = [moneyEvent(1_500n), securityEvent('security.login_failed'), moneyEvent(90_071_992_547_409_930n), securityEvent()];
    expect(await appendAudit(sql, events.slice(0, 2))).toMatchObject({ appended: 2, head: { seq: 2n } });
    const second = await appendAudit(sql, events.slice(2));
    expect(second).toMatchObject({ appended: 2, head: { seq: 4n } });

    const rows = await sql<{ seq: bigint; event_id: string; type: string; user_key: string; data: string }[]>`select seq, event_id, type, user_key, data from audit_log order by seq`;
    expect(rows.map((r) => [Number(r.seq), r.event_id, r.type, r.user_key])).toEqual(events.map((e, i) => [i + 1, e.id, e.type, user.id]));
    // the whole event, keys sorted, money exact
    expect(rows[2]!.data).toBe(canonicalJson(events[2]));
    expect(rows[2]!.data).toContain('"amount":90071992547409930');

    const verified = await verifyAuditChain(sql);
    expect(verified).toMatchObject({ ok: true, checked: 4, findings: [], head: second.head });
  });

  it('records an event once, however often it is appended', async () => {
    const sql = await database();
    const e = moneyEvent(100n);
    await appendAudit(sql, [e, e]);
    expect(await appendAudit(sql, [e])).toMatchObject({ appended: 0, head: { seq: 1n } });
    const other = moneyEvent(200n);
    expect(await appendAudit(sql, [e, other])).toMatchObject({ appended: 1, head: { seq: 2n } });
    expect(await sql`select event_id from audit_log order by seq`).toEqual([{ event_id: e.id }, { event_id: other.id }]);
    expect((await verifyAuditChain(sql)).ok).toBe(true);
  });

  it('keeps one unbroken chain when appenders race on a cluster', async () => {
    const sql = await database();
    await Promise.all(Array.from({ length: 12 }, () => appendAudit(sql, Array.from({ length: 25 }, (_, i) => moneyEvent(BigInt(i + 1))))));
    expect(await verifyAuditChain(sql)).toMatchObject({ ok: true, checked: 300, head: { seq: 300n } });
  });

  it('refuses a malformed event before writing anything', async () => {
    const sql = await database();
    const bad = { ...moneyEvent(1n), shard: 1000 };
    expect(auditEventProblem(bad)).toMatch(/shard out of range/);
    expect(auditEventProblem({ ...moneyEvent(1n), at: 'yesterday' })).toMatch(/not a time/);
    expect(auditEventProblem({ ...moneyEvent(1n), key: 'usr\u0000' })).toMatch(/NUL/);
    await expect(appendAudit(sql, [moneyEvent(1n), bad])).rejects.toThrow(TypeError);
    expect(await sql`select count(*)::int as n from audit_log`).toEqual([{ n: 0 }]);
  });

  it('refuses updates and deletes in the database', async () => {
    const sql = await database();
    await appendAudit(sql, [moneyEvent(1n)]);
    await expect(sql`update audit_log set data = '{}'`).rejects.toThrow(/append-only: UPDATE refused/);
    await expect(sql`delete from audit_log`).rejects.toThrow(/append-only: DELETE refused/);
    await expect(sql`truncate audit_log`).rejects.toThrow(/append-only: TRUNCATE refused/);
  });
});

describe('verify', () => {
  let sql: Sql;
  let head: AuditHead;
  beforeAll(async () => {
    sql = await database();
    const events = Array.from({ length: 10 }, (_, i) => (i % 3 ? moneyEvent(BigInt(100 * i)) : securityEvent()));
    head = (await appendAudit(sql, events)).head!;
  });

  it('reports a record whose data was edited', async () => {
    await tampered(sql, async (tx) => {
      await tx`update audit_log set data = replace(data, '"amount":400', '"amount":40000') where seq = 5`;
      const r = await verifyAuditChain(tx);
      expect(r.ok).toBe(false);
      expect(problems(r)).toEqual([[5, 'hash_mismatch']]);
      expect(r.checked).toBe(10);
    });
  });

  it.each([
    ['at, by one microsecond', 'at = at + interval \'1 microsecond\''],
    ['recorded_at', 'recorded_at = recorded_at - interval \'1 hour\''],
    ['user_key', 'user_key = \'usr_someone_else\''],
    ['shard', 'shard = shard + 1'],
    ['type', 'type = \'security.login\''],
    ['event_id', 'event_id = event_id || \'x\''],
  ])('reports an edit of %s', async (_column, assignment) => {
    await tampered(sql, async (tx) => {
      await tx.unsafe(`update audit_log set ${assignment} where seq = 8`);
      expect(problems(await verifyAuditChain(tx))).toEqual([[8, 'hash_mismatch']]);
    });
  });

  it('reports a record edited with its hash recomputed, at the next record\'s link', async () => {
    await tampered(sql, async (tx) => {
      const [r] = await tx<{ prev_hash: Buffer; event_id: string; type: string; user_key: string; shard: number; at: string; recorded_at: string; data: string }[]>`
        select prev_hash, event_id, type, user_key, shard, data, to_char(at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as at, to_char(recorded_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as recorded_at
        from audit_log where seq = 4`;
      const data = r!.data.replace('"ip":"203.0.113.7"', '"ip":"198.51.100.1"');
      expect(data).not.toBe(r!.data);
      const forged = recordHash(r!.prev_hash, { seq: 4n, eventId: r!.event_id, type: r!.type, userKey: r!.user_key, shard: r!.shard, at: r!.at, recordedAt: r!.recorded_at, data });
      await tx`update audit_log set data = ${data}, hash = ${forged} where seq = 4`;
      expect(problems(await verifyAuditChain(tx))).toEqual([[5, 'broken_link']]);
    });
  });

  it('reports a deleted record in the middle as a sequence gap, across a page boundary', async () => {
    await tampered(sql, async (tx) => {
      await tx`delete from audit_log where seq = 5`;
      const r = await verifyAuditChain(tx, { pageSize: 4 });
      expect(problems(r)).toEqual([[6, 'sequence_gap']]);
      expect(r.findings[0]!.detail).toBe('records 5..5 are missing');
      expect(r.checked).toBe(9);
    });
  });

  it('reports a deleted first record', async () => {
    await tampered(sql, async (tx) => {
      await tx`delete from audit_log where seq = 1`;
      expect(problems(await verifyAuditChain(tx))).toEqual([[2, 'sequence_gap']]);
    });
  });

  it('reports two records swapped in order', async () => {
    await tampered(sql, async (tx) => {
      await tx`update audit_log set seq = -6 where seq = 6`;
      await tx`update audit_log set seq = 6 where seq = 7`;
      await tx`update audit_log set seq = 7 where seq = -6`;
      expect(problems(await verifyAuditChain(tx))).toEqual([
        [6, 'broken_link'],
        [6, 'hash_mismatch'],
        [7, 'broken_link'],
        [7, 'hash_mismatch'],
        [8, 'broken_link'],
      ]);
    });
  });

  it('sees deleted newest records only against an anchor kept from an earlier verify', async () => {
    expect((await verifyAuditChain(sql, { anchor: head })).ok).toBe(true);
    await tampered(sql, async (tx) => {
      await tx`delete from audit_log where seq >= 9`;
      // the limit of the table alone: a shorter chain is a valid chain
      expect(await verifyAuditChain(tx)).toMatchObject({ ok: true, checked: 8 });
      const r = await verifyAuditChain(tx, { anchor: head });
      expect(problems(r)).toEqual([[10, 'anchor_missing']]);
      expect(r.findings[0]!.detail).toMatch(/chain ends at seq 8/);
    });
  });

  it('reports a chain rewritten up to its anchor', async () => {
    await tampered(sql, async (tx) => {
      await tx`update audit_log set hash = sha256(hash) where seq = 10`;
      expect(problems(await verifyAuditChain(tx, { anchor: head }))).toEqual([
        [10, 'hash_mismatch'],
        [10, 'anchor_mismatch'],
      ]);
    });
  });
});

describe('verify at scale', () => {
  it('checks a chain of a few thousand records page by page', async () => {
    const sql = await database();
    const at = Date.now() - 3_000_000;
    for (let b = 0; b < 3; b++) await appendAudit(sql, Array.from({ length: 1_000 }, (_, i) => moneyEvent(BigInt(i), new Date(at + (b * 1_000 + i) * 1_000))));
    const pages: number[] = [];
    const r = await verifyAuditChain(sql, { pageSize: 256, onProgress: (n) => pages.push(n) });
    expect(r).toMatchObject({ ok: true, checked: 3_000, findings: [], head: { seq: 3_000n } });
    expect(pages).toHaveLength(12); // 11 full pages and the last, partial one
    expect(pages.at(-1)).toBe(3_000);
  });
});
