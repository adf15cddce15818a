import { describe, expect, it } from 'vitest';
import { hashShard, newId, newShard, parseId, SHARD_COUNT } from './ids.js';

describe('ids', () => {
  it('carry their shard and creation time and sort by time', () => {
    const at = new Date('2026-11-25T12:34:56.789Z');
    const id = newId('txn', 42, at);
    expect(id).toMatch(/^txn_042[0-9A-Z]{26}$/);
    expect(parseId(id)).toEqual({ prefix: 'txn', shard: 42, createdAt: at });
    expect(newId('txn', 7, new Date(at.getTime() - 1)) < newId('txn', 7, at)).toBe(true);
  });

  it('are refused when malformed, of another type, or beyond what PostgreSQL stores', () => {
    expect(parseId('txn_042', 'txn')).toBeUndefined();
    expect(parseId(newId('usr', 1), 'txn')).toBeUndefined();
    expect(parseId('txn_999ZZZZZZZZZZAAAAAAAAAAAAAAAA')).toBeUndefined();
    expect(() => newId('usr', SHARD_COUNT)).toThrow(RangeError);
  });

  it('spread new users evenly over the 1,000 shards', () => {
    const counts = new Array(SHARD_COUNT).fill(0);
    const n = 200_000;
    for (let i = 0; i < n; i++) counts[newShard()]++;
    // chi-square with 999 degrees of freedom: mean 999, sd ~45; 1,250 is beyond 5 sd
    const expected = n / SHARD_COUNT;
    const chi2 = counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
    expect(chi2).toBeLessThan(1250);
    expect(Math.min(...counts)).toBeGreaterThan(0);
  });

  it('hash other keys (emails) to a stable shard', () => {
    expect(hashShard('ada@example.com')).toBe(hashShard('ada@example.com'));
    const seen = new Set(Array.from({ length: 5000 }, (_, i) => hashShard(`user${i}@example.com`)));
    expect(seen.size).toBeGreaterThan(900);
  });
});
