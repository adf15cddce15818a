/**
 * The fraud role as its own process: the same scorer behind POST /internal/fraud/score and
 * /internal/fraud/completed on FRAUD_PORT, and the client side that the api role uses when
 * FRAUD_URL is set. Checks go as batches (up to FRAUD_BATCH_MAX), at most
 * REMOTE_BATCHES_IN_FLIGHT at a time per api process, so 10,000 checks/s are a few hundred HTTP
 * requests; completed() calls go one request per tick. The api keeps the fail
 * policy locally (it reads the same rules file): when the fraud role is down or late, the policy
 * decides without it. The calls go over node:http with a keep-alive agent of at most
 * REMOTE_SOCKETS connections rather than fetch(), whose WHATWG Request/Response/stream objects
 * and AbortSignal timer (alive for the whole timeout) cost more per call and were the largest
 * items of the api side's profile at 10,000 checks/s.
 *
 * The internal endpoints want `x-fraud-key`, derived from JWT_SECRET (no extra secret to
 * provision); keep them on the private network anyway.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Config } from '../config/index.js';
import type { Logger } from '../observability/logger.js';
import type { FailPolicy, Scorer } from './client.js';
import type { FraudDecision, FraudKind, FraudRequest } from './types.js';

export function fraudKey(config: Config): string {
  return createHash('sha256').update(`wallet-fraud:${config.jwtSecret}`).digest('hex');
}

interface WireRequest {
  requestId: string;
  kind: FraudKind;
  userId: string;
  amountMinor: string;
  currency: string;
  counterpartyId?: string;
  cardCountry?: string;
  ipCountry?: string;
  at: string;
}

const toWire = (r: FraudRequest): WireRequest => ({ ...r, amountMinor: r.amountMinor.toString(), at: r.at.toISOString() });
const KINDS = new Set(['topup', 'transfer', 'payment']);
function fromWire(w: unknown): FraudRequest {
  const r = w as WireRequest;
  if (typeof r !== 'object' || r === null || typeof r.requestId !== 'string' || !KINDS.has(r.kind) || typeof r.userId !== 'string' || typeof r.currency !== 'string' || !/^\d{1,19}$/.test(String(r.amountMinor)) || Number.isNaN(Date.parse(r.at))) {
    throw new Error('malformed fraud request');
  }
  return { ...r, amountMinor: BigInt(r.amountMinor), at: new Date(r.at) };
}

/** the fraud role's HTTP listener */
export async function startFraudServer(scorer: Scorer, config: Config, log: Logger): Promise<{ app: FastifyInstance; url: string }> {
  const key = Buffer.from(fraudKey(config));
  const app = Fastify({ loggerInstance: log, bodyLimit: 4 * 1024 * 1024 });
  app.addHook('onRequest', async (req, reply) => {
    const got = Buffer.from(String(req.headers['x-fraud-key'] ?? ''));
    if (got.length !== key.length || !timingSafeEqual(got, key)) return reply.code(401).send({ error: 'x-fraud-key required' });
  });
  app.post('/internal/fraud/score', async (req, reply) => {
    const list = (req.body as { requests?: unknown[] })?.requests;
    if (!Array.isArray(list) || list.length > config.fraudBatchMax) return reply.code(400).send({ error: `requests: an array of at most ${config.fraudBatchMax}` });
    let reqs: FraudRequest[];
    try {
      reqs = list.map(fromWire);
    } catch (err) {
      return reply.code(400).send({ error: (err as Error).message });
    }
    // one request's failure (an unknown user, a store error) is that request's, not the batch's
    const settled = await Promise.allSettled(reqs.map((r) => scorer.score(r)));
    return { decisions: settled.map((x) => (x.status === 'fulfilled' ? x.value : { error: String((x.reason as Error)?.message ?? x.reason).slice(0, 300) })) };
  });
  app.post('/internal/fraud/completed', async (req, reply) => {
    const list = (req.body as { requests?: unknown[] })?.requests;
    if (!Array.isArray(list) || list.length > config.fraudBatchMax) return reply.code(400).send({ error: 'bad batch' });
    let reqs: FraudRequest[];
    try {
      reqs = list.map(fromWire);
    } catch (err) {
      return reply.code(400).send({ error: (err as Error).message });
    }
    await Promise.all(reqs.map((r) => scorer.completed(r)));
    return reply.code(204).send();
  });
  app.get('/healthz', async () => ({ status: 'ok' }));
  await app.listen({ port: config.fraudPort, host: config.host ?? (config.nodeEnv === 'production' ? '0.0.0.0' : '127.0.0.1') });
  const port = (app.server.address() as { port: number }).port;
  return { app: app as unknown as FastifyInstance, url: `http://127.0.0.1:${port}` };
}

export class FraudUnavailable extends Error {
  override name = 'FraudUnavailable';
}

/** connections from one api process to the fraud role */
export const REMOTE_SOCKETS = 8;
/** batch requests one api process has out at a time (see flush) */
export const REMOTE_BATCHES_IN_FLIGHT = 2;
const OUTCOMES = new Set<unknown>(['approve', 'review', 'decline']);
/** checks waiting for a batch slot; beyond it a check is refused at once (the fail policy decides) */
export const REMOTE_WAITING_MAX = 10_000;

/** the api side of the split: a Scorer that calls the fraud role, batching per tick */
export function createRemoteScorer(url: string, config: Config, policy: () => FailPolicy): Scorer {
  const key = fraudKey(config);
  const base = new URL(url);
  const transport = base.protocol === 'https:' ? https : http;
  const agent = new transport.Agent({ keepAlive: true, maxSockets: REMOTE_SOCKETS });
  const endpoint = new URL('/internal/fraud/score', base);
  const completedEndpoint = new URL('/internal/fraud/completed', base);
  let waiting: { req: FraudRequest; resolve(d: FraudDecision): void; reject(e: unknown): void }[] = [];
  let scheduled = false;

  /** POSTs the requests; resolves with the answer's body, or rejects with FraudUnavailable */
  const post = (to: URL, requests: WireRequest[]): Promise<string> =>
    new Promise<string>((resolve, reject) => {
      const body = JSON.stringify({ requests });
      const fail = (why: string) => reject(new FraudUnavailable(`the fraud role at ${url} does not answer: ${why}`));
      const req = transport.request(to, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-fraud-key': key } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => fail(err.message));
        res.on('end', () => {
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300) resolve(text);
          else reject(new FraudUnavailable(`the fraud role answered ${res.statusCode}: ${text.slice(0, 200)}`));
        });
      });
      // the caller's budget answers the request long before this; it only frees the socket
      const timer = setTimeout(() => req.destroy(new Error('timed out')), Math.max(1000, policy().budgetMs * 4));
      req.on('error', (err) => {
        clearTimeout(timer);
        fail(err.message);
      });
      req.end(body);
    });

  let finished: { req: FraudRequest; resolve(): void; reject(e: unknown): void }[] = [];
  const flushCompleted = () => {
    const all = finished;
    finished = [];
    for (let i = 0; i < all.length; i += config.fraudBatchMax) {
      const part = all.slice(i, i + config.fraudBatchMax);
      // inside the promise: a request that cannot be written rejects its callers, it does not throw out of a setImmediate
      (async () => post(completedEndpoint, part.map((w) => toWire(w.req))))().then(
        () => part.forEach((w) => w.resolve()),
        (err) => part.forEach((w) => w.reject(err)),
      );
    }
  };

  let inFlight = 0;
  const schedule = () => {
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  // At most REMOTE_BATCHES_IN_FLIGHT requests out at a time; checks that arrive meanwhile wait
  // and go out together when one answers (group commit, as the ledger does). At a low rate every
  // check goes at once; under load the batches grow, and the per-request cost (HTTP, JSON, a
  // Redis pipeline) is paid once per batch instead of once per tick.
  const flush = () => {
    scheduled = false;
    while (waiting.length && inFlight < REMOTE_BATCHES_IN_FLIGHT) {
      const part = waiting.splice(0, config.fraudBatchMax);
      inFlight++;
      // Every failure lands in the one catch, the answer's shape checked before use: an endpoint
      // that answers 200 with other JSON (a proxy, the wrong service) fails these checks (the
      // fail policy decides) instead of throwing an unhandled rejection out of this chain,
      // which would end the process.
      (async () => JSON.parse(await post(endpoint, part.map((w) => toWire(w.req)))) as unknown)()
        .then((answer) => {
          const decisions = (answer as { decisions?: unknown } | null)?.decisions;
          if (!Array.isArray(decisions)) throw new FraudUnavailable('the fraud role answered without decisions');
          part.forEach((w, j) => {
            const d = decisions[j] as FraudDecision | { error: unknown } | null | undefined;
            if (d === null || typeof d !== 'object') w.reject(new FraudUnavailable('short answer'));
            else if ('error' in d) w.reject(new Error(`fraud role: ${String(d.error)}`));
            else if (!OUTCOMES.has(d.outcome) || typeof d.score !== 'number') w.reject(new FraudUnavailable('the fraud role answered a malformed decision'));
            else w.resolve(d);
          });
        })
        .catch((err: unknown) => part.forEach((w) => w.reject(err)))
        .finally(() => {
          inFlight--;
          if (waiting.length) schedule();
        });
    }
  };

  return {
    score(req) {
      // a fraud role that has fallen this far behind is as good as down: the fail policy decides now
      if (waiting.length >= REMOTE_WAITING_MAX) return Promise.reject(new FraudUnavailable(`${waiting.length} checks already wait for the fraud role`));
      return new Promise<FraudDecision>((resolve, reject) => {
        waiting.push({ req, resolve, reject });
        schedule();
      });
    },
    completed(req) {
      // after-the-fact bookkeeping, one request per tick for all of them
      if (finished.length >= REMOTE_WAITING_MAX) return Promise.reject(new FraudUnavailable(`${finished.length} completed requests already wait for the fraud role`));
      return new Promise<void>((resolve, reject) => {
        finished.push({ req, resolve, reject });
        if (finished.length === 1) setImmediate(flushCompleted);
      });
    },
    policy,
    async close() {
      agent.destroy();
    },
  };
}
