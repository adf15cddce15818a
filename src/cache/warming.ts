/**
 * Cache warming: at start and every CACHE_WARM_INTERVAL_MS, the users most likely to be read
 * soon are loaded into L2 and this process's L1 through the very read functions the API uses
 * (profile, balances, the first history page), so a warmed key is exactly the key a request
 * would have filled. Two sources, interleaved so neither starves the other under the budget:
 *   - activity: the CACHE_WARM_SHARE_PERCENT of each cluster's users with the most history rows
 *     in the last 24 hours;
 *   - prediction: the users with history rows in the coming hour of the day (now .. now + 1 h)
 *     on each of the previous 7 days: people who pay their coffee at 8 every morning.
 * Inactive users are never warmed (no rows, no rank).
 *
 * Bounds: at most CACHE_WARM_MAX_USERS users a round (split evenly over the clusters), a few
 * reads in flight (the pool is shared with the API), and CACHE_WARM_BUDGET_MS of wall time: the
 * ranking queries run under a statement timeout of the budget left, and no user is started
 * after the budget is spent (the round then reports stoppedEarly). The server waits for the
 * first round at most CACHE_WARM_READY_MAX_MS before listening; the round itself goes on.
 *
 * Every api process warms: the ranking is repeated per process (see rankUsers for its cost),
 * but the reads of a second process are L2 hits that only fill its own L1.
 */
import type { Platform } from '../platform.js';
import type { Queryable, Sql } from '../db/index.js';
import { createWalletReads } from '../wallets/service.js';
import { loadRecent } from '../history/service.js';
import { shardOf } from '../shared/ids.js';

/** users taken from the candidate list between two budget checks */
const WARM_CHUNK = 200;
/** reads in flight per round; the API's requests share the pool (DB_POOL_MAX) */
const WARM_CONCURRENCY = 8;
const ACTIVITY_WINDOW_MS = 24 * 3_600_000;
const PREDICTION_DAYS = 7;
const PREDICTION_WINDOW_MS = 3_600_000;
const DAY_MS = 24 * 3_600_000;
/** below this many rows the planner's estimate may be stale or missing (never analyzed): count */
const EXACT_COUNT_BELOW = 100_000;

export interface WarmRound {
  users: number;
  keys: number;
  ms: number;
  stoppedEarly: boolean;
}

export interface Warming {
  /** settles (never rejects) when the first round is over */
  firstRound: Promise<unknown>;
  /** no more rounds; the round in flight stops at its next user */
  stop(): Promise<void>;
}

export interface Warmer {
  warmOnce(now?: Date): Promise<WarmRound>;
  /** a round now, then one every CACHE_WARM_INTERVAL_MS (a round still running skips a tick) */
  start(): Warming;
}

export function createWarmer(p: Platform): Warmer {
  const { config, log } = p;
  const reads = createWalletReads(p);
  let stopping = false;

  /**
   * The keys a request of this user would fill; 0 when the user is gone. Without a working
   * Redis, balances and the first history page live at most a second in L1 (src/cache/index.ts):
   * loading them would be a round of reads thrown away before the user asks, so only the
   * profile is warmed then.
   */
  const warmUser = async (userId: string): Promise<number> => {
    const shard = shardOf(userId);
    const profile = await reads.profile(userId, shard);
    if (!profile) return 0;
    if (p.cache.redisStatus() !== 'ok') return 1;
    const [wallets] = await Promise.all([reads.balances(userId, shard), loadRecent(p, userId, shard)]);
    return 2 + wallets.length;
  };

  async function warmOnce(now = new Date()): Promise<WarmRound> {
    const started = performance.now();
    const deadline = started + config.cacheWarmBudgetMs;
    const left = () => deadline - performance.now();
    const round = { users: 0, keys: 0, failed: 0, stoppedEarly: false };
    const clusters = p.db.clusters;
    for (const [i, cluster] of clusters.entries()) {
      // CACHE_WARM_MAX_USERS for the whole round, split evenly over the clusters
      const cap = Math.floor(config.cacheWarmMaxUsers / clusters.length) + (i < config.cacheWarmMaxUsers % clusters.length ? 1 : 0);
      if (stopping || left() <= 0) {
        round.stoppedEarly = true;
        break;
      }
      let candidates: string[];
      try {
        candidates = await rankUsers(cluster.sql, now, cap, config.cacheWarmShare, left);
      } catch (err) {
        // a statement timeout is the budget running out; anything else is logged and the next round tries again
        if (!isStatementTimeout(err)) log.warn({ err, cluster: cluster.name }, 'cache warming: ranking users failed');
        round.stoppedEarly = true;
        continue;
      }
      for (let from = 0; from < candidates.length; from += WARM_CHUNK) {
        const chunk = candidates.slice(from, from + WARM_CHUNK);
        const done = await forEachWhile(chunk, WARM_CONCURRENCY, () => !stopping && left() > 0, async (userId) => {
          try {
            const keys = await warmUser(userId);
            if (keys) round.users++;
            round.keys += keys;
          } catch (err) {
            // a read that fails here fails the same way for the request that needs it: not our business to retry
            round.failed++;
            if (round.failed === 1) log.warn({ err, userId }, 'cache warming: a read failed');
          }
        });
        if (done < chunk.length) {
          round.stoppedEarly = true;
          break;
        }
      }
    }
    const ms = Math.round(performance.now() - started);
    log.info({ users: round.users, keys: round.keys, failed: round.failed, ms, stoppedEarly: round.stoppedEarly }, 'cache warming round');
    return { users: round.users, keys: round.keys, ms, stoppedEarly: round.stoppedEarly };
  }

  return {
    warmOnce,
    start(): Warming {
      stopping = false;
      let running: Promise<unknown> | undefined;
      const tick = () => {
        if (running) return; // the previous round is still at work
        running = warmOnce()
          .catch((err: unknown) => log.error({ err }, 'cache warming round failed'))
          .finally(() => (running = undefined));
        return running;
      };
      const firstRound = tick()!;
      const timer = setInterval(tick, config.cacheWarmIntervalMs);
      timer.unref();
      return {
        firstRound,
        async stop() {
          clearInterval(timer);
          stopping = true;
          await running;
        },
      };
    },
  };
}

/**
 * The users to warm on one cluster, most active first, sources interleaved, at most `cap`.
 *
 * No index serves "group by user_id where created_at > x" (the history index leads with
 * user_id), so both queries scan the partitions their time ranges prune to (the current month,
 * and the previous one near a month's start, for activity; up to two months for prediction),
 * filtering by created_at. That is acceptable for a job that runs every few minutes, not per
 * request, and it is bounded: each query runs under a statement timeout of the warming budget
 * left. An index on created_at (BRIN would be cheap) would make this an index scan but costs
 * every history insert on the hot write path; it is not added without measuring that cost.
 */
async function rankUsers(sql: Sql, now: Date, cap: number, sharePercent: number, msLeft: () => number): Promise<string[]> {
  if (cap <= 0 || sharePercent <= 0) return [];
  return sql.begin(async (tx) => {
    // set_config(..., true) is SET LOCAL: the timeout ends with this transaction. Never 0 (no timeout).
    const timeout = () => tx`select set_config('statement_timeout', ${String(Math.max(1, Math.floor(msLeft())))}, true)`;
    await timeout();
    const limit = Math.min(cap, Math.ceil((await userCount(tx)) * (sharePercent / 100)));
    if (limit <= 0) return [];
    await timeout();
    const active = await tx<{ user_id: string }[]>`
      select user_id from transactions
      where created_at >= ${new Date(now.getTime() - ACTIVITY_WINDOW_MS)} and created_at < ${now}
      group by user_id order by count(*) desc, user_id limit ${limit}`;
    const windows = Array.from({ length: PREDICTION_DAYS }, (_, d) => {
      const from = new Date(now.getTime() - (d + 1) * DAY_MS);
      return tx`(created_at >= ${from} and created_at < ${new Date(from.getTime() + PREDICTION_WINDOW_MS)})`;
    });
    await timeout();
    const predicted = await tx<{ user_id: string }[]>`
      select user_id from transactions
      where ${windows.reduce((acc, w) => tx`${acc} or ${w}`)}
      group by user_id order by count(*) desc, user_id limit ${limit}`;
    return interleave(active.map((r) => r.user_id), predicted.map((r) => r.user_id), cap);
  });
}

/** The planner's estimate when the table is big (a count would scan it), else an exact count. */
async function userCount(sql: Queryable): Promise<number> {
  const [estimate] = await sql<{ n: number }[]>`select reltuples::float8 as n from pg_class where oid = 'users'::regclass`;
  if (estimate && estimate.n >= EXACT_COUNT_BELOW) return Math.round(estimate.n);
  const [row] = await sql<{ n: number }[]>`select count(*)::int as n from users`;
  return row?.n ?? 0;
}

/** a1, b1, a2, b2, ... without duplicates, at most `max` */
export function interleave(a: string[], b: string[], max: number): string[] {
  const seen = new Set<string>();
  for (let i = 0; seen.size < max && (i < a.length || i < b.length); i++) {
    if (i < a.length) seen.add(a[i]!);
    if (seen.size < max && i < b.length) seen.add(b[i]!);
  }
  return [...seen];
}

/**
 * Runs `fn` over the items with at most `concurrency` in flight, starting an item only while
 * `go()` holds; returns how many items were started.
 */
async function forEachWhile<T>(items: T[], concurrency: number, go: () => boolean, fn: (item: T) => Promise<void>): Promise<number> {
  let next = 0;
  const worker = async () => {
    while (next < items.length && go()) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return next;
}

function isStatementTimeout(err: unknown): boolean {
  return (err as { code?: string }).code === '57014'; // query_canceled
}

/** Waits for `promise` at most `ms` (never rejects): how the server bounds its wait for the first round. */
export async function settleWithin(promise: Promise<unknown>, ms: number): Promise<'settled' | 'timed-out'> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timed-out'>((ok) => (timer = setTimeout(() => ok('timed-out'), ms)));
  try {
    return await Promise.race([promise.then(() => 'settled' as const, () => 'settled' as const), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}
