/**
 * Monthly partitions of `transactions`. The maintenance role keeps the current month, the
 * previous one (late writes near a month boundary), and `aheadMonths` future months present.
 */
import type { Sql } from './index.js';

function monthStart(d: Date, offset: number): Date {
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + offset, 1));
}

export function partitionName(month: Date): string {
  return `transactions_${month.getUTCFullYear()}_${String(month.getUTCMonth() + 1).padStart(2, '0')}`;
}

export async function ensurePartitions(sql: Sql, opts: { aheadMonths: number; now?: Date }): Promise<string[]> {
  const now = opts.now ?? new Date();
  const created: string[] = [];
  for (let i = -1; i <= opts.aheadMonths; i++) {
    const from = monthStart(now, i);
    const to = monthStart(now, i + 1);
    const name = partitionName(from);
    const [exists] = await sql`select 1 from pg_class where relname = ${name}`;
    if (exists) continue;
    // Identifiers come from dates we formatted ourselves; values are ISO timestamps.
    await sql.unsafe(
      `create table if not exists ${name} partition of transactions for values from ('${from.toISOString()}') to ('${to.toISOString()}')`,
    );
    created.push(name);
  }
  return created;
}

export async function listPartitions(sql: Sql): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`
    select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
    join pg_class p on p.oid = i.inhparent where p.relname = 'transactions' order by 1`;
  return rows.map((r) => r.name);
}
