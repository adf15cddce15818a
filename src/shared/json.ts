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
  return writeJson(value, PLAIN) ?? 'null';
}

/** how a writer spells what JSON has no type for */
export interface JsonSpelling {
  bigint(value: bigint): string;
  date(value: Date): string;
}

/** bigints as JSON integers, Dates as JSON.stringify writes them */
const PLAIN: JsonSpelling = { bigint: (v) => v.toString(), date: (d) => JSON.stringify(d) };

/**
 * The JSON of a value as JSON.stringify writes it (own keys, toJSON, undefined and functions
 * left out of objects and null in arrays), bigints and Dates spelled by `as`; undefined where
 * JSON.stringify leaves the value out. Shared by stringifyJson and the cache codec.
 */
export function writeJson(value: unknown, as: JsonSpelling): string | undefined {
  switch (typeof value) {
    case 'string':
      return quoteJson(value);
    case 'number':
      return Number.isFinite(value) ? String(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return as.bigint(value);
    case 'object': {
      if (value === null) return 'null';
      if (value instanceof Date) return as.date(value);
      if (Array.isArray(value)) {
        let out = '[';
        for (let i = 0; i < value.length; i++) {
          if (i) out += ',';
          out += writeJson(value[i], as) ?? 'null';
        }
        return out + ']';
      }
      if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return writeJson((value as { toJSON(key: string): unknown }).toJSON(''), as);
      let out = '';
      for (const key of Object.keys(value)) {
        const v = writeJson((value as Record<string, unknown>)[key], as);
        if (v === undefined) continue;
        out += `${out ? ',' : ''}${quoteJson(key)}:${v}`;
      }
      return `{${out}}`;
    }
    default:
      return undefined; // undefined, functions, symbols
  }
}
