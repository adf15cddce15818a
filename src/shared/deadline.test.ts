import { describe, expect, it } from 'vitest';
import { within } from './deadline.js';

describe('within', () => {
  it('answers what the work answers in time, and fails with the given error once it is late', async () => {
    await expect(within(Promise.resolve(7), 1_000, () => new Error('late'))).resolves.toBe(7);
    await expect(within(Promise.reject(new Error('own')), 1_000, () => new Error('late'))).rejects.toThrow('own');
    await expect(within(new Promise(() => undefined), 20, () => new Error('late'))).rejects.toThrow('late');
  });

  it('lets work it gave up on fail later without an unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const listener = (r: unknown) => unhandled.push(r);
    process.on('unhandledRejection', listener);
    try {
      const work = new Promise((_, fail) => setTimeout(() => fail(new Error('after the deadline')), 40));
      await expect(within(work, 10, () => new Error('late'))).rejects.toThrow('late');
      await new Promise((r) => setTimeout(r, 80));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', listener);
    }
  });
});
