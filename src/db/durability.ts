/**
 * DB_DURABILITY: when a commit counts as acknowledged.
 *   - `local`: on the primary's disk (replicas follow asynchronously; a failover can lose the
 *     last acknowledged commits);
 *   - `sync-replica`: also on at least one replica (`synchronous_standby_names = ANY 1 (...)`,
 *     `synchronous_commit = on`), so a promoted replica has every acknowledged commit. A commit
 *     then waits for a replica and blocks while none is connected: that is the price.
 *
 * Embedded cluster sets write the setting at start and the failover manager rewrites it after a
 * promotion. External clusters are the operator's (Patroni `synchronous_mode`, CloudNativePG
 * `minSyncReplicas`): we only check them, unless DB_DURABILITY_APPLY=true asks us to run
 * ALTER SYSTEM on every primary at start (superuser; do not combine with an operator that
 * manages the setting itself, it would be overwritten or fought over).
 */
import type { Sql } from './index.js';
import type { Logger } from '../observability/logger.js';

export type Durability = 'local' | 'sync-replica';

/** A standby name as synchronous_standby_names accepts it (always quoted: names may hold `-`). */
function quoteName(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * The synchronous_standby_names value for a primary whose standbys are `standbyNames`; `*` means
 * any standby (for external clusters, whose standby names we do not know). Empty when durability
 * is local or no standby is left (sync-replica cannot hold then: the caller reports it).
 */
export function syncStandbyNames(durability: Durability, standbyNames: readonly string[]): string {
  if (durability === 'local' || standbyNames.length === 0) return '';
  if (standbyNames.includes('*')) return 'ANY 1 (*)';
  return `ANY 1 (${standbyNames.map(quoteName).join(', ')})`;
}

/** A PostgreSQL string literal, for statements that take no parameters (ALTER SYSTEM). */
export function sqlLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** Any postgres.js client (whatever its type options): ALTER SYSTEM takes no parameters anyway. */
interface RunsSql {
  unsafe(query: string): PromiseLike<unknown>;
}

/** how long setSyncStandbyNames waits for the reload to take effect */
const RELOAD_WAIT_MS = 5000;

/**
 * Sets synchronous_standby_names on the server `sql` reaches (a primary), reloads, and returns
 * once the setting is in effect. pg_reload_conf() only signals the server: without the wait a
 * caller (a rebuild, a failover) returned while commits could still run under the old list.
 * Gives up quietly after RELOAD_WAIT_MS (the reload still happens, later).
 */
export async function setSyncStandbyNames(sql: RunsSql, value: string): Promise<void> {
  await sql.unsafe(`alter system set synchronous_standby_names = ${sqlLiteral(value)}`);
  await sql.unsafe('select pg_reload_conf()');
  const deadline = Date.now() + RELOAD_WAIT_MS;
  while (Date.now() < deadline) {
    const rows = (await sql.unsafe("select current_setting('synchronous_standby_names') as v")) as { v: string }[];
    if (rows[0]?.v === value) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface DurabilityState {
  syncStandbyNames: string;
  synchronousCommit: string;
  /** standbys currently counted as synchronous (sync or quorum) */
  syncStandbys: number;
}

export async function readDurability(sql: Sql): Promise<DurabilityState> {
  const [row] = await sql<{ names: string; commit: string; sync: number }[]>`
    select current_setting('synchronous_standby_names') as names,
           current_setting('synchronous_commit') as commit,
           (select count(*)::int from pg_stat_replication where sync_state in ('sync', 'quorum')) as sync`;
  return { syncStandbyNames: row!.names, synchronousCommit: row!.commit, syncStandbys: row!.sync };
}

/**
 * Whether a primary honours sync-replica: a synchronous standby is configured and commits wait
 * for it. (`off` and `local` commits never wait for a standby, whatever the names say.)
 */
export function holdsSyncReplica(state: DurabilityState): boolean {
  return state.syncStandbyNames.trim() !== '' && !['off', 'local'].includes(state.synchronousCommit);
}

/**
 * At start, for clusters this process does not run: with DB_DURABILITY_APPLY, set the durability
 * on every primary (`ANY 1 (*)`: their standbys' names are the operator's); otherwise, under
 * sync-replica, check it and say loudly where it does not hold. ALTER SYSTEM reaches only the
 * current primary: after an operator's failover the new primary needs its own setting (the
 * failover manager's check reports it missing), which is why the operator should own it.
 */
export async function ensureExternalDurability(clusters: readonly { name: string; sql: Sql }[], opts: { durability: Durability; apply: boolean; log: Logger }): Promise<void> {
  for (const c of clusters) {
    if (opts.apply) {
      const value = syncStandbyNames(opts.durability, ['*']);
      await setSyncStandbyNames(c.sql, value);
      opts.log.info({ cluster: c.name, synchronous_standby_names: value }, 'DB_DURABILITY applied');
    } else if (opts.durability === 'sync-replica') {
      const state = await readDurability(c.sql);
      if (!holdsSyncReplica(state)) opts.log.error({ cluster: c.name, ...state }, 'DB_DURABILITY=sync-replica, but this primary does not wait for a replica (set synchronous_standby_names, or DB_DURABILITY_APPLY=true)');
    }
  }
}
