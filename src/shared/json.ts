/**
 * JSON with bigint money: bigints are written as plain JSON integers (exact, however large),
 * which JSON.stringify cannot do on its own. Written by hand rather than with a replacer: the
 * ledger serializes every answer and event, and this is several times cheaper.
 */
// a string with none of these is its own JSON between quotes (JSON.stringify escapes them)
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/** JSON.stringify of a string, a third cheaper on the ids and words answers and events are made of */
export function quoteJson(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`;
}

export function stringifyJson(value: unknown): string {
  switch (typeof value) {
    case 'bigint':
      return value.toString();
    case 'string':
      return quoteJson(value);
    case 'number':
      return Number.isFinite(value) ? String(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) return `[${value.map((v) => (v === undefined || typeof v === 'function' ? 'null' : stringifyJson(v))).join(',')}]`;
      if (value instanceof Date) return JSON.stringify(value);
      if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return stringifyJson((value as { toJSON(): unknown }).toJSON());
      let out = '';
      for (const key in value) {
        const v = (value as Record<string, unknown>)[key];
        if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
        out += `${out ? ',' : ''}${quoteJson(key)}:${stringifyJson(v)}`;
      }
      return `{${out}}`;
    }
    default:
      return 'null';
  }
}
