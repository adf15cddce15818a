import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addCard, createTestPlatform, moneyPost, signUp, type TestPlatform, type TestUser } from '../test-support/platform.js';

/** What the user saw when a movement was made: the truth the history must reproduce. */
interface Movement {
  id: string;
  type: 'transfer' | 'topup';
  from?: string;
  to: string;
  amount: number;
  currency: string;
  createdAt: string;
}
interface Item {
  id: string;
  type: string;
  direction: 'debit' | 'credit';
  amount: number;
  currency: string;
  status: string;
  counterparty?: string;
  createdAt: string;
  [k: string]: unknown;
}

let t: TestPlatform;
let alice: TestUser;
let bob: TestUser;
let carol: TestUser;
const movements: Movement[] = [];
const SMALL_TRANSFERS = 20;

async function topUp(user: TestUser, amount: number, currency = 'USD'): Promise<void> {
  const pm = await addCard(t.app, user);
  const res = await moneyPost(t.app, user, '/v1/topups', { paymentMethodId: pm, amount, currency });
  expect(res.statusCode, res.body).toBe(201);
  expect(res.json().status).toBe('completed');
  movements.push({ id: res.json().id, type: 'topup', to: user.id, amount, currency, createdAt: res.json().createdAt });
}

async function send(from: TestUser, to: TestUser, amount: number, currency = 'USD'): Promise<void> {
  const res = await moneyPost(t.app, from, '/v1/transfers', { to: to.id, amount, currency });
  expect(res.statusCode, res.body).toBe(201);
  movements.push({ id: res.json().id, type: 'transfer', from: from.id, to: to.id, amount, currency, createdAt: res.json().createdAt });
}

const history = (user: TestUser, query = '') => t.app.inject({ method: 'GET', url: `/v1/transactions${query ? `?${query}` : ''}`, headers: user.auth });
async function items(user: TestUser, query = ''): Promise<Item[]> {
  const res = await history(user, query);
  expect(res.statusCode, res.body).toBe(200);
  return res.json().transactions;
}
/** every item, in one page (the fixtures stay under the maximum limit of 100) */
const all = (user: TestUser, query = '') => items(user, `limit=100${query ? `&${query}` : ''}`);
const ids = (list: { id: string }[]) => list.map((x) => x.id);

/** The movements a user took part in, as the history should list them: newest first, ties by id. */
function expectedFor(user: TestUser, keep: (m: Movement) => boolean = () => true): Movement[] {
  return movements
    .filter((m) => (m.from === user.id || m.to === user.id) && keep(m))
    .sort((a, b) => b.createdAt.localeCompare(a.createdAt) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
}

/** Follows nextCursor from the first page (or the page at `from`) to the last; returns the pages. */
async function walk(user: TestUser, query: string, from?: string): Promise<{ transactions: Item[]; nextCursor?: string }[]> {
  const pages = [];
  let cursor = from;
  do {
    const res = await history(user, `${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    expect(res.statusCode, res.body).toBe(200);
    pages.push(res.json());
    cursor = res.json().nextCursor;
    expect(pages.length).toBeLessThan(100);
  } while (cursor);
  return pages;
}

const expectBadRequest = async (user: TestUser, query: string) => {
  const res = await history(user, query);
  expect(res.statusCode, query).toBe(400);
  expect(res.headers['content-type']).toContain('application/problem+json');
  expect(res.json()).toMatchObject({ code: 'validation_failed', status: 400 });
};

beforeAll(async () => {
  t = await createTestPlatform();
  [alice, bob, carol] = await Promise.all([signUp(t.app), signUp(t.app), signUp(t.app)]);
  for (const u of [alice, bob]) {
    const res = await t.app.inject({ method: 'POST', url: '/v1/wallets', headers: u.auth, payload: { currency: 'EUR' } });
    expect(res.statusCode).toBe(201);
  }
  await topUp(alice, 50_000);
  await topUp(bob, 5_000);
  await topUp(alice, 20_000, 'EUR');
  await topUp(carol, 999);
  await send(alice, bob, 1_000);
  await send(bob, alice, 300);
  await send(alice, bob, 700, 'EUR');
  await send(carol, bob, 111);
  for (let i = 1; i <= SMALL_TRANSFERS; i++) await send(alice, bob, i);
});
afterAll(() => t?.close());

describe('GET /v1/transactions', () => {
  it('lists every movement exactly once for each side, newest first, with direction and counterparty', async () => {
    for (const user of [alice, bob, carol]) {
      const list = await all(user);
      const expected = expectedFor(user);
      expect(ids(list)).toEqual(ids(expected));
      expect(new Set(ids(list)).size).toBe(list.length);
      for (const [i, m] of expected.entries()) {
        const outgoing = m.from === user.id;
        expect(list[i]).toMatchObject({
          id: m.id,
          type: m.type,
          direction: outgoing ? 'debit' : 'credit',
          amount: m.amount,
          currency: m.currency,
          status: 'completed',
          createdAt: m.createdAt,
        });
        if (m.type === 'transfer') expect(list[i]!.counterparty).toBe(outgoing ? m.to : m.from);
        else expect(list[i]).not.toHaveProperty('counterparty');
      }
    }
  });

  it('is newest first: createdAt never increases down the list', async () => {
    const list = await all(alice);
    for (let i = 1; i < list.length; i++) expect(Date.parse(list[i - 1]!.createdAt)).toBeGreaterThanOrEqual(Date.parse(list[i]!.createdAt));
    expect(list[0]!.amount).toBe(SMALL_TRANSFERS);
  });

  it('records a transfer under the transfer id for both the sender and the recipient', async () => {
    const transfer = movements.find((m) => m.type === 'transfer' && m.from === bob.id)!;
    const [mine] = (await all(bob)).filter((x) => x.id === transfer.id);
    const [theirs] = (await all(alice)).filter((x) => x.id === transfer.id);
    expect(mine).toMatchObject({ direction: 'debit', counterparty: alice.id, amount: 300 });
    expect(theirs).toMatchObject({ direction: 'credit', counterparty: bob.id, amount: 300 });
    const read = await t.app.inject({ method: 'GET', url: `/v1/transfers/${transfer.id}`, headers: alice.auth });
    expect(read.json()).toMatchObject({ id: transfer.id, from: bob.id, to: alice.id });
  });

  it('never shows a user the rows of another user', async () => {
    const carols = new Set(ids(expectedFor(carol)));
    const alices = await all(alice);
    expect(alices.some((x) => carols.has(x.id))).toBe(false);
    const carolsList = await all(carol);
    expect(ids(carolsList)).toEqual(ids(expectedFor(carol)));
    expect(carolsList.every((x) => x.counterparty === undefined || x.counterparty === bob.id)).toBe(true);
    // a cursor taken from someone else's history positions the walk; it does not widen it
    const bobsCursor = (await history(bob, 'limit=1')).json().nextCursor;
    const viaBobsCursor = await items(carol, `limit=100&cursor=${encodeURIComponent(bobsCursor)}`);
    expect(viaBobsCursor.every((x) => carols.has(x.id))).toBe(true);
  });

  describe('pages', () => {
    it('answers 20 items by default, with a nextCursor when more exist', async () => {
      const res = await history(alice);
      expect(res.statusCode).toBe(200);
      expect(res.json().transactions).toHaveLength(20);
      expect(expectedFor(alice).length).toBeGreaterThan(20);
      expect(typeof res.json().nextCursor).toBe('string');
    });

    it('rejects a limit outside 1-100 (or not an integer) with 400 validation_failed', async () => {
      for (const q of ['limit=1000', 'limit=101', 'limit=0', 'limit=-1', 'limit=1.5', 'limit=ten']) await expectBadRequest(alice, q);
      expect(await items(alice, 'limit=100')).toHaveLength(expectedFor(alice).length);
    });

    it('walks every item with a keyset cursor: no duplicates, no gaps, no nextCursor on the last page', async () => {
      const expected = ids(expectedFor(alice));
      for (const limit of [3, 5, 1]) {
        const pages = await walk(alice, `limit=${limit}`);
        const walked = pages.flatMap((p) => ids(p.transactions));
        expect(walked, `limit=${limit}`).toEqual(expected);
        expect(pages.length).toBe(Math.ceil(expected.length / limit));
        expect(pages.at(-1)).not.toHaveProperty('nextCursor');
        for (const p of pages.slice(0, -1)) expect(p.transactions).toHaveLength(limit);
      }
    });

    it('keeps a keyset walk in place when new movements arrive between pages', async () => {
      const [dave, erin] = await Promise.all([signUp(t.app), signUp(t.app)]);
      await topUp(dave, 1_000);
      for (let i = 1; i <= 4; i++) await send(dave, erin, i);
      const before = ids(expectedFor(dave));
      const first = (await history(dave, 'limit=2')).json();
      await send(dave, erin, 99); // newest: would shift an offset page, not a cursor page
      const rest = (await walk(dave, 'limit=2', first.nextCursor)).flatMap((p) => ids(p.transactions));
      expect([...ids(first.transactions), ...rest]).toEqual(before);
    });

    it('pages with offset too, and answers nextCursor only while more rows exist', async () => {
      const expected = ids(expectedFor(alice));
      const paged: string[] = [];
      for (let offset = 0; offset < expected.length; offset += 10) {
        const res = await history(alice, `limit=10&offset=${offset}`);
        expect(res.statusCode).toBe(200);
        paged.push(...ids(res.json().transactions));
        expect(res.json().nextCursor !== undefined).toBe(offset + 10 < expected.length);
      }
      expect(paged).toEqual(expected);
      expect(await items(alice, `offset=${expected.length}`)).toEqual([]);
    });

    it('rejects cursor and offset together with 400', async () => {
      const cursor = (await history(alice, 'limit=2')).json().nextCursor;
      await expectBadRequest(alice, `offset=2&cursor=${encodeURIComponent(cursor)}`);
    });

    it('rejects a cursor it did not issue with 400', async () => {
      const notOurs = [
        'garbage',
        Buffer.from('not a date|txn_1').toString('base64url'),
        Buffer.from('2024-01-01T00:00:00.000Z').toString('base64url'),
        Buffer.from(`2024-01-01T00:00:00.000Z|${'x'.repeat(65)}`).toString('base64url'),
        Buffer.from('+275760-09-13T00:00:00.000Z|txn_0011KZ8X3M7QH4Z2N9V0C6R5T8W').toString('base64url'),
        Buffer.from('-000001-01-01T00:00:00.000Z|txn_0011KZ8X3M7QH4Z2N9V0C6R5T8W').toString('base64url'),
        'x'.repeat(201),
      ];
      for (const c of notOurs) await expectBadRequest(alice, `cursor=${encodeURIComponent(c)}`);
      await expectBadRequest(alice, 'offset=-1');
    });
  });

  describe('fields', () => {
    it('returns only the fields named', async () => {
      const list = await items(alice, 'fields=id,amount&limit=100');
      expect(list).toHaveLength(expectedFor(alice).length);
      for (const x of list) expect(Object.keys(x).sort()).toEqual(['amount', 'id']);
      expect(list.map((x) => ({ id: x.id, amount: x.amount }))).toEqual(expectedFor(alice).map((m) => ({ id: m.id, amount: m.amount })));
    });

    it('keeps paging with fields that leave out the keyset columns', async () => {
      const pages = await walk(alice, 'limit=7&fields=amount');
      expect(pages.flatMap((p) => p.transactions.map((x) => x.amount))).toEqual(expectedFor(alice).map((m) => m.amount));
    });

    it('rejects an unknown field name with 400', async () => {
      for (const q of ['fields=id,secret', 'fields=', 'fields=id,,amount', 'fields=password_hash']) await expectBadRequest(alice, q);
    });
  });

  describe('filters', () => {
    it('filters by currency', async () => {
      const eur = await all(alice, 'currency=EUR');
      expect(ids(eur)).toEqual(ids(expectedFor(alice, (m) => m.currency === 'EUR')));
      expect(eur).toHaveLength(2);
      expect(ids(await all(alice, 'currency=USD'))).toEqual(ids(expectedFor(alice, (m) => m.currency === 'USD')));
      expect(await all(alice, 'currency=JPY')).toEqual([]);
      await expectBadRequest(alice, 'currency=usd');
      await expectBadRequest(alice, 'currency=XXX');
    });

    it('filters by type', async () => {
      expect(ids(await all(alice, 'type=topup'))).toEqual(ids(expectedFor(alice, (m) => m.type === 'topup')));
      expect(ids(await all(alice, 'type=transfer'))).toEqual(ids(expectedFor(alice, (m) => m.type === 'transfer')));
      expect(await all(alice, 'type=refund')).toEqual([]);
      await expectBadRequest(alice, 'type=withdrawal');
    });

    it('combines filters, and pages through a filtered list', async () => {
      const expected = ids(expectedFor(alice, (m) => m.type === 'transfer' && m.currency === 'USD'));
      expect(ids(await all(alice, 'type=transfer&currency=USD'))).toEqual(expected);
      expect((await walk(alice, 'type=transfer&currency=USD&limit=4')).flatMap((p) => ids(p.transactions))).toEqual(expected);
    });

    it('filters by date: a date-only `to` includes that whole day, `from` starts at its first moment', async () => {
      const expected = expectedFor(alice);
      const newest = expected[0]!.createdAt;
      const oldest = expected.at(-1)!.createdAt;
      const day = (iso: string, delta = 0) => new Date(Date.parse(`${iso.slice(0, 10)}T00:00:00Z`) + delta * 86_400_000).toISOString().slice(0, 10);
      expect(ids(await all(alice, `from=${day(oldest)}&to=${day(newest)}`))).toEqual(ids(expected));
      expect(ids(await all(alice, `to=${day(newest)}`))).toEqual(ids(expected));
      expect(ids(await all(alice, `from=${day(oldest)}`))).toEqual(ids(expected));
      expect(await all(alice, `to=${day(oldest, -1)}`)).toEqual([]);
      expect(await all(alice, `from=${day(newest, 1)}`)).toEqual([]);
    });

    it('filters from an RFC 3339 time, inclusive', async () => {
      const expected = expectedFor(alice);
      const pivot = expected[5]!;
      const got = await all(alice, `from=${encodeURIComponent(pivot.createdAt)}`);
      expect(ids(got)).toEqual(ids(expected.filter((m) => m.createdAt >= pivot.createdAt)));
      expect(ids(got)).toContain(pivot.id);
    });

    it('rejects dates that are not dates with 400', async () => {
      for (const q of ['from=yesterday', 'to=2024-13-01', 'from=2024-01-01T25:00:00Z', 'to=01/02/2024', 'from=0000-01-01', 'from=2024-02-30']) await expectBadRequest(alice, q);
    });
  });

  it('requires a bearer token', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/v1/transactions' });
    expect(res.statusCode).toBe(401);
  });
});
