/**
 * The in-process bus's delivery guarantees that the relay's durability rests on: publish()
 * resolves only after the effect, even for a republish, and a hung handler cannot hold it for ever.
 */
import { describe, expect, test } from 'vitest';
import { createMemoryBus, createMemoryJobQueue, DedupWindow } from './memory.js';
import { createBackbone } from './index.js';
import { loadConfig } from '../config/index.js';
import { createLogger } from '../observability/logger.js';
import type { BusEvent } from './types.js';

const event = (id: string): BusEvent => ({ id, topic: 'transaction-events', key: 'usr_a', type: 'transfer.completed', shard: 1, at: new Date().toISOString(), payload: {} });

describe('the in-process bus', () => {
  test('an attempt that never settles is redelivered after the ack wait, and publish resolves when a later one succeeds', async () => {
    const bus = createMemoryBus({ maxDeliver: 5, dedupWindowMs: 60_000, ackWaitMs: 200, redeliveryBaseMs: 1 });
    const attempts: number[] = [];
    bus.subscribe('g', 'transaction-events', async (_e, ctx) => {
      attempts.push(ctx.attempt);
      if (ctx.attempt === 1) await new Promise(() => undefined);
    });
    await bus.publish([event('evt_hang')]);
    expect(attempts).toEqual([1, 2]);
    expect(await bus.deadLetters()).toEqual([]);
  });

  test('a republish of an event still being delivered resolves only after that delivery', async () => {
    const bus = createMemoryBus({ maxDeliver: 5, dedupWindowMs: 60_000 });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let effects = 0;
    bus.subscribe('g', 'transaction-events', async () => {
      await gate;
      effects++;
    });
    const first = bus.publish([event('evt_slow')]);
    let again = false;
    const second = bus.publish([event('evt_slow')]).then(() => (again = true));
    await new Promise((r) => setTimeout(r, 50));
    // the duplicate is not delivered again, and does not claim the effect happened before it did
    expect(again).toBe(false);
    release();
    await Promise.all([first, second]);
    expect(effects).toBe(1);
    // once delivered, a republish inside the window returns at once without a second effect
    await bus.publish([event('evt_slow')]);
    expect(effects).toBe(1);
  });
});

describe('the de-duplication window', () => {
  test('refuses an id inside its window and takes it again after', () => {
    const w = new DedupWindow(1_000);
    expect(w.add('a', 0)).toBe(true);
    expect(w.add('a', 999)).toBe(false);
    expect(w.has('a', 999)).toBe(true);
    expect(w.add('a', 1_000)).toBe(true);
    expect(w.add('a', 1_500)).toBe(false);
  });

  test('forgets the oldest ids first, by time and past its id bound, and stays that size', () => {
    const w = new DedupWindow(1_000, 3);
    for (const [id, at] of [['a', 0], ['b', 100], ['c', 200], ['d', 300]] as const) w.add(id, at);
    expect([w.has('a', 300), w.has('b', 300), w.has('d', 300)]).toEqual([false, true, true]);
    expect(w.add('e', 1_150)).toBe(true); // b has expired (1,100), c is still inside (1,200)
    expect([w.has('b', 1_150), w.has('c', 1_150), w.has('e', 1_150)]).toEqual([false, true, true]);
    for (let i = 0; i < 10_000; i++) w.add(`x${i}`, 2_000 + i);
    expect(w.size).toBeLessThanOrEqual(3);
    expect(w.has('x9999', 12_000)).toBe(true);
  });
});

describe('the in-process job queue', () => {
  const job = (id: string) => ({ id, kind: 'k', payload: {} });

  test('gives jobs first queued first, holds delayed ones until due, and counts what is leased', async () => {
    const q = createMemoryJobQueue({ dedupWindowMs: 60_000 });
    await q.enqueue('low', [job('later')], { delayMs: 150 });
    await q.enqueue('low', [job('one'), job('two'), job('three')]);
    const first = await q.take('low', 2);
    expect(first.map((j) => j.job.id)).toEqual(['one', 'two']);
    expect(await q.depth()).toEqual({ high: 0, medium: 0, low: 4 });
    await first[0]!.ack();
    await first[0]!.ack(); // twice is once
    await first[1]!.retry(0);
    expect((await q.take('low', 10)).map((j) => [j.job.id, j.attempt])).toEqual([['three', 1], ['two', 2]]);
    await new Promise((r) => setTimeout(r, 200));
    expect((await q.take('low', 10)).map((j) => j.job.id)).toEqual(['later']);
    expect(await q.depth()).toEqual({ high: 0, medium: 0, low: 3 });
  });

  test('holds at most JOBS_MEMORY_MAX jobs', async () => {
    const { jobs } = createBackbone(loadConfig({ JOBS_MEMORY_MAX: '1000' }), createLogger('silent'));
    await jobs.enqueue('low', Array.from({ length: 1_000 }, (_, i) => job(`bound-${i}`)));
    await expect(jobs.enqueue('low', [job('one-more')])).rejects.toThrow('job queue full (1000 jobs)');
  });

  test('refuses a batch past its bound whole, and takes it once there is room', async () => {
    const q = createMemoryJobQueue({ dedupWindowMs: 60_000, maxDepth: 3 });
    await q.enqueue('high', [job('a'), job('b')]);
    await expect(q.enqueue('high', [job('c'), job('d')])).rejects.toThrow('job queue full');
    const [a] = await q.take('high', 1);
    await a!.ack();
    await q.enqueue('high', [job('c'), job('d')]);
    expect((await q.take('high', 10)).map((j) => j.job.id)).toEqual(['b', 'c', 'd']);
  });

  test('drains 200,000 queued jobs, retried ones among them, each exactly once', async () => {
    const q = createMemoryJobQueue({ dedupWindowMs: 60_000 });
    const n = 200_000;
    for (let i = 0; i < n; i += 1_000) await q.enqueue('medium', Array.from({ length: 1_000 }, (_, k) => job(`j${i + k}`)));
    const done = new Set<string>();
    let twice = 0;
    for (let batch = await q.take('medium', 500); batch.length; batch = await q.take('medium', 500)) {
      for (const j of batch) {
        if (j.attempt === 1 && Number(j.job.id.slice(1)) % 10 === 0) await j.retry(0);
        else {
          if (done.has(j.job.id)) twice++;
          done.add(j.job.id);
          await j.ack();
        }
      }
    }
    expect(twice).toBe(0);
    expect(done.size).toBe(n);
    expect(await q.depth()).toEqual({ high: 0, medium: 0, low: 0 });
  });
});
