/**
 * PostgreSQL text cannot hold the NUL character (U+0000): a string carrying one fails the
 * statement that stores or compares it (SQLSTATE 22021), which reached callers as a 500. NUL has
 * no business in anything this API takes, so it is refused at the edge with 400
 * validation_failed, wherever it comes: a percent-escape in the path or query (`%00`), or a
 * `\u0000` escape in a JSON body (a raw NUL byte is not valid JSON, and Node's HTTP parser
 * refuses it in headers).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ProblemError } from './problem.js';

const DETAIL = 'Text may not contain the NUL character (U+0000).';

/** true when the URL, decoded, would carry a NUL */
function urlHasNul(url: string): boolean {
  return url.includes('%00');
}

/** whether a parsed JSON value holds a NUL in any string, key or value */
function hasNul(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\u0000');
  if (Array.isArray(value)) return value.some(hasNul);
  if (value !== null && typeof value === 'object') return Object.entries(value).some(([k, v]) => k.includes('\u0000') || hasNul(v));
  return false;
}

/** Registers the checks: the URL in an onRequest hook (before authentication), JSON bodies in their parser. */
export function refuseNul(app: FastifyInstance): void {
  app.addHook('onRequest', (req: FastifyRequest, _reply, done) => done(urlHasNul(req.url) ? new ProblemError('validation_failed', DETAIL) : undefined));
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    parseJson(req, body as string, (err, value) => {
      if (err) return done(err, undefined);
      // the walk only when the text has the escape at all: bodies without it cost one search
      if ((body as string).includes('\\u0000') && hasNul(value)) return done(new ProblemError('validation_failed', DETAIL), undefined);
      done(null, value);
    });
  });
}
