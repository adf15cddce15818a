import { describe, expect, test } from 'vitest';
import { laneOf, laneRange } from './relay.js';
import { SHARD_COUNT } from '../shared/ids.js';

describe('relay lanes', () => {
  test('every shard is in the range of the lane it is assigned to, for every lane count', () => {
    const wrong: string[] = [];
    for (let lanes = 1; lanes <= 1000; lanes++) {
      for (let shard = 0; shard < SHARD_COUNT; shard++) {
        const lane = laneOf(shard, lanes);
        const [lo, hi] = laneRange(lane, lanes);
        if (lane < 0 || lane >= lanes || shard < lo || shard > hi) wrong.push(`${lanes} lanes: shard ${shard} → lane ${lane} [${lo}, ${hi}]`);
      }
    }
    expect(wrong.slice(0, 5)).toEqual([]);
  });

  test('the lanes cover every shard once, in order', () => {
    for (const lanes of [1, 3, 16, 999, 1000]) {
      const covered: number[] = [];
      for (let lane = 0; lane < lanes; lane++) {
        const [lo, hi] = laneRange(lane, lanes);
        for (let s = lo; s <= hi; s++) covered.push(s);
      }
      expect(covered).toEqual(Array.from({ length: SHARD_COUNT }, (_, i) => i));
    }
  });
});
