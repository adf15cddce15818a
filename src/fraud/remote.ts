/**
 * The fraud role as its own process: the same scorer behind POST /internal/fraud/score and
 * /internal/fraud/completed on FRAUD_PORT, and the client side that the api role uses when
 * FRAUD_URL is set. Concurrent checks are gathered per tick into one request (up to
 * FRAUD_BATCH_MAX), so 10,000 checks/s are a few hundred HTTP requests. The api keeps the fail
 * policy locally (it reads the same rules file): when the fraud role is down or late, the policy
 * decides without it.
 *
 * The internal endpoints want `x-fraud-key`, derived from JWT_SECRET (no extra secret to
 * provision); keep them on the private network anyway.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
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
    await Promise.all(list.map((w) => scorer.completed(fromWire(w))));
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

/** the api side of the split: a Scorer that calls the fraud role, batching per tick */
export function createRemoteScorer(url: string, config: Config, policy: () => FailPolicy): Scorer {
  const key = fraudKey(config);
  const endpoint = new URL('/internal/fraud/score', url).toString();
  const completedEndpoint = new URL('/internal/fraud/completed', url).toString();
  let waiting: { req: FraudRequest; resolve(d: FraudDecision): void; reject(e: unknown): void }[] = [];
  let scheduled = false;

  const post = async (to: string, requests: WireRequest[]): Promise<Response> => {
    let res: Response;
    try {
      res = await fetch(to, { method: 'POST', headers: { 'content-type': 'application/json', 'x-fraud-key': key }, body: JSON.stringify({ requests }), signal: AbortSignal.timeout(Math.max(1000, policy().budgetMs * 4)) });
    } catch (err) {
      throw new FraudUnavailable(`the fraud role at ${url} does not answer: ${(err as Error).message}`);
    }
    if (!res.ok) throw new FraudUnavailable(`the fraud role answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
    return res;
  };

  const flush = () => {
    scheduled = false;
    const all = waiting;
    waiting = [];
    for (let i = 0; i < all.length; i += config.fraudBatchMax) {
      const part = all.slice(i, i + config.fraudBatchMax);
      post(endpoint, part.map((w) => toWire(w.req)))
        .then((res) => res.json() as Promise<{ decisions: (FraudDecision | { error: string })[] }>)
        .then(
          ({ decisions }) =>
            part.forEach((w, j) => {
              const d = decisions[j];
              if (!d) w.reject(new FraudUnavailable('short answer'));
              else if ('error' in d) w.reject(new Error(`fraud role: ${d.error}`));
              else w.resolve(d);
            }),
          (err) => part.forEach((w) => w.reject(err)),
        );
    }
  };

  return {
    score(req) {
      return new Promise<FraudDecision>((resolve, reject) => {
        waiting.push({ req, resolve, reject });
        if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      });
    },
    async completed(req) {
      await post(completedEndpoint, [toWire(req)]);
    },
    policy,
  };
}
