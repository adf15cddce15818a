/**
 * The migrated schema, read from the catalog of a test database: what every migration must keep.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import postgres from 'postgres';
import { createTestDatabase } from '../test-support/platform.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let sql: postgres.Sql;
beforeAll(async () => {
  db = await createTestDatabase();
  sql = postgres(db.url, { max: 1, onnotice: () => undefined });
});
afterAll(async () => {
  await sql?.end({ timeout: 1 });
  await db?.drop();
});

/**
 * Foreign keys whose referencing columns no index leads, on purpose: payments and top-ups are
 * written on hot paths, and their users and wallets are deleted only by a shard move's cleanup
 * of its source (src/db/shard-move.ts), which pays a scan of these tables per deleted row.
 */
const UNINDEXED_ON_PURPOSE = ['payments.payments_merchant_wallet_id_fkey', 'payments.payments_payer_id_fkey', 'payments.payments_payer_wallet_id_fkey', 'topups.topups_user_id_fkey', 'topups.topups_wallet_id_fkey'];

describe('the schema', () => {
  it('has an index led by the columns of every foreign key, so that deleting a referenced row does not scan the referencing table', async () => {
    const rows = await sql<{ fk: string }[]>`
      select r.relname || '.' || c.conname as fk
      from pg_constraint c join pg_class r on r.oid = c.conrelid
      where c.contype = 'f' and not r.relispartition
        and not exists (
          select 1 from pg_index i
          where i.indrelid = c.conrelid
            and (i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
            and (i.indkey::int2[])[0:cardinality(c.conkey) - 1] <@ c.conkey)
      order by 1`;
    expect(rows.map((r) => r.fk)).toEqual(UNINDEXED_ON_PURPOSE);
  });
});
