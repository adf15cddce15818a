/**
 * The in-process bus's delivery guarantees that the relay's durability rests on: publish()
 * resolves only after the effect, even for a republish, and a hung handler cannot hold it for ever.
 */
import { describe, expect, test } from 'vitest';
import { createMemoryBus } from './memory.js';
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
