/**
 * The relay killed with SIGKILL in the middle of a batch and started again: every event reaches
 * each consumer group's effect exactly once. On the in-process bus the consumers live (and die)
 * in the relay's process; on JetStream they run here and only the relay is killed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createTestPlatform, type TestPlatform, until } from '../test-support/platform.js';
import { busEnv, dropNamespace } from '../test-support/nats.js';
import { appendOutbox } from './outbox.js';
import { once } from './inbox.js';
import { newId, newShard } from '../shared/ids.js';
import type { OutboxEvent } from '../ledger/types.js';
import type { Subscription } from './types.js';

const CHILD = fileURLToPath(new URL('./fixtures/relay-child.ts', import.meta.url));
const EVENTS = 400;

function startChild(env: Record<string, string>): { child: ChildProcess; lines: string[]; exited: Promise<void>; stderr(): string } {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts);
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  return { child, lines, exited, stderr: () => err };
}


describe.each(['memory', 'jetstream'] as const)('relay killed mid-batch on the %s bus', (kind) => {
  let t: TestPlatform;
  let ns = '';
  let env: Record<string, string> = {};
  const subs: Subscription[] = [];
  beforeAll(async () => {
    const bus = await busEnv(kind);
    ns = bus.namespace;
    env = bus.env;
    t = await createTestPlatform(env);
    const sql = t.platform.db.clusters[0]!.sql;
    await sql`create table test_effects (grp text not null, event_id text not null)`;
    if (kind === 'jetstream') {
      for (const group of ['g1', 'g2']) {
        subs.push(t.platform.bus.subscribe(group, 'transaction-events', async (e) => void (await once(sql, group, e.id, (tx) => tx`insert into test_effects (grp, event_id) values (${group}, ${e.id})`.then(() => undefined)))));
      }
    }
  });
  afterAll(async () => {
    await Promise.all(subs.map((s) => s.stop()));
    await t?.close();
    if (ns) await dropNamespace(ns);
  });

  test('every event reaches each group’s effect exactly once after a SIGKILL and a restart', async () => {
    const sql = t.platform.db.clusters[0]!.sql;
    const users = Array.from({ length: 20 }, () => newId('usr', newShard()));
    const rows: OutboxEvent[] = Array.from({ length: EVENTS }, (_, i) => {
      const u = users[i % users.length]!;
      const shard = Number(u.slice(4, 7));
      return { eventId: `${newId('evt', shard)}_${i}`, topic: 'transaction-events', partitionKey: u, shard, type: 'transfer.completed', payload: { i } };
    });
    await appendOutbox(sql, rows);
    const childEnv = { ...env, TEST_CHILD_DATABASE_URL: t.databaseUrl, CONSUME: kind === 'memory' ? '1' : '0' };

    const first = startChild(childEnv);
    await until(() => first.lines.filter((l) => l.startsWith('half')).length >= 3, 30_000, 'three half-published batches');
    first.child.kill('SIGKILL');
    await first.exited;
    const [{ unsent }] = await sql<{ unsent: bigint }[]>`select count(*) as unsent from outbox where sent_at is null`;
    expect(unsent).toBeGreaterThan(0n); // killed part-way

    const second = startChild(childEnv);
    try {
      await until(async () => (await sql`select 1 from outbox where sent_at is null limit 1`).length === 0, 45_000, () => `outbox drained (child said: ${second.lines.slice(-3).join(' | ')}; stderr: ${second.stderr().slice(-2000)})`);
      await until(async () => Number((await sql<{ n: bigint }[]>`select count(*) as n from test_effects`)[0]!.n) >= 2 * EVENTS, 45_000, 'effects');
      await new Promise((r) => setTimeout(r, 300)); // room for a duplicate to show
    } finally {
      second.child.kill('SIGKILL');
      await second.exited;
    }
    for (const group of ['g1', 'g2']) {
      const [r] = await sql<{ n: bigint; distinct: bigint }[]>`select count(*) as n, count(distinct event_id) as distinct from test_effects where grp = ${group}`;
      expect({ group, n: r!.n, distinct: r!.distinct }).toEqual({ group, n: BigInt(EVENTS), distinct: BigInt(EVENTS) });
    }
  }, 150_000);
});
