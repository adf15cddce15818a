/**
 * JSON with bigint money: bigints are written as plain JSON integers (exact, however large),
 * which JSON.stringify cannot do on its own.
 */
const MARK = '\u0000big:';
const MARKED = /"\\u0000big:(-?\d+)"/g;

export function stringifyJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? MARK + v.toString() : v)).replace(MARKED, '$1');
}
