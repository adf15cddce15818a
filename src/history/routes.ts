import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Platform } from '../platform.js';
import { Bearer, Currency, MoneyOut, Timestamp, problems } from '../http/schemas.js';
import { ProblemError } from '../http/problem.js';
import { hotSince } from '../db/partitions.js';
import { decodeCursor, encodeCursor, historyPage, historyReader, loadRecent, type HistoryItem } from './service.js';
import { CONSISTENCY_HEADER } from '../wallets/service.js';

export const HISTORY_FIELDS = ['id', 'type', 'direction', 'amount', 'currency', 'status', 'counterparty', 'note', 'walletId', 'createdAt'] as const;
const DateOrTime = Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}(T\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?(Z|[+-]\\d{2}:\\d{2}))?$', description: 'YYYY-MM-DD (whole day, UTC) or RFC 3339 time' });
const HistoryQuerySchema = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
    offset: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000 })),
    cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    fields: Type.Optional(Type.String({ pattern: `^(${HISTORY_FIELDS.join('|')})(,(${HISTORY_FIELDS.join('|')}))*$`, description: `comma-separated subset of ${HISTORY_FIELDS.join(', ')}` })),
    currency: Type.Optional(Currency),
    type: Type.Optional(Type.Union([Type.Literal('transfer'), Type.Literal('topup'), Type.Literal('payment'), Type.Literal('refund')])),
    status: Type.Optional(Type.Union([Type.Literal('completed'), Type.Literal('pending'), Type.Literal('voided')], { description: 'completed: the statement view' })),
    from: Type.Optional(DateOrTime),
    to: Type.Optional(DateOrTime),
  },
  { additionalProperties: false },
);
const Item = Type.Partial(
  Type.Object({
    id: Type.String(),
    type: Type.String(),
    direction: Type.Union([Type.Literal('debit'), Type.Literal('credit')]),
    amount: MoneyOut,
    currency: Type.String(),
    status: Type.Union([Type.Literal('pending'), Type.Literal('completed'), Type.Literal('voided')]),
    counterparty: Type.String(),
    note: Type.String(),
    walletId: Type.String(),
    createdAt: Timestamp,
  }),
);

function parseBound(value: string, end: boolean): Date {
  const dateOnly = value.length === 10;
  const d = new Date(dateOnly ? `${value}T00:00:00Z` : value);
  const year = d.getUTCFullYear();
  // 2024-02-30 must not become March 1st; PostgreSQL stores years 1-9999 only
  if (Number.isNaN(d.getTime()) || year < 1 || year > 9999 || (dateOnly && d.toISOString().slice(0, 10) !== value)) {
    throw new ProblemError('validation_failed', `querystring: "${value}" is not a date`);
  }
  // `to` as a date includes that whole day
  if (end && dateOnly) d.setUTCDate(d.getUTCDate() + 1);
  return d;
}

export function historyRoutes(p: Platform): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.addHook('onRequest', app.authenticate);
    app.get('/transactions', {
      schema: { tags: ['history'], summary: "The user's money movements, newest first", security: Bearer, querystring: HistoryQuerySchema, response: { 200: Type.Object({ transactions: Type.Array(Item), nextCursor: Type.Optional(Type.String()) }), ...problems(400, 401) } },
    }, async (req) => {
      const me = req.principal!;
      const q = req.query;
      if (q.cursor !== undefined && q.offset !== undefined) throw new ProblemError('validation_failed', 'querystring: use either offset or cursor, not both');
      const cursor = q.cursor !== undefined ? decodeCursor(q.cursor) : undefined;
      if (q.cursor !== undefined && !cursor) throw new ProblemError('validation_failed', 'querystring/cursor: not a cursor this API issued');
      const from = q.from ? parseBound(q.from, false) : undefined;
      const to = q.to ? parseBound(q.to, true) : undefined;
      const plain = !cursor && !q.offset && !q.currency && !q.type && !q.status && !from && !to;
      let page: { items: HistoryItem[]; nextCursor?: string };
      if (plain) {
        const recent = await loadRecent(p, me.userId, me.shard, { consistency: req.headers[CONSISTENCY_HEADER] });
        const items = recent.items.slice(0, q.limit);
        const more = recent.items.length > q.limit || recent.nextCursor !== undefined;
        page = more ? { items, nextCursor: encodeCursor(items[items.length - 1]!) } : { items };
      } else {
        page = await historyPage(historyReader(p, me.userId, me.shard, { consistency: req.headers[CONSISTENCY_HEADER] }).sql, { userId: me.userId, limit: q.limit, offset: q.offset, cursor, currency: q.currency, type: q.type, status: q.status, from, to, hotSince: hotSince(new Date(), p.config.partitionsHotDays) });
      }
      const fields = q.fields ? new Set(q.fields.split(',')) : undefined;
      const transactions = fields ? page.items.map((it) => Object.fromEntries(Object.entries(it).filter(([k]) => fields.has(k)))) : page.items;
      return page.nextCursor ? { transactions, nextCursor: page.nextCursor } : { transactions };
    });
  };
}
