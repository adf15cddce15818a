/** Schemas shared by the routes: problems, money, ids, lists. Features keep their own schemas. */
import { Type, type TSchema } from '@sinclair/typebox';
import { CURRENCIES } from '../shared/currencies.js';

export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    code: Type.String({ description: 'stable machine-readable code (API.md)' }),
    errors: Type.Optional(Type.Array(Type.Object({ path: Type.String(), message: Type.String(), field: Type.Optional(Type.String()) }))),
  },
  { $id: 'Problem', additionalProperties: true, description: 'RFC 9457 problem details' },
);
export const ProblemRef = Type.Unsafe<Record<string, unknown>>(Type.Ref('Problem'));

/** error responses of a route, all RFC 9457 problems */
export function problems(...statuses: number[]): Record<number, TSchema> {
  return Object.fromEntries(statuses.map((s) => [s, ProblemRef]));
}

/** A money amount in a response: an exact integer of minor units (bigint inside). */
export const MoneyOut = Type.Unsafe<bigint>({ type: 'integer', format: 'int64', description: 'minor units (cents for USD)' });
/** A money amount in a request: a positive JSON integer; the per-movement maximum is checked after (422 limit_exceeded). */
export const AmountIn = Type.Integer({ minimum: 1, description: 'positive integer, minor units of the currency' });
export const Currency = Type.Unsafe<string>({ type: 'string', enum: [...CURRENCIES], description: 'ISO 4217 code, upper case' });
export const Timestamp = Type.Unsafe<Date>({ type: 'string', format: 'date-time' });
export const IdParam = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false });
export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({ description: 'required on money-moving POSTs, 1-255 characters. The answer carries Wallet-Consistency (wal_…=version) for the caller\'s wallets it changed; send it back on GET /v1/wallets for read-your-writes.' })),
});
export const Bearer = [{ bearer: [] }];
