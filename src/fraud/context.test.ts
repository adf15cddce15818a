/**
 * The user's fraud context from a real PostgreSQL: account age, credential changes (password,
 * cards added or removed) and each card's BIN country, stored at tokenization through the API.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addCard, createTestPlatform, signUp, type TestPlatform } from '../test-support/platform.js';
import { TEST_CARDS } from '../network/index.js';
import { newId } from '../shared/ids.js';
import { binCountryOf } from './bins.js';
import { createContextLoader } from './context.js';

const GB_CARD = '4000008260000000';
const UNKNOWN_BIN_CARD = '6011111111111117';

let t: TestPlatform;
beforeAll(async () => {
  t = await createTestPlatform();
});
afterAll(() => t?.close());

const sql = () => t.platform.db.clusters[0]!.sql;

describe('BIN countries', () => {
  it('maps the test cards and documented ranges, longest prefix first', () => {
    expect(binCountryOf(TEST_CARDS.visa)).toBe('US');
    expect(binCountryOf(TEST_CARDS.mastercard)).toBe('US');
    expect(binCountryOf(TEST_CARDS.declined)).toBe('US');
    expect(binCountryOf(GB_CARD)).toBe('GB');
    expect(binCountryOf('4000002760000016')).toBe('DE');
    expect(binCountryOf(UNKNOWN_BIN_CARD)).toBeNull();
  });

  it("keeps only the card's BIN country at tokenization, null when the BIN is unknown", async () => {
    const u = await signUp(t.app);
    const ids = [await addCard(t.app, u, TEST_CARDS.visa), await addCard(t.app, u, GB_CARD), await addCard(t.app, u, UNKNOWN_BIN_CARD)];
    const rows = await sql()<{ id: string; bin_country: string | null }[]>`select id, bin_country from payment_methods where id in ${sql()(ids)}`;
    expect(Object.fromEntries(rows.map((r) => [r.id, r.bin_country]))).toEqual({ [ids[0]!]: 'US', [ids[1]!]: 'GB', [ids[2]!]: null });
  });
});

describe('the context loader', () => {
  it('knows the account age and that a new account has had no credential change', async () => {
    const u = await signUp(t.app);
    const ctx = await createContextLoader({ db: t.platform.db }).load(u.id);
    expect(Math.abs(ctx.createdAtMs - Date.now())).toBeLessThan(60_000);
    expect(ctx.credentialChangedAtMs).toBeNull();
    expect(ctx.cardCountries.size).toBe(0);
  });

  it('sees a card added, a password changed and a card removed as credential changes', async () => {
    const u = await signUp(t.app);
    const loader = createContextLoader({ db: t.platform.db });
    const pm = await addCard(t.app, u, GB_CARD);
    const [card] = await sql()<{ created_at: Date }[]>`select created_at from payment_methods where id = ${pm}`;
    const added = await loader.load(u.id, pm);
    expect(added.credentialChangedAtMs).toBe(card!.created_at.getTime());
    expect(added.cardCountries.get(pm)).toBe('GB');

    const [user] = await sql()<{ at: Date }[]>`update users set credentials_changed_at = now() + interval '1 minute' where id = ${u.id} returning credentials_changed_at as at`;
    loader.invalidate(u.id);
    expect((await loader.load(u.id)).credentialChangedAtMs).toBe(user!.at.getTime());

    await sql()`update users set credentials_changed_at = created_at where id = ${u.id}`;
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/payment-methods/${pm}`, headers: u.auth })).statusCode).toBe(204);
    loader.invalidate(u.id);
    const removed = await loader.load(u.id);
    const [gone] = await sql()<{ deleted_at: Date }[]>`select deleted_at from payment_methods where id = ${pm}`;
    expect(removed.credentialChangedAtMs).toBe(gone!.deleted_at.getTime());
    expect(removed.cardCountries.get(pm)).toBe('GB'); // removed cards keep their country
  });

  it('serves from its cache, and reloads at once for a card it does not know (one just added)', async () => {
    const u = await signUp(t.app);
    const first = await addCard(t.app, u);
    const cached = createContextLoader({ db: t.platform.db, unknownCardReloadMs: 0 });
    const a = await cached.load(u.id, first);
    const [b, c] = await Promise.all([cached.load(u.id, first), cached.load(u.id)]);
    expect(b).toBe(a);
    expect(c).toBe(a);
    const second = await addCard(t.app, u, GB_CARD);
    const reloaded = await cached.load(u.id, second);
    expect(reloaded).not.toBe(a);
    expect(reloaded.cardCountries.get(second)).toBe('GB');
    // rate-limited: unknown card ids within the interval are answered from the cache
    const limited = createContextLoader({ db: t.platform.db, unknownCardReloadMs: 60_000 });
    const d = await limited.load(u.id);
    expect(await limited.load(u.id, 'pm_not_a_card')).toBe(d);
  });

  it('loads the users missed in one tick with one query, refusing only the unknown one', async () => {
    const users = await Promise.all([signUp(t.app), signUp(t.app), signUp(t.app)]);
    await addCard(t.app, users[1]!, GB_CARD);
    let statements = 0;
    const real = sql();
    const counted = new Proxy(real, { apply: (target, self, args) => (statements++, Reflect.apply(target, self, args)) });
    const loader = createContextLoader({ db: { forShard: () => ({ ...t.platform.db.forShard(0), sql: counted }) } });
    const unknown = newId('usr', 7);
    const got = await Promise.allSettled([...users.map((u) => loader.load(u.id)), loader.load(unknown)]);
    expect(statements).toBe(1);
    expect(got.slice(0, 3).map((g) => g.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
    expect(got.slice(0, 3).map((g) => (g.status === 'fulfilled' ? g.value.cardCountries.size : -1))).toEqual([0, 1, 0]);
    expect(got[3]).toMatchObject({ status: 'rejected', reason: expect.objectContaining({ message: expect.stringMatching(/no user/) }) });
  });

  it('answers an entry past refreshAfterMs from the cache and reloads it in the background', async () => {
    const u = await signUp(t.app);
    const loader = createContextLoader({ db: t.platform.db, ttlMs: 60_000, refreshAfterMs: 0 });
    const first = await loader.load(u.id);
    const [user] = await sql()<{ at: Date }[]>`update users set credentials_changed_at = now() + interval '1 minute' where id = ${u.id} returning credentials_changed_at as at`;
    expect(await loader.load(u.id)).toBe(first); // answered at once, the reload started
    await expect.poll(async () => (await loader.load(u.id)).credentialChangedAtMs).toBe(user!.at.getTime());
  });

  it('refuses an unknown user', async () => {
    await expect(createContextLoader({ db: t.platform.db }).load(newId('usr', 7))).rejects.toThrow(/no user/);
  });
});
