/**
 * The api side of the split fraud role over real HTTP: how checks are batched on the wire. The
 * scorer behind the server is a stand-in that answers from the request itself; what is under
 * test is the transport (the scoring is tested against Redis and PostgreSQL elsewhere).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../config/index.js';
import { createLogger } from '../observability/logger.js';
import type { FailPolicy, Scorer } from './client.js';
import http from 'node:http';
import { createRemoteScorer, fraudKey, FraudUnavailable, REMOTE_BATCHES_IN_FLIGHT, startFraudServer } from './remote.js';
import type { FraudRequest } from './types.js';

const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', FRAUD_PORT: '0', FRAUD_BATCH_MAX: '100' });
const policy = (): FailPolicy => ({ budgetMs: 1000, approveBelowMinor: 0n, above: 'review', rulesVersion: 'test' });
const request = (i: number): FraudRequest => ({ requestId: `r${i}`, kind: 'transfer', userId: `usr_${i}`, amountMinor: BigInt(100 + i), currency: 'USD', counterpartyId: 'usr_x', at: new Date() });

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!();
});

/** a fraud role whose score is the amount / 10,000, slow enough that batches overlap; counts its HTTP requests */
async function fraudRole() {
  const completed: string[] = [];
  const scorer: Scorer = {
    score: async (r) => {
      await new Promise((res) => setTimeout(res, 20));
      return { outcome: 'approve', score: Number(r.amountMinor) / 10_000, reasons: [], rulesVersion: 'test', modelVersion: 'test' };
    },
    completed: async (r) => void completed.push(r.requestId),
    policy,
  };
  const server = await startFraudServer(scorer, config, createLogger('silent'));
  let requests = 0;
  server.app.server.on('request', () => requests++);
  const remote = createRemoteScorer(server.url, config, policy);
  closers.push(() => server.app.close(), () => remote.close!());
  return { remote, requests: () => requests, completed };
}

describe('the remote fraud scorer', () => {
  it('sends a burst of checks as batches of FRAUD_BATCH_MAX, at most two requests out at a time, each check getting its own decision', async () => {
    const { remote, requests } = await fraudRole();
    const decisions = await Promise.all(Array.from({ length: 450 }, (_, i) => remote.score(request(i))));
    expect(decisions.map((d) => d.score)).toEqual(Array.from({ length: 450 }, (_, i) => (100 + i) / 10_000));
    expect(REMOTE_BATCHES_IN_FLIGHT).toBe(2);
    expect(requests()).toBe(5); // 100 + 100 out, then 100 + 100 as those answer, then the last 50
  });

  it('gathers the checks that arrive while two batches are out into the next one', async () => {
    const { remote, requests } = await fraudRole();
    const first = [remote.score(request(0)), remote.score(request(1))];
    await new Promise((res) => setImmediate(res)); // the first tick's batch is out
    const second = [remote.score(request(2))];
    await new Promise((res) => setImmediate(res)); // and the second's
    // three more ticks of checks while both are out: they wait, and go as one batch
    const waiting: Promise<unknown>[] = [];
    for (let tick = 0; tick < 3; tick++) {
      waiting.push(...Array.from({ length: 10 }, (_, i) => remote.score(request(3 + tick * 10 + i))));
      await new Promise((res) => setImmediate(res));
    }
    await Promise.all([...first, ...second, ...waiting]);
    expect(requests()).toBe(3);
  });

  it('reports completed requests of one tick in one request', async () => {
    const { remote, requests, completed } = await fraudRole();
    await Promise.all(Array.from({ length: 40 }, (_, i) => remote.completed(request(i))));
    expect(completed).toHaveLength(40);
    expect(requests()).toBe(1);
  });

  it('fails the checks, and nothing else, when the endpoint answers 200 with something other than decisions', async () => {
    for (const body of ['{}', 'null', '{"decisions":[null,{"outcome":"maybe"}]}', '{"decisions":"none"}']) {
      const impostor = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(body));
      await new Promise<void>((ok) => impostor.listen(0, '127.0.0.1', ok));
      closers.push(() => new Promise((ok) => impostor.close(ok)));
      const remote = createRemoteScorer(`http://127.0.0.1:${(impostor.address() as { port: number }).port}`, config, policy);
      closers.push(() => remote.close!());
      const outcomes = await Promise.allSettled([remote.score(request(1)), remote.score(request(2))]);
      expect(outcomes.map((o) => o.status), body).toEqual(['rejected', 'rejected']);
      expect(outcomes.map((o) => (o as PromiseRejectedResult).reason), body).toEqual([expect.any(FraudUnavailable), expect.any(FraudUnavailable)]);
    }
  });

  it('refuses a batch of completed requests with a malformed one whole, and records none of it', async () => {
    const completed: string[] = [];
    const server = await startFraudServer({ score: async () => { throw new Error('unused'); }, completed: async (r) => void completed.push(r.requestId), policy }, config, createLogger('silent'));
    closers.push(() => server.app.close());
    const res = await server.app.inject({ method: 'POST', url: '/internal/fraud/completed', headers: { 'x-fraud-key': fraudKey(config) }, payload: { requests: [{ requestId: 'ok', kind: 'transfer', userId: 'usr_1', amountMinor: '100', currency: 'USD', at: new Date().toISOString() }, { nonsense: true }] } });
    expect(res.statusCode).toBe(400);
    expect(completed).toEqual([]);
  });
});
