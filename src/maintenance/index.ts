/**
 * The maintenance role: periodic housekeeping on every cluster, by one active instance per
 * cluster (a transaction-scoped advisory lock; others skip the round). Tasks are small and
 * bounded per round so a backlog is worked off over several rounds, never in one long lock.
 */
import type { Cluster } from '../db/index.js';
import type { Platform } from '../platform.js';
import { archivePartitions, dropArchivedPartitions, ensurePartitions } from '../db/partitions.js';
import { CLEARING_USER, REFUSED_STATUS } from '../transfers/clearing.js';

const MAINTENANCE_LOCK = 72_616_002;
/** rows one purge statement deletes: short statements, short row locks */
export const PURGE_BATCH = 10_000;
/**
 * A purge's time in one round: batch after batch until nothing is left or this runs out. One
 * batch a round (as it was) deleted ~170 rows a second, and a table written faster than that
 * (idempotency keys, outbox and inbox rows at thousands of movements a second) outgrew its TTL.
 */
export const PURGE_BUDGET_MS = 10_000;

/** Runs deleteBatch(PURGE_BATCH) until a batch comes back short or the budget is spent; returns the rows deleted. */
export async function purgeInBatches(deleteBatch: (limit: number) => Promise<number>, budgetMs = PURGE_BUDGET_MS): Promise<number> {
  const end = Date.now() + budgetMs;
  let total = 0;
  for (;;) {
    const n = await deleteBatch(PURGE_BATCH);
    total += n;
    if (n < PURGE_BATCH || Date.now() >= end) return total;
  }
}

export interface MaintenanceTask {
  name: string;
  run(cluster: Cluster, now: Date): Promise<number>;
}

export function coreTasks(p: Platform): MaintenanceTask[] {
  const { config } = p;
  const lifecycle = (now: Date) => ({ now, hotDays: config.partitionsHotDays, warmDays: config.partitionsWarmDays });
  return [
    { name: 'partitions', run: async (c, now) => (await ensurePartitions(c.sql, { aheadMonths: config.partitionsAheadMonths, now })).length },
    // after 'partitions' and in this order: a month is moved before it can be dropped, in the same round
    { name: 'partitions-archive', run: async (c, now) => (await archivePartitions(c.sql, lifecycle(now))).length },
    { name: 'partitions-drop', run: async (c, now) => (await dropArchivedPartitions(c.sql, lifecycle(now))).length },
    {
      name: 'idempotency-purge',
      run: async (c, now) => {
        const cutoff = new Date(now.getTime() - config.idempotencyTtlHours * 3_600_000);
        // a cross-cluster credit's refusal is kept for good: it is what stops a late redelivery
        // from crediting a transfer that was already reversed (src/transfers/clearing.ts)
        return purgeInBatches(async (limit) => (await c.sql`delete from idempotency_keys where ctid = any(array(
          select ctid from idempotency_keys where created_at < ${cutoff} and not (user_id = ${CLEARING_USER} and status_code = ${REFUSED_STATUS}) limit ${limit})) returning 1`).length);
      },
    },
    {
      name: 'login-failures-purge',
      run: async (c, now) => {
        const cutoff = new Date(now.getTime() - config.loginWindowSeconds * 1000);
        return purgeInBatches(async (limit) => (await c.sql`delete from login_failures where ctid = any(array(select ctid from login_failures where at < ${cutoff} limit ${limit})) returning 1`).length);
      },
    },
  ];
}

/**
 * One round on every cluster; returns what each task did, by cluster (a cluster another
 * maintainer holds, or one that cannot be reached, is absent). One cluster down does not stop
 * the others' maintenance: its failure is logged and the round goes on.
 */
export async function runMaintenanceRound(p: Platform, tasks: MaintenanceTask[], now = new Date()): Promise<Record<string, Record<string, number>>> {
  const report: Record<string, Record<string, number>> = {};
  for (const cluster of p.db.clusters) {
    try {
      const done = await maintainCluster(p, cluster, tasks, now);
      if (done) report[cluster.name] = done;
    } catch (err) {
      p.log.error({ err, cluster: cluster.name }, 'maintenance of this cluster failed this round; the other clusters go on');
    }
  }
  return report;
}

/** the tasks on one cluster under its maintainer lock; undefined when another maintainer holds it */
async function maintainCluster(p: Platform, cluster: Cluster, tasks: MaintenanceTask[], now: Date): Promise<Record<string, number> | undefined> {
  // a session lock on a reserved connection: one active maintainer per cluster
  const conn = await cluster.sql.reserve();
  try {
    const [row] = await conn<{ locked: boolean }[]>`select pg_try_advisory_lock(${MAINTENANCE_LOCK}) as locked`;
    if (!row?.locked) return undefined;
    const done: Record<string, number> = {};
    try {
      for (const task of tasks) {
        try {
          done[task.name] = await task.run(cluster, now);
        } catch (err) {
          p.log.error({ err, task: task.name, cluster: cluster.name }, 'maintenance task failed');
        }
      }
    } finally {
      // a connection lost meanwhile took its session and so the lock with it
      await conn`select pg_advisory_unlock(${MAINTENANCE_LOCK})`.catch((err: unknown) => p.log.warn({ err, cluster: cluster.name }, 'releasing the maintenance lock failed'));
    }
    return done;
  } finally {
    conn.release();
  }
}

export function startMaintenance(p: Platform, tasks: MaintenanceTask[]): { stop(): Promise<void> } {
  let running: Promise<unknown> | undefined;
  const tick = () => {
    // a round still going when the next is due: that one is skipped, not run beside it
    if (running) return;
    running = runMaintenanceRound(p, tasks)
      .catch((err) => p.log.error({ err }, 'maintenance round failed'))
      .finally(() => (running = undefined));
  };
  tick();
  const timer = setInterval(tick, p.config.maintenanceIntervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
