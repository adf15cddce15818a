import { describe, expect, it } from 'vitest';
import { Fifo } from './fifo.js';

describe('Fifo', () => {
  it('gives items back in the order they came, across the drops of its taken prefix', () => {
    const q = new Fifo<number>();
    const out: number[] = [];
    let next = 0;
    // pushes and shifts interleaved, so that the prefix is dropped while items remain
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 700; i++) q.push(next++);
      for (let i = 0; i < 500; i++) out.push(q.shift()!);
    }
    expect(q.length).toBe(next - out.length);
    expect(q.peek()).toBe(out.length);
    while (q.length) out.push(q.shift()!);
    expect(out).toEqual(Array.from({ length: next }, (_, i) => i));
    expect(q.shift()).toBeUndefined();
    expect(q.peek()).toBeUndefined();
  });
});
