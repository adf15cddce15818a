/** Numbered plain-SQL migrations, applied once each, under an advisory lock (several processes may start at once). */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Sql } from './index.js';
import { ensurePartitions } from './partitions.js';

const dir = fileURLToPath(new URL('./migrations/', import.meta.url));
const MIGRATION_LOCK = 72_616_001;

export async function migrate(sql: Sql, opts: { partitionsAheadMonths: number; now?: Date }): Promise<string[]> {
  const files = readdirSync(dir).filter((f) => /^\d{3}_.+\.sql$/.test(f)).sort();
  const applied: string[] = [];
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK})`;
    await tx`create table if not exists schema_migrations (name text primary key, applied_at timestamptz not null default now())`;
    const done = new Set((await tx<{ name: string }[]>`select name from schema_migrations`).map((r) => r.name));
    for (const f of files) {
      if (done.has(f)) continue;
      await tx.unsafe(readFileSync(dir + f, 'utf8'));
      await tx`insert into schema_migrations (name) values (${f})`;
      applied.push(f);
    }
  });
  // The current month and the next ones must exist before the first write.
  await ensurePartitions(sql, { aheadMonths: opts.partitionsAheadMonths, now: opts.now });
  return applied;
}
