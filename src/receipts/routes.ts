/**
 * Receipts over HTTP: the owner's receipt (bearer token, private) and the same receipt behind a
 * signed, expiring URL (no token, cacheable by browsers and CDNs). Both answer JSON by default
 * and HTML when the client prefers it, with an ETag (hash of the body) and 304 on a match.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Platform } from '../platform.js';
import { Bearer, MoneyOut, Timestamp, problems } from '../http/schemas.js';
import { ProblemError } from '../http/problem.js';
import { stringifyJson } from '../shared/json.js';
import { contentTag, etagMatches } from '../http/l3.js';
import { createReceiptService, publicMaxAgeSeconds, type Receipt } from './service.js';
import { renderReceiptHtml } from './html.js';

const ReceiptSchema = Type.Object({
  id: Type.String({ description: 'the id of the transfer, top-up, payment or refund' }),
  type: Type.Union([Type.Literal('transfer'), Type.Literal('topup'), Type.Literal('payment'), Type.Literal('refund')]),
  direction: Type.Union([Type.Literal('debit'), Type.Literal('credit')]),
  amount: MoneyOut,
  currency: Type.String(),
  status: Type.Union([Type.Literal('pending'), Type.Literal('completed'), Type.Literal('voided')]),
  counterparty: Type.Optional(Type.String()),
  note: Type.Optional(Type.String()),
  createdAt: Timestamp,
  issuedAt: Timestamp,
  receiptUrl: Type.String({ format: 'uri', description: 'signed URL that serves this receipt without a token until expiresAt' }),
  expiresAt: Timestamp,
});

const ReceiptIdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64, description: 'a history item id (txn_, top_, pay_ or ref_)' }) }, { additionalProperties: false });
const TokenParams = Type.Object({ token: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false });

const header = (description: string) => ({ type: 'string', description });
function receiptResponses(cacheControl: string) {
  const headers = { 'cache-control': header(cacheControl), etag: header('weak validator: a hash of the body'), vary: header('Accept') };
  return {
    200: {
      description: 'The receipt: JSON, or an HTML page when the client prefers text/html',
      headers,
      content: { 'application/json': { schema: ReceiptSchema }, 'text/html': { schema: Type.String({ description: 'a self-contained HTML receipt' }) } },
    },
    304: { type: 'null', description: 'Not Modified: If-None-Match holds the current ETag', headers },
  };
}

export function receiptRoutes(p: Platform): FastifyPluginAsyncTypebox {
  const receipts = createReceiptService({ db: p.db, config: p.config });
  return async (app) => {
    const tags = ['receipts'];

    app.get('/transactions/:id/receipt', {
      // only this route needs a bearer token; /receipts/{token} is public
      onRequest: app.authenticate,
      schema: { tags, summary: 'The receipt of one of your history items, with a shareable signed URL', security: Bearer, params: ReceiptIdParams, response: { ...receiptResponses('private, max-age=0'), ...problems(401, 404) } },
    }, async (req, reply) => {
      const result = await receipts.ownReceipt(req.principal!.userId, req.params.id);
      // another user's item answers exactly like an unknown one
      if (!result.ok) throw new ProblemError('not_found', 'No such transaction.');
      return sendReceipt(req, reply, result.value, { cacheControl: 'private, max-age=0', vary: 'Accept, Authorization' });
    });

    app.get('/receipts/:token', {
      schema: { tags, summary: 'A receipt through its signed URL (no token needed; cacheable until the URL expires)', params: TokenParams, response: { ...receiptResponses('public, max-age=N, s-maxage=N (N: seconds left, at most a day; a minute while pending)'), ...problems(403, 404) } },
    }, async (req, reply) => {
      const result = await receipts.sharedReceipt(req.params.token);
      // errors are never cached: a bad link should not occupy a CDN entry
      const noStore = { headers: { 'cache-control': 'no-store' } };
      if (!result.ok && result.error === 'forbidden') throw new ProblemError('forbidden', 'This receipt link is not valid.', noStore);
      if (!result.ok) throw new ProblemError('not_found', 'This receipt link has expired or names no receipt.', noStore);
      const maxAge = publicMaxAgeSeconds(result.value);
      return sendReceipt(req, reply, result.value, { cacheControl: `public, max-age=${maxAge}, s-maxage=${maxAge}`, vary: 'Accept', robots: true });
    });
  };
}

function receiptJson(r: Receipt) {
  return {
    id: r.id,
    type: r.type,
    direction: r.direction,
    amount: r.amountMinor,
    currency: r.currency,
    status: r.status,
    ...(r.counterparty !== undefined ? { counterparty: r.counterparty } : {}),
    ...(r.note !== undefined ? { note: r.note } : {}),
    createdAt: r.createdAt.toISOString(),
    issuedAt: r.issuedAt.toISOString(),
    receiptUrl: r.receiptUrl,
    expiresAt: r.expiresAt.toISOString(),
  };
}

/**
 * Sends the receipt in the representation the client prefers. The body is serialized here (not
 * by the route's serializer) so the ETag is the hash of the exact bytes. The tag is weak because
 * compression may change the bytes on the wire, not the content.
 */
function sendReceipt(req: FastifyRequest, reply: FastifyReply, receipt: Receipt, opts: { cacheControl: string; vary: string; robots?: boolean }): FastifyReply {
  const html = prefersHtml(req.headers.accept);
  const body = html ? renderReceiptHtml(receipt) : stringifyJson(receiptJson(receipt));
  const etag = `W/"${contentTag(body)}"`;
  reply.headers({ 'cache-control': opts.cacheControl, etag, vary: opts.vary, ...(opts.robots ? { 'x-robots-tag': 'noindex' } : {}) });
  if (etagMatches(req.headers['if-none-match'], etag)) return reply.code(304).send();
  return reply.type(html ? 'text/html; charset=utf-8' : 'application/json; charset=utf-8').send(body);
}

/**
 * True when the Accept header ranks text/html above application/json (the most specific
 * matching range decides each one's q). No header, or a tie such as * / *, means JSON.
 */
export function prefersHtml(accept: string | undefined): boolean {
  if (!accept) return false;
  const best = { html: { spec: -1, q: 0 }, json: { spec: -1, q: 0 } };
  for (const part of accept.toLowerCase().split(',')) {
    const [range = '', ...params] = part.split(';').map((s) => s.trim());
    const qParam = params.find((x) => x.startsWith('q='));
    const q = qParam === undefined ? 1 : Number(qParam.slice(2));
    if (!Number.isFinite(q) || q < 0 || q > 1) continue;
    for (const [kind, [type, sub]] of [['html', ['text', 'html']], ['json', ['application', 'json']]] as const) {
      const spec = range === `${type}/${sub}` ? 2 : range === `${type}/*` ? 1 : range === '*/*' ? 0 : -1;
      const cur = best[kind];
      if (spec > cur.spec || (spec === cur.spec && spec >= 0 && q > cur.q)) best[kind] = { spec, q };
    }
  }
  return best.html.q > 0 && best.html.q > best.json.q;
}
