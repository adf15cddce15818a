/** Payment methods: cards tokenized in the vault; only brand, last4 and expiry are kept in clear. */
import type { Platform } from '../platform.js';
import type { CardDetails } from '../network/index.js';
import { newId } from '../shared/ids.js';
import { brandOf, isExpired, luhnValid } from './cards.js';
import { cacheKey } from '../cache/index.js';
import { binCountryOf } from '../fraud/bins.js';

export interface PaymentMethod {
  id: string;
  type: 'card';
  brand: string;
  last4: string;
  expMonth: number;
  expYear: number;
  /** the issuing country from the card's BIN (ISO 3166-1 alpha-2), null when unknown; for fraud scoring */
  binCountry: string | null;
  createdAt: Date;
}

const fromRow = (r: Record<string, unknown>): PaymentMethod => ({
  id: r.id as string,
  type: 'card',
  brand: r.brand as string,
  last4: r.last4 as string,
  expMonth: r.exp_month as number,
  expYear: r.exp_year as number,
  binCountry: (r.bin_country as string | null) ?? null,
  createdAt: r.created_at as Date,
});

export type AddCardResult = { ok: true; value: PaymentMethod } | { ok: false; error: 'invalid_number' | 'expired' | 'too_many' };

export function createPaymentMethodService(p: Platform) {
  const sqlOf = (shard: number) => p.db.forShard(shard).sql;
  return {
    async addCard(userId: string, shard: number, card: { number: string; expMonth: number; expYear: number }): Promise<AddCardResult> {
      // The CVC is checked for shape by the schema and then dropped: it is never stored.
      if (!luhnValid(card.number)) return { ok: false, error: 'invalid_number' };
      if (isExpired(card.expMonth, card.expYear)) return { ok: false, error: 'expired' };
      const row = await sqlOf(shard).begin(async (tx) => {
        // the user's row orders their additions, so the count holds until this one commits (a
        // missing user leaves the insert to fail on its foreign key: 401, src/app.ts)
        await tx`select 1 from users where id = ${userId} for update`;
        const [held] = await tx<{ n: number }[]>`select count(*)::int as n from payment_methods where user_id = ${userId} and deleted_at is null`;
        if (held!.n >= p.config.paymentMethodsMax) return undefined;
        // in the same transaction: a refused card leaves nothing in the vault
        const token = await p.vault.tokenize(tx, shard, card.number);
        const [inserted] = await tx`
          insert into payment_methods (id, shard, user_id, type, vault_token, brand, last4, exp_month, exp_year, bin_country)
          values (${newId('pm', shard)}, ${shard}, ${userId}, 'card', ${token}, ${brandOf(card.number)}, ${card.number.slice(-4)}, ${card.expMonth}, ${card.expYear}, ${binCountryOf(card.number)})
          returning *`;
        return inserted!;
      });
      if (!row) return { ok: false, error: 'too_many' };
      await p.cache.invalidate([cacheKey.paymentMethods(userId)]);
      return { ok: true, value: fromRow(row) };
    },

    list(userId: string, shard: number): Promise<PaymentMethod[]> {
      return p.cache.get(cacheKey.paymentMethods(userId), async () => {
        const rows = await sqlOf(shard)`select * from payment_methods where user_id = ${userId} and deleted_at is null order by created_at, id`;
        return rows.map(fromRow);
      });
    },

    /** true when the method existed, was the user's, and is now removed */
    async remove(userId: string, shard: number, id: string): Promise<boolean> {
      const rows = await sqlOf(shard)`update payment_methods set deleted_at = now() where id = ${id} and user_id = ${userId} and deleted_at is null returning id`;
      if (rows.length) await p.cache.invalidate([cacheKey.paymentMethods(userId)]);
      return rows.length === 1;
    },

    async get(userId: string, shard: number, id: string): Promise<PaymentMethod | undefined> {
      const [row] = await sqlOf(shard)`select * from payment_methods where id = ${id} and user_id = ${userId} and deleted_at is null`;
      return row ? fromRow(row) : undefined;
    },

    /** the card in clear, for the payment-network adapter only; undefined if not the user's */
    async cardDetails(userId: string, shard: number, id: string): Promise<CardDetails | undefined> {
      const sql = sqlOf(shard);
      const [row] = await sql<{ vault_token: string; exp_month: number; exp_year: number }[]>`
        select vault_token, exp_month, exp_year from payment_methods where id = ${id} and user_id = ${userId} and deleted_at is null`;
      if (!row) return undefined;
      return { pan: await p.vault.reveal(sql, row.vault_token), expMonth: row.exp_month, expYear: row.exp_year };
    },
  };
}
export type PaymentMethodService = ReturnType<typeof createPaymentMethodService>;
