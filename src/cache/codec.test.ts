import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decode, encode } from './codec.js';

/** the encoder codec.ts had before it was written by hand: the reference */
function reference(value: unknown): string {
  return JSON.stringify(value, function (this: Record<string, unknown>, k, v: unknown) {
    const raw = this[k];
    if (typeof raw === 'bigint') return '\u0000n' + raw.toString();
    if (raw instanceof Date) return '\u0000d' + raw.toISOString();
    return v;
  });
}

const leaf = fc.oneof(
  fc.string({ unit: 'binary' }),
  fc.double(),
  fc.integer(),
  fc.bigInt(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.date({ noInvalidDate: true }),
);
const value = fc.letrec((tie) => ({
  any: fc.oneof({ depthSize: 'small' }, leaf, tie('array'), tie('object')),
  array: fc.array(tie('any'), { maxLength: 5 }),
  object: fc.dictionary(fc.string({ unit: 'binary' }), tie('any'), { maxKeys: 5 }),
})).any;

describe('cache codec', () => {
  it('writes exactly what JSON.stringify with the bigint and Date markers wrote, for any value', () => {
    fc.assert(
      fc.property(value, (v) => {
        expect(encode(v)).toBe(reference(v));
      }),
      { numRuns: 2_000 },
    );
  });

  it('brings money back as the same bigint and times as the same Date', () => {
    const page = { items: [{ id: 'txn_1', amount: 2n ** 70n, createdAt: new Date('2026-12-04T01:02:03.456Z'), note: 'say "hi" \u0000' }], version: 7n };
    expect(decode(encode(page))).toEqual(page);
  });
});
