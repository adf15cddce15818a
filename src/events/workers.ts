/**
 * The workers role: a pool of job runners over the three priority queues, resized by the plan's
 * rule (+WORKERS_PER_THOUSAND workers per 1,000 queued jobs; back down only when fewer than
 * WORKERS_SCALE_DOWN_BELOW are queued), within [WORKERS_MIN, WORKERS_MAX].
 *
 * Choosing a queue: out of every 10 picks, 7 prefer high, 2 prefer medium and 1 prefers low; a
 * pick whose preferred queue is empty falls through to the next priority in order. So higher
 * priorities drain first, and a full high queue still leaves medium 20 % and low 10 % of the
 * pool: nothing starves.
 */
import type { Config } from '../config/index.js';
import type { Logger } from '../observability/logger.js';
import type { EventMetrics } from '../observability/metrics.js';
import { PRIORITIES, type JobHandler, type JobQueue, type LeasedJob, type Priority } from './types.js';

const ORDERS: Record<'high' | 'medium' | 'low', readonly Priority[]> = {
  high: ['high', 'medium', 'low'],
  medium: ['medium', 'high', 'low'],
  low: ['low', 'medium', 'high'],
};
/** the preferred queue of pick n (mod 10) */
const PATTERN: readonly Priority[] = ['high', 'high', 'high', 'medium', 'high', 'high', 'high', 'medium', 'high', 'low'];
const IDLE_MIN_MS = 5;
const IDLE_MAX_MS = 200;
const UNKNOWN_KIND_RETRY_MS = 60_000;

export interface ScaleRule {
  min: number;
  max: number;
  perThousand: number;
  scaleDownBelow: number;
}

export function scaleRuleFrom(config: Config): ScaleRule {
  return { min: config.workersMin, max: Math.max(config.workersMin, config.workersMax), perThousand: config.workersPerThousand, scaleDownBelow: config.workersScaleDownBelow };
}

/** the pool size the plan asks for, given the queued jobs and the current size */
export function desiredWorkers(depth: number, current: number, rule: ScaleRule): number {
  const target = Math.min(rule.max, Math.max(rule.min, rule.min + rule.perThousand * Math.floor(depth / 1000)));
  if (target >= current) return target;
  return depth < rule.scaleDownBelow ? target : current;
}

/** retry delay for a failed job: 1 s doubling per attempt, at most 5 min */
export function jobRetryDelayMs(attempt: number): number {
  return Math.min(300_000, 1000 * 2 ** Math.max(0, attempt - 1));
}

export interface WorkerPool {
  readonly size: number;
  resize(n: number): void;
  /** jobs finished (acked or retried) since start, by priority */
  readonly done: Record<Priority, number>;
  stop(): Promise<void>;
}

export function createWorkerPool(queue: JobQueue, handlers: Record<string, JobHandler>, deps: { log: Logger; metrics?: EventMetrics }, initial = 1): WorkerPool {
  const done: Record<Priority, number> = { high: 0, medium: 0, low: 0 };
  let picks = 0;
  const loops: { stopped: boolean; running: Promise<void> }[] = [];

  /** the handler acks or retries; if it returns having done neither, the pool acks */
  const run = async (leased: LeasedJob) => {
    let settled = false;
    const job: LeasedJob = {
      ...leased,
      ack: () => ((settled = true), leased.ack()),
      retry: (ms) => ((settled = true), leased.retry(ms)),
    };
    const handler = handlers[job.job.kind];
    if (!handler) {
      deps.log.error({ kind: job.job.kind, jobId: job.job.id }, 'no handler for this job kind in this process; retrying later');
      deps.metrics?.job(job.job.kind, 'failed');
      await job.retry(UNKNOWN_KIND_RETRY_MS);
      return;
    }
    try {
      await handler(job);
      if (!settled) await job.ack();
      deps.metrics?.job(job.job.kind, 'ok');
    } catch (err) {
      deps.log.warn({ err, kind: job.job.kind, jobId: job.job.id, attempt: job.attempt }, 'job failed; retrying');
      deps.metrics?.job(job.job.kind, 'retry');
      if (!settled) await job.retry(jobRetryDelayMs(job.attempt)).catch(() => undefined);
    }
  };

  const start = () => {
    const me = { stopped: false, running: Promise.resolve() };
    me.running = (async () => {
      let idle = IDLE_MIN_MS;
      while (!me.stopped) {
        const order = ORDERS[PATTERN[picks++ % PATTERN.length]!];
        let job: LeasedJob | undefined;
        try {
          for (const p of order) {
            [job] = await queue.take(p, 1);
            if (job) break;
          }
        } catch (err) {
          deps.log.error({ err }, 'taking a job failed');
        }
        if (!job) {
          await new Promise((r) => setTimeout(r, idle));
          idle = Math.min(IDLE_MAX_MS, idle * 2);
          continue;
        }
        idle = IDLE_MIN_MS;
        await run(job);
        done[job.priority]++;
      }
    })();
    loops.push(me);
  };

  const pool: WorkerPool = {
    get size() {
      return loops.length;
    },
    done,
    resize(n) {
      while (loops.length < n) start();
      while (loops.length > n) loops.pop()!.stopped = true; // finishes its job in hand, then exits
    },
    async stop() {
      const all = loops.splice(0);
      for (const l of all) l.stopped = true;
      await Promise.all(all.map((l) => l.running));
    },
  };
  pool.resize(initial);
  return pool;
}

/** the workers role: a pool plus the scaler that resizes it from the queue depth */
export function startWorkers(queue: JobQueue, handlers: Record<string, JobHandler>, config: Config, deps: { log: Logger; metrics?: EventMetrics }): { pool: WorkerPool; scaleOnce(): Promise<number>; stop(): Promise<void> } {
  const rule = scaleRuleFrom(config);
  const pool = createWorkerPool(queue, handlers, deps, rule.min);
  const scaleOnce = async () => {
    const depth = await queue.depth();
    let total = 0;
    for (const p of PRIORITIES) {
      total += depth[p];
      deps.metrics?.queueDepth(p, depth[p]);
    }
    const desired = desiredWorkers(total, pool.size, rule);
    pool.resize(desired);
    deps.metrics?.workers(desired, pool.size);
    return desired;
  };
  let scaling: Promise<unknown> = Promise.resolve();
  const timer = setInterval(() => {
    scaling = scaleOnce().catch((err) => deps.log.error({ err }, 'worker scaling failed'));
  }, config.workersScaleIntervalMs);
  timer.unref();
  return {
    pool,
    scaleOnce,
    async stop() {
      clearInterval(timer);
      await scaling;
      await pool.stop();
    },
  };
}
