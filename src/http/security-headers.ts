/**
 * Security headers (helmet's set) on every answer. The values depend only on the options, so
 * they are computed once, at start, by running helmet's own middleware against a recorder:
 * @fastify/helmet built that middleware again for every request (re-parsing the CSP directives)
 * and added two hooks, one of them async, ~4 % of an API process's CPU in the HTTP benchmark.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import helmet, { type HelmetOptions } from 'helmet';

/**
 * Header name (lower case) → value. The one header helmet removes, X-Powered-By, is one Fastify
 * never sets, so removals are not recorded.
 */
export function securityHeaders(options: Readonly<HelmetOptions>): Record<string, string> {
  const set: Record<string, string> = {};
  const recorder = {
    setHeader(name: string, value: string | number | readonly string[]) {
      set[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value);
    },
    removeHeader() {},
  };
  let failed: unknown;
  helmet(options)({} as IncomingMessage, recorder as unknown as ServerResponse, (err?: unknown) => {
    failed = err;
  });
  if (failed) throw failed instanceof Error ? failed : new Error(String(failed));
  return set;
}
