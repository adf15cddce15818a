import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { stringifyJson } from './json.js';

describe('stringifyJson', () => {
  it('writes bigints as exact JSON integers, however large', () => {
    expect(stringifyJson({ amount: 12345678901234567890n, n: [1n, -2n] })).toBe('{"amount":12345678901234567890,"n":[1,-2]}');
  });

  it('agrees with JSON.stringify on every value without bigints', () => {
    fc.assert(fc.property(fc.jsonValue(), (v) => stringifyJson(v) === JSON.stringify(v)));
    // any UTF-16: control characters, quotes, backslashes, lone surrogates, in keys and values
    fc.assert(fc.property(fc.jsonValue({ stringUnit: 'binary' }), fc.dictionary(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary' })), (v, o) => stringifyJson(v) === JSON.stringify(v) && stringifyJson(o) === JSON.stringify(o)), { numRuns: 2_000 });
    const d = new Date('2026-01-02T03:04:05.678Z');
    expect(stringifyJson({ d, u: undefined, s: 'quote " and \\ and \u2028' })).toBe(JSON.stringify({ d, u: undefined, s: 'quote " and \\ and \u2028' }));
  });
});
