/**
 * JSON with bigint money: bigints are written as plain JSON integers (exact, however large),
 * which JSON.stringify cannot do on its own. Written by hand rather than with a replacer: the
 * ledger serializes every answer and event, and this is several times cheaper.
 */
export function stringifyJson(value: unknown): string {
  switch (typeof value) {
    case 'bigint':
      return value.toString();
    case 'string':
      return JSON.stringify(value);
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
        out += `${out ? ',' : ''}${JSON.stringify(key)}:${stringifyJson(v)}`;
      }
      return `{${out}}`;
    }
    default:
      return 'null';
  }
}
