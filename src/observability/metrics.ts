/**
 * Prometheus metrics. One registry per platform instance (tests build several in a process).
 * RED per route; business counters for money movements; ledger batch and queue figures.
 */
import client from 'prom-client';
import type { EngineMetrics } from '../ledger/engine.js';
import type { CacheMetrics } from '../cache/index.js';

export interface Metrics extends EngineMetrics {
  readonly cache: CacheMetrics;
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
  const batchFailures = new client.Counter({ name: 'ledger_batch_failures_total', help: 'Ledger batches that failed (transient ones are retried)', labelNames: ['reason'], registers: [registry] });
  const queue = new client.Gauge({ name: 'ledger_queue_depth', help: 'Commands waiting for a ledger batch', labelNames: ['cluster'], registers: [registry] });
  const cacheLookups = new client.Counter({ name: 'cache_lookups_total', help: 'Cache lookups by layer, key type and result', labelNames: ['layer', 'kind', 'result'], registers: [registry] });
  const cacheEvictions = new client.Counter({ name: 'cache_evictions_total', help: 'Entries dropped from L1 by the byte bound (evict) or by TTL (expire)', labelNames: ['layer', 'reason'], registers: [registry] });
  const l1Bytes = new client.Gauge({ name: 'cache_l1_bytes', help: 'Bytes held by the in-process cache', registers: [registry] });
  const redisSeconds = new client.Histogram({ name: 'cache_redis_duration_seconds', help: 'Redis call latency by operation', labelNames: ['op'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1], registers: [registry] });
  const breaker = new client.Gauge({ name: 'cache_redis_breaker_open', help: '1 while the Redis circuit breaker is open or half-open', registers: [registry] });
  return {
    registry,
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
