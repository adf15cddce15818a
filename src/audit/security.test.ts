/**
 * Security events through the public surface (sign-in over HTTP, the KEK rotation's recorder),
 * and the audit consumers on the platform's bus turning published events into chain records.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sql } from '../db/index.js';
import type { BusEvent, Topic } from '../events/types.js';
import { createTestPlatform, fund, moneyPost, signUp, uniqueEmail, type TestPlatform } from '../test-support/platform.js';
import { auditConsumers } from './consumer.js';
import { emailFingerprint, recordKekRotation, VAULT_SUBJECT } from './security.js';
import { verifyAuditChain } from './verify.js';

const PASSWORD = 'correct horse battery staple';

let t: TestPlatform;
let sql: Sql;
beforeAll(async () => {
  t = await createTestPlatform();
  sql = t.platform.db.clusters[0]!.sql;
});
afterAll(async () => {
  await t?.close();
});

interface OutboxRow {
  event_id: string;
  topic: string;
  partition_key: string;
  shard: number;
  type: string;
  payload: Record<string, unknown>;
  created_at: Date;
}

async function outbox(where: { keys?: string[]; type?: string }): Promise<OutboxRow[]> {
  return sql<OutboxRow[]>`select event_id, topic, partition_key, shard, type, payload, created_at from outbox
    where (${where.keys ?? null}::text[] is null or partition_key = any(${where.keys ?? null}::text[]))
      and (${where.type ?? null}::text is null or type = ${where.type ?? null}::text)
    order by seq`;
}

const toBusEvent = (r: OutboxRow): BusEvent => ({ id: r.event_id, topic: r.topic as Topic, key: r.partition_key, type: r.type, shard: r.shard, at: r.created_at.toISOString(), payload: r.payload });

const login = (email: string, password: string) => t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { email, password }, remoteAddress: '203.0.113.9' });

describe('security events', () => {
  it('records a sign-in on audit-logs, keyed by the user', async () => {
    const user = await signUp(t.app);
    const rows = await outbox({ keys: [user.id] });
    expect(rows).toEqual([expect.objectContaining({ topic: 'audit-logs', type: 'security.login', partition_key: user.id, payload: { userId: user.id, ip: '127.0.0.1' } })]);
  });

  it('records a failed sign-in of an account under its user, without the password', async () => {
    const user = await signUp(t.app);
    expect((await login(user.email, 'not the password')).statusCode).toBe(401);
    const [row] = await outbox({ keys: [user.id], type: 'security.login_failed' });
    expect(row).toMatchObject({ topic: 'audit-logs', partition_key: user.id, payload: { userId: user.id, ip: '203.0.113.9', reason: 'wrong_password' } });
    expect(JSON.stringify(row)).not.toContain('not the password');
  });

  it('records a failed sign-in of an unknown email by a fingerprint, never the email or the password', async () => {
    const email = uniqueEmail('nobody');
    expect((await login(email, 'guess-123')).statusCode).toBe(401);
    const fingerprint = emailFingerprint(t.config.jwtSecret, email);
    const [row] = await outbox({ keys: [`email:${fingerprint}`] });
    expect(row).toMatchObject({ topic: 'audit-logs', type: 'security.login_failed', payload: { ip: '203.0.113.9', reason: 'unknown_email', emailFingerprint: fingerprint } });
    expect(fingerprint).toMatch(/^[0-9a-f]{32}$/);
    // the same address (any case) always gives the same key, so repeated attempts line up
    expect(emailFingerprint(t.config.jwtSecret, email.toUpperCase())).toBe(fingerprint);
    const text = JSON.stringify(row);
    expect(text).not.toContain(email);
    expect(text).not.toContain(email.split('@')[0]!);
    expect(text).not.toContain('guess-123');
  });

  it('records a KEK rotation with the active KEK and who ran it', async () => {
    await recordKekRotation(t.platform.db, { activeKek: 'B', rewrapped: 3 });
    const [row] = await outbox({ keys: [VAULT_SUBJECT] });
    expect(row).toMatchObject({ topic: 'audit-logs', type: 'security.kek_rotated', payload: { activeKek: 'B', rewrapped: 3, operator: expect.any(String) } });
  });
});

describe('audit consumers', () => {
  it('append the money and security events published on the bus to the chain, once each', async () => {
    const [alice, bob] = await Promise.all([signUp(t.app), signUp(t.app)]);
    await fund(t.app, alice, 5_000);
    expect((await moneyPost(t.app, alice, '/v1/transfers', { to: bob.id, amount: 1_250, currency: 'USD' })).statusCode).toBe(201);
    expect((await login(bob.email, 'wrong')).statusCode).toBe(401);
    const events = (await outbox({ keys: [alice.id, bob.id] })).map(toBusEvent);
    expect(events.map((e) => e.type).sort()).toEqual(['security.login', 'security.login', 'security.login_failed', 'topup.completed', 'transfer.completed']);

    const specs = auditConsumers(t.platform);
    expect(specs.map((s) => [s.group, s.topic])).toEqual([
      ['audit', 'transaction-events'],
      ['audit', 'audit-logs'],
    ]);
    const subs = specs.map((s) => t.platform.bus.subscribe(s.group, s.topic, s.handler));
    try {
      await t.platform.bus.publish(events);
      // a redelivery (the bus de-duplicates only inside its window) appends nothing
      await specs[1]!.handler(events.find((e) => e.topic === 'audit-logs')!, { attempt: 2, group: 'audit' });
    } finally {
      await Promise.all(subs.map((s) => s.stop()));
    }

    const ids = events.map((e) => e.id);
    const records = await sql<{ event_id: string }[]>`select event_id from audit_log where event_id = any(${ids}::text[])`;
    expect(records.map((r) => r.event_id).sort()).toEqual(ids.sort());
    expect(await verifyAuditChain(sql)).toMatchObject({ ok: true, findings: [] });
  });

  it('dead-letter a malformed event instead of failing the events batched with it', async () => {
    const specs = auditConsumers(t.platform);
    const sub = t.platform.bus.subscribe(specs[1]!.group, specs[1]!.topic, specs[1]!.handler);
    const good: BusEvent = { id: `evt-good-${Date.now()}`, topic: 'audit-logs', key: 'system:test', type: 'security.login', shard: 7, at: new Date().toISOString(), payload: {} };
    const bad: BusEvent = { ...good, id: `evt-bad-${Date.now()}`, shard: 5_000 };
    try {
      await t.platform.bus.publish([bad, good]);
    } finally {
      await sub.stop();
    }
    expect(await t.platform.bus.deadLetters()).toContainEqual(expect.objectContaining({ group: 'audit', reason: 'poison: audit: shard out of range: 5000', event: bad }));
    expect(await sql`select event_id from audit_log where event_id in (${good.id}, ${bad.id})`).toEqual([{ event_id: good.id }]);
  });
});
