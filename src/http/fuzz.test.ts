/**
 * Bad input anywhere: every operation of the OpenAPI document the server serves, fed random and
 * malformed path parameters, queries, bodies and headers by fast-check, answers either a success
 * or a problem (application/problem+json) with a documented code and its own status; never a
 * 5xx, never a stack trace or SQL. Bodies are mostly a valid request with one field broken, so
 * that the fuzzing reaches past validation into the services and the ledger. Afterwards the
 * books still reconcile: whatever the fuzzing moved, it moved whole.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import { createTestPlatform, fund, addCard, moneyPost, signUp, type TestPlatform, type TestUser } from '../test-support/platform.js';
import { TEST_CARDS } from '../network/index.js';
import { PROBLEMS } from './problem.js';
import { reconcile, formatReport } from '../ledger/reconcile.js';

/** requests per operation (about 35 operations); FUZZ_RUNS=1000 for a longer hunt */
const RUNS = Number(process.env.FUZZ_RUNS ?? 40);

let t: TestPlatform;
let users: TestUser[];
/** ids that exist (the callers' own and other users'), so that fuzzed values reach past "not found" */
let realIds: string[];
let cardIds: string[];
let operations: { method: string; path: string; bodyFields: string[]; queryNames: string[] }[];
const answers = new Map<string, number>();

beforeAll(async () => {
  t = await createTestPlatform();
  const [alice, bob, shop] = [await signUp(t.app), await signUp(t.app), await signUp(t.app, { kind: 'merchant' })];
  users = [alice, bob, shop];
  await fund(t.app, alice, 500_000);
  await fund(t.app, bob, 500_000);
  cardIds = [await addCard(t.app, alice), await addCard(t.app, bob), await addCard(t.app, shop)];
  const transfer = (await moneyPost(t.app, alice, '/v1/transfers', { to: bob.id, amount: 100, currency: 'USD' })).json();
  const payments = await Promise.all(Array.from({ length: 6 }, async (_, i) => (await moneyPost(t.app, i % 2 ? bob : alice, '/v1/payments', { merchantId: shop.id, amount: 5_000, currency: 'USD', capture: i % 3 === 0 })).json().id as string));
  const wallets = await Promise.all(users.map(async (u) => (await t.app.inject({ method: 'GET', url: '/v1/wallets', headers: u.auth })).json().wallets[0].id as string));
  // the cards the bodies name stay out of the path values: DELETE /v1/payment-methods/{id} would remove them
  const spareCard = await addCard(t.app, alice);
  realIds = [...users.map((u) => u.id), ...wallets, spareCard, transfer.id, ...payments];
  expect(realIds.every((id) => typeof id === 'string' && id.length > 0)).toBe(true);

  const doc = (await t.app.inject({ method: 'GET', url: '/docs/json' })).json() as {
    paths: Record<string, Record<string, { parameters?: { in: string; name: string }[]; requestBody?: { content?: Record<string, { schema?: { properties?: Record<string, unknown> } }> } }>>;
  };
  operations = Object.entries(doc.paths).flatMap(([path, ops]) =>
    Object.entries(ops).map(([method, op]) => ({
      method: method.toUpperCase(),
      path,
      bodyFields: Object.keys(op.requestBody?.content?.['application/json']?.schema?.properties ?? {}),
      queryNames: (op.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name),
    })),
  );
});
afterAll(() => t?.close());

const oddStrings = fc.constantFrom('', ' ', '0', '-1', '1.5', '1e21', 'null', 'true', '[]', '{}', 'USD', 'usd', 'XXX', 'usr_', 'wal_0000', '../../etc/passwd', "'; drop table accounts; --", '\u0000', 'a\u0000b', '\ud800', '😀', '\u202e', 'a'.repeat(5_000));
const oddNumbers = fc.constantFrom(0, -1, 1, 1.5, -0.0001, 2 ** 31, 2 ** 53, 2 ** 63, 1e21, Number.MAX_SAFE_INTEGER, 100_000_000, 100_000_001);
/** a real id with one character changed: well-formed, but naming nothing (or another shard) */
const nearId = () => fc.constantFrom(...realIds).chain((id) => fc.nat(id.length - 1).map((i) => id.slice(0, i) + (id[i] === 'A' ? 'B' : 'A') + id.slice(i + 1)));
/** a value for any field: real ids, edge values, wrong types, random JSON */
const anyValue = (): fc.Arbitrary<unknown> =>
  fc.oneof(fc.constantFrom(...realIds), nearId(), oddStrings, oddNumbers, fc.integer(), fc.boolean(), fc.constant(null), fc.string({ maxLength: 40 }), fc.jsonValue({ maxDepth: 2 }));
/** a path segment as sent: encoded values, and raw malformed escapes (invalid UTF-8, a bare %) */
const pathValue = (): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...realIds) },
    // lone surrogates become U+FFFD: they cannot be percent-encoded
    { weight: 2, arbitrary: fc.oneof(nearId(), oddStrings, fc.string({ minLength: 1, maxLength: 40 }), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 10 })).map((v) => encodeURIComponent(Buffer.from(v).toString())) },
    { weight: 1, arbitrary: fc.constantFrom('%ED%A0%80', '%', '%zz', '%00', '%2F..%2F', '%C0%AF') },
  );

const amount = () => fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 3_000 }) }, { weight: 1, arbitrary: oddNumbers });
const currency = () => fc.oneof({ weight: 6, arbitrary: fc.constant('USD') }, { weight: 1, arbitrary: fc.constantFrom('EUR', 'JPY', 'KWD', 'usd', 'US') });
/** requests that are valid, or nearly: fast-check then breaks one field of them */
const VALID: Record<string, () => fc.Arbitrary<Record<string, unknown>>> = {
  'POST /v1/users': () => fc.record({ email: fc.emailAddress(), password: fc.string({ minLength: 8, maxLength: 80 }), name: fc.string({ minLength: 1, maxLength: 60 }), kind: fc.constantFrom('person', 'merchant'), region: fc.constantFrom('us-east', 'eu-west', 'mars'), currency: currency() }, { requiredKeys: ['email', 'password', 'name'] }),
  'POST /v1/auth/token': () => fc.record({ email: fc.constantFrom(...users.map((u) => u.email)), password: fc.constantFrom('correct horse battery staple', 'wrong') }),
  'PATCH /v1/me': () => fc.record({ name: fc.string({ minLength: 1, maxLength: 60 }), region: fc.constantFrom('us-east', 'eu-west', 'mars') }, { requiredKeys: [] }),
  'POST /v1/wallets': () => fc.record({ currency: currency() }),
  'POST /v1/payment-methods': () => fc.record({ type: fc.constant('card'), number: fc.constantFrom(TEST_CARDS.visa, '4000000000000002', '4242424242424241', '42424242424242424242'), expMonth: fc.integer({ min: 0, max: 13 }), expYear: fc.integer({ min: 2020, max: 2045 }), cvc: fc.constantFrom('123', '12', '1234', 'abc') }),
  'POST /v1/topups': () => fc.record({ paymentMethodId: fc.constantFrom(...cardIds), amount: amount(), currency: currency() }),
  'POST /v1/transfers': () => fc.record({ to: fc.constantFrom(...users.map((u) => u.id)), amount: amount(), currency: currency(), note: fc.string({ maxLength: 300 }) }, { requiredKeys: ['to', 'amount', 'currency'] }),
  'POST /v1/payments': () => fc.record({ merchantId: fc.oneof({ weight: 4, arbitrary: fc.constant(users[2]!.id) }, { weight: 1, arbitrary: fc.constantFrom(...users.map((u) => u.id)) }), amount: amount(), currency: currency(), capture: fc.boolean(), paymentMethodId: fc.constantFrom(...cardIds) }, { requiredKeys: ['merchantId', 'amount', 'currency'] }),
  'POST /v1/payments/{id}/capture': () => fc.record({ amount: amount() }, { requiredKeys: [] }),
  'POST /v1/payments/{id}/refunds': () => fc.record({ amount: amount() }, { requiredKeys: [] }),
  'PATCH /v1/me/notification-preferences': () => fc.record({ email: fc.boolean(), push: fc.boolean(), mutedEventTypes: fc.array(fc.constantFrom('transfer.completed', 'payment.captured', 'nonsense'), { maxLength: 3 }) }, { requiredKeys: [] }),
  'POST /v1/webhooks': () => fc.record({ url: fc.constantFrom('https://example.com/hooks', 'http://127.0.0.1:9/x', 'ftp://example.com', 'not a url'), eventTypes: fc.array(fc.constantFrom('transfer.completed', 'payment.captured', '*', 'nonsense'), { maxLength: 3 }), description: fc.string({ maxLength: 300 }) }, { requiredKeys: ['url'] }),
};

function bodyFor(op: { method: string; path: string; bodyFields: string[] }): fc.Arbitrary<unknown> {
  const valid = VALID[`${op.method} ${op.path}`]?.() ?? fc.record(Object.fromEntries(op.bodyFields.map((f) => [f, anyValue()])), { requiredKeys: [] });
  const broken = valid.chain((v) => {
    const keys = Object.keys(v);
    const key = keys.length ? fc.oneof(fc.constantFrom(...keys), fc.string({ maxLength: 12 })) : fc.string({ maxLength: 12 });
    return fc.tuple(key, anyValue()).map(([k, x]) => ({ ...v, [k]: x }));
  });
  return fc.oneof(
    { weight: 3, arbitrary: valid },
    { weight: 4, arbitrary: broken },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
    { weight: 1, arbitrary: fc.constant(undefined) },
  );
}

function assertAnswered(res: LightMyRequestResponse, what: string): void {
  const where = `${what} → ${res.statusCode} ${res.body.slice(0, 400)}`;
  expect(res.statusCode, where).toBeLessThan(500);
  if (res.statusCode < 400) return;
  expect(res.headers['content-type'], where).toContain('application/problem+json');
  const body = res.json() as { code?: string; status?: number; detail?: unknown };
  expect(Object.keys(PROBLEMS), where).toContain(body.code);
  expect(body.status, where).toBe(res.statusCode);
  expect(res.body, where).not.toMatch(/\n\s+at |node_modules|\.ts:\d|syntax error|\bselect\b.*\bfrom\b|\binsert into\b/i);
}

describe('every operation under random input', () => {
  it('answers a success or a documented problem, never a 5xx or internals', async () => {
    expect(operations.length).toBeGreaterThan(30);
    for (const op of operations) {
      const params = [...op.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
      const raw = fc.oneof({ weight: 8, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.oneof(fc.string({ maxLength: 60 }), fc.constantFrom('{', '{"amount": 1', '[', 'null', '{"a":1}{"b":2}', '{"__proto__":{"x":1}}', '{"note":"\\u0000"}')) });
      // every part is usually valid, so that a broken one is what the answer is about
      const query = fc.oneof(
        { weight: 4, arbitrary: fc.constant({}) },
        { weight: 1, arbitrary: fc.dictionary(fc.oneof(fc.constantFrom(...op.queryNames, 'limit', 'fields', 'cursor'), fc.string({ maxLength: 8 })), fc.oneof(oddStrings, fc.integer().map(String), fc.string({ maxLength: 20 })), { maxKeys: 4 }) },
      );
      const headers = fc.record(
        {
          authorization: fc.oneof(
            { weight: 8, arbitrary: fc.constantFrom(...users.map((u) => u.auth.authorization)) },
            { weight: 1, arbitrary: fc.constantFrom('Bearer', 'Bearer x.y.z', 'Basic YTpi', `Bearer ${users[0]!.token}x`, `bearer ${users[1]!.token}`) },
          ),
          'idempotency-key': fc.oneof({ weight: 6, arbitrary: fc.uuid() }, { weight: 1, arbitrary: fc.constantFrom('fuzz-shared-key') }, { weight: 1, arbitrary: fc.string({ maxLength: 300 }) }),
          'content-type': fc.oneof({ weight: 8, arbitrary: fc.constantFrom('application/json', 'application/json; charset=utf-8') }, { weight: 1, arbitrary: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1') }),
          'wallet-consistency': fc.string({ maxLength: 20 }),
        },
        { requiredKeys: ['authorization', 'idempotency-key', 'content-type'] },
      ).chain((h) => fc.tuple(fc.constant(h), fc.nat(9)).map(([x, n]) => (n === 0 ? Object.fromEntries(Object.entries(x).filter(([k]) => k !== ['authorization', 'idempotency-key', 'content-type'][n % 3])) : n === 1 ? x : (({ ['wallet-consistency']: _, ...rest }) => rest)(x))));
      await fc.assert(
        fc.asyncProperty(fc.tuple(...params.map(() => pathValue())), query, bodyFor(op), raw, headers, async (values, q, b, r, h) => {
          let url = op.path;
          params.forEach((name, i) => (url = url.replace(`{${name}}`, values[i]!)));
          const qs = new URLSearchParams(q as Record<string, string>).toString();
          if (qs) url += `?${qs}`;
          const withBody = op.method !== 'GET' && op.method !== 'DELETE';
          const payload = withBody ? (r ?? (b === undefined ? undefined : JSON.stringify(b))) : undefined;
          const sent = { ...h } as Record<string, string>;
          if (payload === undefined) delete sent['content-type'];
          const res = await t.app.inject({ method: op.method as 'GET', url, headers: sent, ...(payload !== undefined ? { payload } : {}) });
          const outcome = `${op.method} ${op.path} ${res.statusCode}`;
          answers.set(outcome, (answers.get(outcome) ?? 0) + 1);
          assertAnswered(res, `${op.method} ${url} ${JSON.stringify(sent).slice(0, 200)} ${String(payload).slice(0, 300)}`);
        }),
        // the money operations get more runs: the ledger is where a half-written request would hurt
        { numRuns: /^POST \/v1\/(transfers|payments|topups)$/.test(`${op.method} ${op.path}`) ? RUNS * 8 : RUNS },
      );
    }
    // the fuzzing got past validation: money moved, and was refused for business reasons
    const count = (prefix: string) => [...answers].filter(([k]) => k.startsWith(prefix)).reduce((n, [, c]) => n + c, 0);
    expect(count('POST /v1/transfers 201'), JSON.stringify([...answers])).toBeGreaterThan(0);
    expect(count('POST /v1/payments 201'), JSON.stringify([...answers])).toBeGreaterThan(0);
    expect(count('POST /v1/topups 201'), JSON.stringify([...answers])).toBeGreaterThan(0);
  }, 60_000 + RUNS * 100);

  it('leaves books that reconcile', async () => {
    const report = await reconcile(t.platform.db);
    expect(report.ok, formatReport(report)).toBe(true);
  });
});
