/**
 * Cache values as text: JSON in which bigints and Dates survive the round trip exactly
 * (money stays bigint; 2^53 is no limit).
 */
const BIG = '\u0000n';
const DATE = '\u0000d';

export function encode(value: unknown): string {
  return JSON.stringify(value, function (this: Record<string, unknown>, k, v: unknown) {
    const raw = this[k];
    if (typeof raw === 'bigint') return BIG + raw.toString();
    if (raw instanceof Date) return DATE + raw.toISOString();
    return v;
  });
}

export function decode<T>(text: string): T {
  return JSON.parse(text, (_k, v: unknown) => {
    if (typeof v === 'string' && v.charCodeAt(0) === 0) {
      if (v.startsWith(BIG)) return BigInt(v.slice(BIG.length));
      if (v.startsWith(DATE)) return new Date(v.slice(DATE.length));
    }
    return v;
  }) as T;
}
