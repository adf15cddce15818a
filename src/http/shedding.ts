/**
 * Load shedding and admission in the HTTP layer, per process. Requests fall in three classes:
 *   - reads (GET/HEAD under /v1: balances, history, receipts, profile, ...) are the work a
 *     spike can do without: they are rate-limited (a token bucket, HTTP_READS_PER_SECOND with
 *     HTTP_READS_BURST, answered 429 `rate_limited` with Retry-After and RateLimit-* headers as
 *     API.md asks of rate limits), and refused while the process is overloaded: while
 *     HTTP_SHED_READS_AT_IN_FLIGHT requests of any class are in flight in it (money waiting on
 *     ledger batches or for admission counts), a read is answered 503 `unavailable` with
 *     Retry-After (the platform is busy, not the client too fast);
 *   - money-moving POSTs (transfers, payments and their capture/void/refunds, top-ups) are
 *     admitted HTTP_MONEY_CONCURRENCY at a time; the rest wait in arrival order before their
 *     body is parsed or their token checked. Without that bound an overloaded process starts
 *     every request at once and its event loop, busy with hundreds of them, leaves open ledger
 *     transactions waiting between statements while they hold row locks: the other processes'
 *     batches queue behind those locks and throughput collapses (seen in `wallet bench
 *     --scenario spike`). Only when HTTP_MONEY_QUEUE_MAX are already waiting is a money request
 *     refused (503 `unavailable`, Retry-After), so reads are always shed first;
 *   - everything else passes.
 * The checks run in the first onRequest hook, before authentication and body parsing, so a
 * shed request costs the parse of its head and a small constant answer. Operations routes
 * (/healthz, /readyz, /metrics) and the docs are outside /v1 and never shed.
 */
import type { FastifyInstance } from 'fastify';
import client from 'prom-client';
import type { Config } from '../config/index.js';
import { problem } from './problem.js';
import { problems } from './schemas.js';
import { Fifo } from '../shared/fifo.js';

export interface ShedLimits {
  readsPerSecond: number;
  readsBurst: number;
  /** reads are refused while this many requests (any class) are in flight in the process */
  shedReadsAtInFlight: number;
  /** money-moving requests processed at once; the others wait */
  moneyConcurrency: number;
  /** money-moving requests that may wait; beyond, 503 */
  moneyQueueMax: number;
}

export function shedLimits(config: Config): ShedLimits {
  return {
    readsPerSecond: config.httpReadsPerSecond,
    readsBurst: config.httpReadsBurst,
    shedReadsAtInFlight: config.httpShedReadsAtInFlight,
    moneyConcurrency: config.httpMoneyConcurrency,
    moneyQueueMax: config.httpMoneyQueueMax,
  };
}

/** A token bucket; refilled lazily from the monotonic clock. 0 tokens per second: unlimited. */
export function createTokenBucket(perSecond: number, burst: number, now: () => number = () => performance.now()) {
  let tokens = burst;
  let at = now();
  return {
    /** takes a token; otherwise the milliseconds until one is there */
    take(): { ok: true; remaining: number } | { ok: false; waitMs: number } {
      if (perSecond <= 0) return { ok: true, remaining: burst };
      const t = now();
      tokens = Math.min(burst, tokens + ((t - at) * perSecond) / 1000);
      at = t;
      if (tokens >= 1) {
        tokens -= 1;
        return { ok: true, remaining: Math.floor(tokens) };
      }
      return { ok: false, waitMs: ((1 - tokens) * 1000) / perSecond };
    },
  };
}

const isRead = (method: string, url: string) => (method === 'GET' || method === 'HEAD') && url.startsWith('/v1/');
const MONEY_PATH = /^\/v1\/(?:transfers|payments|topups)(?:[/?]|$)/;
const isMoney = (method: string, url: string) => method === 'POST' && MONEY_PATH.test(url);

interface Waiting {
  admit(): void;
  admitted: boolean;
  /** its client went away before it was admitted */
  gone: boolean;
}

export function registerShedding(app: FastifyInstance, limits: ShedLimits, registry?: client.Registry): void {
  const shed = new client.Counter({ name: 'http_shed_total', help: 'Requests refused by load shedding, by class and reason', labelNames: ['class', 'reason'], registers: registry ? [registry] : [] });
  const bucket = createTokenBucket(limits.readsPerSecond, limits.readsBurst);
  const limited = JSON.stringify(problem('rate_limited', 'Reads are rate-limited while the platform is busy; money movements are not. Retry after the time in Retry-After.'));
  const busy = JSON.stringify(problem('unavailable', 'The platform is busy; reads are refused before payments. Retry after the time in Retry-After.'));
  const full = JSON.stringify(problem('unavailable', 'The platform is busy; retry with the same Idempotency-Key after the time in Retry-After.'));
  let inFlight = 0;
  let moneyActive = 0;
  const waiting = new Fifo<Waiting>();

  const admitNext = () => {
    while (moneyActive < limits.moneyConcurrency && waiting.length) {
      const next = waiting.shift()!;
      if (next.gone) continue;
      moneyActive++;
      next.admitted = true;
      next.admit();
    }
  };

  // the OpenAPI document says what the server does: reads may answer 429 and 503, money 503
  app.addHook('onRoute', (route) => {
    const methods = [route.method].flat();
    const read = methods.some((m) => m === 'GET' || m === 'HEAD') && route.url.startsWith('/v1/');
    const money = methods.includes('POST') && MONEY_PATH.test(route.url);
    if (!read && !money) return;
    route.schema ??= {};
    const response = (route.schema.response ??= {}) as Record<number, unknown>;
    for (const [status, ref] of Object.entries(problems(...(read ? [429, 503] : [503])))) response[Number(status)] ??= ref;
  });

  app.addHook('onRequest', (req, reply, done) => {
    const money = isMoney(req.method, req.url);
    if (!money && isRead(req.method, req.url)) {
      if (inFlight >= limits.shedReadsAtInFlight) {
        shed.inc({ class: 'read', reason: 'busy' });
        reply.code(503).header('retry-after', '1').type('application/problem+json').send(busy);
        return;
      }
      const token = bucket.take();
      if (!token.ok) {
        shed.inc({ class: 'read', reason: 'rate' });
        const wait = String(Math.max(1, Math.ceil(token.waitMs / 1000)));
        reply
          .code(429)
          .headers({ 'retry-after': wait, 'ratelimit-limit': String(limits.readsPerSecond), 'ratelimit-remaining': '0', 'ratelimit-reset': wait })
          .type('application/problem+json')
          .send(limited);
        return;
      }
    }
    let queued: Waiting | undefined;
    if (money && moneyActive >= limits.moneyConcurrency) {
      if (waiting.length >= limits.moneyQueueMax) {
        shed.inc({ class: 'money', reason: 'queue_full' });
        reply.code(503).header('retry-after', '1').type('application/problem+json').send(full);
        return;
      }
      queued = { admit: done, admitted: false, gone: false };
      waiting.push(queued);
    } else if (money) {
      moneyActive++;
    }
    inFlight++;
    // counted down once, whether the request was answered or its client went away
    let counted = true;
    const release = () => {
      if (!counted) return;
      counted = false;
      inFlight--;
      if (!money) return;
      if (queued && !queued.admitted) queued.gone = true;
      else {
        moneyActive--;
        admitNext();
      }
    };
    reply.raw.once('finish', release);
    reply.raw.once('close', release);
    if (!queued) done();
  });
}
