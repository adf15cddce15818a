/**
 * The audit consumer group: every money event (transaction-events) and every security event
 * (audit-logs) is appended to the chain of the cluster that owns the event's shard.
 *
 * The bus hands a handler one event at a time (several at once, for different keys), while the
 * chain takes one appender per cluster at a time. So handlers queue their event on the cluster's
 * appender and wait for the batch that carries it to commit (group commit): one transaction for
 * whatever arrived while the previous one ran, never a timer. A failed batch
 * is retried event by event (so one event the database refuses fails alone), the bus redelivers
 * what still failed, and appendAudit skips what did commit: the chain records each event once
 * (event_id is unique: the chain is its own inbox).
 */
import { unlessStuck, type Cluster, type Sql } from '../db/index.js';
import type { Platform } from '../platform.js';
import { PoisonEvent, type BusEvent, type ConsumerSpec } from '../events/types.js';
import { appendAudit, auditEventProblem } from './chain.js';

export const AUDIT_GROUP = 'audit';

export interface AuditConsumerOptions {
  /** events per append transaction; default 500 */
  batchMax?: number;
  /** events waiting per cluster before handlers are refused (the bus redelivers them later); default 10,000 */
  queueMax?: number;
  /**
   * The cluster whose chain this is, and how long one append may take: past that its connection is
   * taken for stuck, the cluster's primary pool is replaced (src/db/index.ts, unlessStuck) and the
   * batch fails, so one stuck connection cannot stop the cluster's chain for good.
   */
  stuck?: { cluster: Pick<Cluster, 'name' | 'recyclePrimary'>; ms: number };
}

interface Waiting {
  event: BusEvent;
  done: (err?: unknown) => void;
}

/** Appends events to one cluster's chain in batches; append() resolves when its event is recorded. */
export function createAuditAppender(sqlOf: Sql | (() => Sql), opts: AuditConsumerOptions = {}): { append(event: BusEvent): Promise<void> } {
  // a function: the cluster's primary pool may be replaced after a failover (Cluster.recyclePrimary)
  const current = typeof sqlOf === 'function' && !('begin' in sqlOf) ? (sqlOf as () => Sql) : () => sqlOf as Sql;
  const batchMax = Math.max(1, opts.batchMax ?? 500);
  const queueMax = Math.max(batchMax, opts.queueMax ?? 10_000);
  const queue: Waiting[] = [];
  let draining = false;
  const append = (events: BusEvent[]) => {
    const work = appendAudit(current(), events);
    return opts.stuck ? unlessStuck(opts.stuck.cluster, 'the audit append', opts.stuck.ms, work) : work;
  };

  const drain = async () => {
    draining = true;
    while (queue.length) {
      const batch = queue.splice(0, batchMax);
      try {
        await append(batch.map((w) => w.event));
        for (const w of batch) w.done();
      } catch (err) {
        if (batch.length === 1) batch[0]!.done(err);
        // one event the database refuses must not fail its batch-mates on every redelivery
        else for (const w of batch) await append([w.event]).then(() => w.done(), w.done);
      }
    }
    draining = false;
  };

  return {
    append(event) {
      if (queue.length >= queueMax) return Promise.reject(new Error(`audit: ${queueMax} events already waiting for this cluster`));
      return new Promise<void>((resolve, reject) => {
        queue.push({ event, done: (err) => (err === undefined ? resolve() : reject(err)) });
        if (!draining) void drain();
      });
    },
  };
}

/** Group 'audit' on transaction-events and on audit-logs, sharing one appender per cluster. */
export function auditConsumers(p: Platform, opts: AuditConsumerOptions = {}): ConsumerSpec[] {
  const appenders = new Map(p.db.clusters.map((c) => [c.name, createAuditAppender(() => c.sql, { stuck: { cluster: c, ms: p.config.dbStepTimeoutMs }, ...opts })]));
  const handler = async (event: BusEvent) => {
    // a malformed event would fail its whole batch on every delivery: dead-letter it alone
    const problem = auditEventProblem(event);
    if (problem) throw new PoisonEvent(`audit: ${problem}`);
    await appenders.get(p.db.forShard(event.shard).name)!.append(event);
  };
  return [
    { group: AUDIT_GROUP, topic: 'transaction-events', handler },
    { group: AUDIT_GROUP, topic: 'audit-logs', handler },
  ];
}
