import { CLEARING_USER, REFUSED_STATUS } from '../transfers/clearing.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, createTestPlatform, fund, idemKey, moneyPost, regionalTopology, signUp, type TestPlatform } from '../test-support/platform.js';
import { createPlatform } from '../platform.js';
import { loadConfig } from '../config/index.js';
import { createLogger } from '../observability/logger.js';
import { coreTasks, PURGE_BATCH, runMaintenanceRound } from './index.js';
import { listPartitions, partitionName } from '../db/partitions.js';

let t: TestPlatform;
beforeAll(async () => {
  // The first test moves the clock 14 months ahead and later ones write at today's date: a hot
  // period longer than that keeps today's months hot (the lifecycle: src/db/partitions.test.ts).
  t = await createTestPlatform({ PARTITIONS_AHEAD_MONTHS: '3', IDEMPOTENCY_TTL_HOURS: '24', PARTITIONS_HOT_DAYS: '1000', PARTITIONS_WARM_DAYS: '2000' });
});
afterAll(() => t?.close());

const month = (d: Date, offset: number) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + offset, 1));

describe('maintenance role', () => {
  it('keeps monthly history partitions created ahead as time passes', async () => {
    const future = month(new Date(), 14);
    await runMaintenanceRound(t.platform, coreTasks(t.platform), future);
    const parts = await listPartitions(t.platform.db.clusters[0]!.sql);
    for (let i = 0; i <= 3; i++) expect(parts).toContain(partitionName(month(future, i)));
  });

  it('accepts history rows in every partition it created (a row lands in its month)', async () => {
    const sql = t.platform.db.clusters[0]!.sql;
    const at = month(new Date(), 3);
    await sql`insert into transactions (id, user_id, shard, wallet_id, type, direction, amount, currency, status, created_at)
      values ('txn_probe', 'usr_probe', 1, 'wal_probe', 'transfer', 'debit', 1, 'USD', 'completed', ${at})`;
    const [row] = await sql`select tableoid::regclass::text as part from transactions where id = 'txn_probe'`;
    expect(row!.part).toBe(partitionName(at));
    await sql`delete from transactions where id = 'txn_probe'`;
  });

  it('purges idempotency keys only after their time to live', async () => {
    const [a, b] = [await signUp(t.app), await signUp(t.app)];
    await fund(t.app, a, 100);
    const key = idemKey();
    await moneyPost(t.app, a, '/v1/transfers', { to: b.id, amount: 1, currency: 'USD' }, key);
    const sql = t.platform.db.clusters[0]!.sql;
    const count = async () => Number((await sql`select count(*)::int as n from idempotency_keys where user_id = ${a.id} and key = ${key}`)[0]!.n);
    await runMaintenanceRound(t.platform, coreTasks(t.platform), new Date(Date.now() + 23 * 3_600_000));
    expect(await count()).toBe(1);
    await runMaintenanceRound(t.platform, coreTasks(t.platform), new Date(Date.now() + 25 * 3_600_000));
    expect(await count()).toBe(0);
  });

  it('purges more than one batch in a round: a table written faster than a batch a round still drains', async () => {
    const sql = t.platform.db.clusters[0]!.sql;
    const n = PURGE_BATCH * 2 + 500;
    await sql`insert into idempotency_keys (user_id, key, shard, request_hash, status_code, response, created_at)
      select 'usr_bulk', 'bulk-' || i, 1, 'h', 201, '{}', now() - interval '3 days' from generate_series(1, ${n}) i`;
    const report = await runMaintenanceRound(t.platform, coreTasks(t.platform));
    expect(report.main!['idempotency-purge']).toBeGreaterThanOrEqual(n);
    expect((await sql`select count(*)::int as n from idempotency_keys where user_id = 'usr_bulk'`)[0]!.n).toBe(0);
  });

  it("keeps a cross-cluster credit's refusal past the time to live, and purges its credits", async () => {
    const sql = t.platform.db.clusters[0]!.sql;
    await sql`insert into idempotency_keys (user_id, key, shard, request_hash, status_code, response) values
      (${CLEARING_USER}, 'clearing:txn_refused', 1, 'h', ${REFUSED_STATUS}, '{"outcome":"refused"}'),
      (${CLEARING_USER}, 'clearing:txn_credited', 1, 'h', 201, '{"outcome":"credited"}')`;
    await runMaintenanceRound(t.platform, coreTasks(t.platform), new Date(Date.now() + 365 * 24 * 3_600_000));
    const left = await sql<{ key: string }[]>`select key from idempotency_keys where user_id = ${CLEARING_USER} order by key`;
    expect(left.map((r) => r.key)).toEqual(['clearing:txn_refused']);
  });

  it('lets only one maintainer work a cluster at a time', async () => {
    const sql = t.platform.db.clusters[0]!.sql;
    const holder = await sql.reserve();
    try {
      await holder`select pg_advisory_lock(72616002)`;
      const report = await runMaintenanceRound(t.platform, coreTasks(t.platform));
      expect(report).toEqual({});
    } finally {
      await holder`select pg_advisory_unlock(72616002)`;
      holder.release();
    }
    expect(Object.keys(await runMaintenanceRound(t.platform, coreTasks(t.platform)))).toEqual(['main']);
  });

  it('goes on with the other clusters when one cannot be reached', async () => {
    const db = await createTestDatabase();
    // the first cluster's server is gone (nothing listens on port 1); the second is a real database
    const p = createPlatform(loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', SHARD_MAP_POLL_MS: '0', PARTITIONS_AHEAD_MONTHS: '3' }), { topology: regionalTopology(['postgres://postgres@127.0.0.1:1/gone', db.url]), log: createLogger('silent') });
    try {
      const report = await runMaintenanceRound(p, coreTasks(p));
      expect(Object.keys(report)).toEqual(['us-west']);
      expect(report['us-west']).toMatchObject({ partitions: expect.any(Number), 'idempotency-purge': 0 });
    } finally {
      await p.close().catch(() => undefined);
      await db.drop();
    }
  });
});
