/**
 * Prometheus metrics. One registry per platform instance (tests build several in a process).
 * RED per route; business counters for money movements; ledger batch and queue figures.
 */
import client from 'prom-client';
import type { EngineMetrics } from '../ledger/engine.js';
import type { CacheMetrics } from '../cache/index.js';
import type { DbMetrics } from '../db/index.js';

/** the event backbone: relay, consumers, work queues and workers */
export interface EventMetrics {
  relayPublished(topic: string, n: number): void;
  /** oldest unsent outbox row's age and the unsent count, per cluster */
  relayLag(cluster: string, oldestAgeSeconds: number, backlog: number): void;
  consumed(group: string, topic: string, outcome: 'ok' | 'retry' | 'dead_letter' | 'duplicate', n?: number): void;
  queueDepth(priority: string, depth: number): void;
  workers(desired: number, actual: number): void;
  job(kind: string, outcome: 'ok' | 'retry' | 'failed'): void;
}

/** database clusters: primary health and failovers (db/failover.ts) */
export interface FailoverMetrics {
  primaryUp(cluster: string, up: boolean): void;
  failover(cluster: string): void;
  /** DB_DURABILITY=sync-replica asked for, but the cluster has no synchronous replica left */
  syncReplicaMissing(cluster: string, missing: boolean): void;
}

export interface Metrics extends EngineMetrics {
  readonly cache: CacheMetrics;
  readonly events: EventMetrics;
  readonly db: DbMetrics;
  readonly failover: FailoverMetrics;
  readonly registry: client.Registry;
  httpRequest(method: string, route: string, status: number, seconds: number): void;
  /** a money movement's outcome; value counted only for completed ones */
  movement(kind: string, currency: string, outcome: string, amountMinor: bigint): void;
}

export function createMetrics(): Metrics {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const requests = new client.Counter({ name: 'http_requests_total', help: 'HTTP requests by route and status', labelNames: ['method', 'route', 'status'], registers: [registry] });
  const duration = new client.Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request latency by route',
    labelNames: ['method', 'route', 'status_class'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const movements = new client.Counter({ name: 'wallet_movements_total', help: 'Money movements by kind, currency and outcome (completed, declined, insufficient_funds, ...)', labelNames: ['kind', 'currency', 'outcome'], registers: [registry] });
  // Prometheus samples are floats: exact money lives in the ledger, this is for dashboards.
  const value = new client.Counter({ name: 'wallet_movement_value_minor_total', help: 'Value of completed movements in minor units', labelNames: ['kind', 'currency'], registers: [registry] });
  const batchSize = new client.Histogram({ name: 'ledger_batch_size', help: 'Commands per committed ledger batch', buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500], registers: [registry] });
  const batchSeconds = new client.Histogram({ name: 'ledger_batch_duration_seconds', help: 'Ledger batch time from close to commit', buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers: [registry] });
  // read routing: the share of balance/history reads served by replicas, and why others were not
  const reads = new client.Counter({ name: 'db_reads_total', help: 'Balance and history reads by where they were served (replica or primary) and why a primary', labelNames: ['cluster', 'kind', 'target', 'reason'], registers: [registry] });
  const replicaUp = new client.Gauge({ name: 'db_replica_up', help: 'Whether the replica answered its last poll', labelNames: ['cluster', 'replica'], registers: [registry] });
  const replicaLag = new client.Gauge({ name: 'db_replica_lag_seconds', help: 'Time since the oldest primary WAL position the replica has not replayed was seen', labelNames: ['cluster', 'replica'], registers: [registry] });
  const replicaLagBytes = new client.Gauge({ name: 'db_replica_lag_bytes', help: 'WAL bytes the replica had not replayed at the last poll', labelNames: ['cluster', 'replica'], registers: [registry] });
  const batchFailures = new client.Counter({ name: 'ledger_batch_failures_total', help: 'Ledger batches that failed (transient ones are retried)', labelNames: ['reason'], registers: [registry] });
  const queue = new client.Gauge({ name: 'ledger_queue_depth', help: 'Commands waiting for a ledger batch', labelNames: ['cluster'], registers: [registry] });
  const cacheLookups = new client.Counter({ name: 'cache_lookups_total', help: 'Cache lookups by layer, key type and result', labelNames: ['layer', 'kind', 'result'], registers: [registry] });
  const cacheEvictions = new client.Counter({ name: 'cache_evictions_total', help: 'Entries dropped from L1 by the byte bound (evict) or by TTL (expire)', labelNames: ['layer', 'reason'], registers: [registry] });
  const l1Bytes = new client.Gauge({ name: 'cache_l1_bytes', help: 'Bytes held by the in-process cache', registers: [registry] });
  const redisSeconds = new client.Histogram({ name: 'cache_redis_duration_seconds', help: 'Redis call latency by operation', labelNames: ['op'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1], registers: [registry] });
  const breaker = new client.Gauge({ name: 'cache_redis_breaker_open', help: '1 while the Redis circuit breaker is open or half-open', registers: [registry] });
  const published = new client.Counter({ name: 'relay_published_total', help: 'Outbox events published to the bus, by topic', labelNames: ['topic'], registers: [registry] });
  const lagSeconds = new client.Gauge({ name: 'relay_oldest_unsent_age_seconds', help: 'Age of the oldest unsent outbox event (0 when none)', labelNames: ['cluster'], registers: [registry] });
  const backlog = new client.Gauge({ name: 'relay_backlog_events', help: 'Unsent outbox events', labelNames: ['cluster'], registers: [registry] });
  const consumedTotal = new client.Counter({ name: 'bus_consumed_total', help: 'Events handled by consumer group, topic and outcome (ok, retry, dead_letter, duplicate)', labelNames: ['group', 'topic', 'outcome'], registers: [registry] });
  const depth = new client.Gauge({ name: 'work_queue_depth', help: 'Jobs waiting or in flight, by priority', labelNames: ['priority'], registers: [registry] });
  const workersDesired = new client.Gauge({ name: 'workers_desired', help: 'Workers the scaling rule asks for (+10 per 1,000 queued; down below 100)', registers: [registry] });
  const workersActual = new client.Gauge({ name: 'workers_actual', help: 'Workers running', registers: [registry] });
  const jobs = new client.Counter({ name: 'jobs_total', help: 'Jobs run, by kind and outcome', labelNames: ['kind', 'outcome'], registers: [registry] });
  const primaryUp = new client.Gauge({ name: 'db_primary_up', help: '1 while the cluster primary answers health checks', labelNames: ['cluster'], registers: [registry] });
  const failovers = new client.Counter({ name: 'db_failovers_total', help: 'Primary changes: promotions by this process, or an operator promotion seen through the multi-host URL', labelNames: ['cluster'], registers: [registry] });
  const syncMissing = new client.Gauge({ name: 'db_sync_replica_missing', help: '1 while DB_DURABILITY=sync-replica cannot hold (no synchronous replica left)', labelNames: ['cluster'], registers: [registry] });
  return {
    registry,
    failover: {
      primaryUp: (cluster, up) => primaryUp.set({ cluster }, up ? 1 : 0),
      failover: (cluster) => failovers.inc({ cluster }),
      syncReplicaMissing: (cluster, missing) => syncMissing.set({ cluster }, missing ? 1 : 0),
    },
    events: {
      relayPublished: (topic, n) => published.inc({ topic }, n),
      relayLag: (cluster, age, n) => {
        lagSeconds.set({ cluster }, age);
        backlog.set({ cluster }, n);
      },
      consumed: (group, topic, outcome, n = 1) => consumedTotal.inc({ group, topic, outcome }, n),
      queueDepth: (priority, n) => depth.set({ priority }, n),
      workers: (desired, actual) => {
        workersDesired.set(desired);
        workersActual.set(actual);
      },
      job: (kind, outcome) => jobs.inc({ kind, outcome }),
    },
    cache: {
      lookup: (layer, kind, hit) => cacheLookups.inc({ layer, kind, result: hit ? 'hit' : 'miss' }),
      eviction: (layer, reason) => cacheEvictions.inc({ layer, reason }),
      l1Bytes: (bytes) => l1Bytes.set(bytes),
      redisLatency: (op, seconds) => redisSeconds.observe({ op }, seconds),
      breaker: (state) => breaker.set(state === 'closed' ? 0 : 1),
    },
    httpRequest(method, route, status, seconds) {
      requests.inc({ method, route, status: String(status) });
      duration.observe({ method, route, status_class: `${Math.floor(status / 100)}xx` }, seconds);
    },
    movement(kind, currency, outcome, amountMinor) {
      movements.inc({ kind, currency, outcome });
      if (outcome === 'completed') value.inc({ kind, currency }, Number(amountMinor));
    },
    db: {
      read(cluster, kind, target, reason) {
        reads.inc({ cluster, kind, target, reason: reason ?? '' });
      },
      replica(cluster, replica, up, lagSeconds, lagBytes) {
        replicaUp.set({ cluster, replica }, up ? 1 : 0);
        replicaLag.set({ cluster, replica }, lagSeconds);
        replicaLagBytes.set({ cluster, replica }, Number(lagBytes));
      },
    },
    batchCommitted(size, ms) {
      batchSize.observe(size);
      batchSeconds.observe(ms / 1000);
    },
    batchFailed(reason) {
      batchFailures.inc({ reason });
    },
    queueDepth(cluster, depth) {
      queue.set({ cluster }, depth);
    },
  };
}
