/**
 * Cache values as text: JSON in which bigints and Dates survive the round trip exactly
 * (money stays bigint; 2^53 is no limit). A bigint is written as the string "\u0000n<digits>",
 * a Date as "\u0000d<ISO time>"; decode turns them back.
 */
import { writeJson, type JsonSpelling } from '../shared/json.js';

const BIG = '\u0000n';
const DATE = '\u0000d';
const BIG_JSON = JSON.stringify(BIG).slice(0, -1); // "\u0000n, without the closing quote
const DATE_JSON = JSON.stringify(DATE).slice(0, -1);

/**
 * Written by hand (src/shared/json.ts's writer): JSON.stringify with a replacer function calls it
 * for every key, and encoding the cached first history pages (100 items) on every commit that
 * revised them was 1.6 % of the HTTP benchmark's API time. Writes exactly what
 * JSON.stringify(value, replacer) wrote (codec.test.ts compares them on random values).
 */
export function encode(value: unknown): string {
  // undefined for undefined, as JSON.stringify (its type says string, too)
  return writeJson(value, MARKED) as string;
}

const MARKED: JsonSpelling = { bigint: (v) => `${BIG_JSON}${v}"`, date: (d) => `${DATE_JSON}${d.toISOString()}"` };

export function decode<T>(text: string): T {
  return JSON.parse(text, (_k, v: unknown) => {
    if (typeof v === 'string' && v.charCodeAt(0) === 0) {
      if (v.startsWith(BIG)) return BigInt(v.slice(BIG.length));
      if (v.startsWith(DATE)) return new Date(v.slice(DATE.length));
    }
    return v;
  }) as T;
}
