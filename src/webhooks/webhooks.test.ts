import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPlatform, fund, moneyPost, signUp, type TestPlatform, type TestUser } from '../test-support/platform.js';
import { PRIORITIES, type BusEvent, type JobHandler, type Topic } from '../events/types.js';
import { newId, shardOf } from '../shared/ids.js';
import { webhookConsumers } from './consumer.js';
import { retryDelayMs, sweepWebhookDeliveries, webhookJobHandlers } from './delivery.js';
import { verifyWebhookSignature, signatureHeader } from './signing.js';
import { checkEndpointUrl } from './addresses.js';
import { postWebhook } from './transport.js';

let t: TestPlatform;
let handlers: Record<string, JobHandler>;
const consumer = () => webhookConsumers(t.platform)[0]!;

beforeAll(async () => {
  t = await createTestPlatform({ WEBHOOK_RETRY_BASE_MS: '5', WEBHOOK_RETRY_MAX_DELAY_MS: '20', WEBHOOK_TIMEOUT_MS: '2000', WEBHOOK_MAX_PER_USER: '3' });
  handlers = webhookJobHandlers(t.platform);
  const spec = consumer();
  t.platform.bus.subscribe(spec.group, spec.topic, spec.handler, spec.options);
});
afterAll(() => t?.close());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Receiver {
  url: string;
  requests: { headers: IncomingHttpHeaders; body: string; answered: number }[];
  /** the status the n-th request (1-based) is answered with */
  answer: (n: number) => number;
  close(): Promise<void>;
}

/** a local HTTP server standing in for the user's webhook endpoint */
async function receiver(answer: (n: number) => number): Promise<Receiver> {
  const r: Receiver = { url: '', requests: [], answer, close: async () => undefined };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const answered = r.answer(r.requests.length + 1);
      r.requests.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), answered });
      res.statusCode = answered;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
  r.close = () => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(() => resolve()));
  };
  return r;
}

/** runs queued jobs (every priority, as the workers would) until `done` holds */
async function drain(done: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let ran = 0;
    for (const priority of PRIORITIES) {
      for (const leased of await t.platform.jobs.take(priority, 10)) {
        ran++;
        await handlers[leased.job.kind]!(leased);
      }
    }
    if (await done()) return;
    if (Date.now() > deadline) throw new Error('drain: timed out');
    if (!ran) await sleep(5);
  }
}

/** drains for a while, for checks that nothing more happens */
const drainFor = (ms: number) => {
  const until = Date.now() + ms;
  return drain(() => Date.now() >= until);
};

async function register(user: TestUser, url: string, eventTypes: string[] = ['*']): Promise<{ id: string; secret: string }> {
  const res = await t.app.inject({ method: 'POST', url: '/v1/webhooks', headers: user.auth, payload: { url, eventTypes } });
  expect(res.statusCode).toBe(201);
  return res.json();
}

const deliveries = async (user: TestUser, endpointId: string, query = '') => {
  const res = await t.app.inject({ method: 'GET', url: `/v1/webhooks/${endpointId}/deliveries${query}`, headers: user.auth });
  expect(res.statusCode).toBe(200);
  return res.json() as { deliveries: Record<string, unknown>[]; nextCursor?: string };
};

/** a top-up event for the user, as the relay publishes it */
function topupEvent(user: TestUser, amount = 500): BusEvent {
  const shard = shardOf(user.id);
  const at = new Date().toISOString();
  return {
    id: newId('evt', shard),
    topic: 'transaction-events',
    key: user.id,
    type: 'topup.completed',
    shard,
    at,
    payload: { id: newId('top', shard), status: 'completed', amount, currency: 'USD', createdAt: at, walletId: newId('wal', shard) },
  };
}

/** the outbox row of a money movement, mapped to a bus event the way the relay maps it */
async function outboxEvent(type: string, entityId: string): Promise<BusEvent> {
  const [r] = await t.platform.db.forShard(shardOf(entityId)).sql<{ event_id: string; topic: string; partition_key: string; shard: number; type: string; payload: Record<string, unknown>; created_at: Date }[]>`
    select event_id, topic, partition_key, shard, type, payload, created_at from outbox where type = ${type} and payload->>'id' = ${entityId}`;
  if (!r) throw new Error(`no ${type} event for ${entityId}`);
  return { id: r.event_id, topic: r.topic as Topic, key: r.partition_key, type: r.type, shard: r.shard, at: r.created_at.toISOString(), payload: r.payload };
}

describe('webhook endpoints', () => {
  it('registers an endpoint and shows its signing secret only in the answer to the registration', async () => {
    const user = await signUp(t.app);
    const res = await t.app.inject({ method: 'POST', url: '/v1/webhooks', headers: user.auth, payload: { url: 'https://hooks.example.com/wallet', eventTypes: ['transfer.completed', 'payment.captured'], description: 'books' } });
    expect(res.statusCode).toBe(201);
    const created = res.json();
    expect(created).toMatchObject({ url: 'https://hooks.example.com/wallet', eventTypes: ['transfer.completed', 'payment.captured'], description: 'books' });
    expect(created.id).toMatch(/^whk_/);
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);

    const list = await t.app.inject({ method: 'GET', url: '/v1/webhooks', headers: user.auth });
    expect(list.statusCode).toBe(200);
    const { secret: _secret, ...shown } = created;
    expect(list.json()).toEqual({ webhooks: [shown] });
    const one = await t.app.inject({ method: 'GET', url: `/v1/webhooks/${created.id}`, headers: user.auth });
    expect(one.json()).toEqual(shown);
    expect(one.body).not.toContain('whsec_');
  });

  it('stores the signing secret encrypted', async () => {
    const user = await signUp(t.app);
    const { id, secret } = await register(user, 'https://hooks.example.com/a');
    const [row] = await t.platform.db.forShard(shardOf(id)).sql<{ secret_sealed: Buffer; secret_kek_id: string }[]>`select secret_sealed, secret_kek_id from webhook_endpoints where id = ${id}`;
    expect(row!.secret_kek_id).toBe('dev1');
    expect(row!.secret_sealed.toString('latin1')).not.toContain(secret.slice(6, 20));
  });

  it('deletes an endpoint', async () => {
    const user = await signUp(t.app);
    const { id } = await register(user, 'https://hooks.example.com/a');
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/webhooks/${id}`, headers: user.auth })).statusCode).toBe(204);
    expect((await t.app.inject({ method: 'GET', url: `/v1/webhooks/${id}`, headers: user.auth })).statusCode).toBe(404);
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/webhooks/${id}`, headers: user.auth })).statusCode).toBe(404);
    expect((await t.app.inject({ method: 'GET', url: '/v1/webhooks', headers: user.auth })).json()).toEqual({ webhooks: [] });
  });

  it.each([
    ['a non-http URL', { url: 'ftp://hooks.example.com/x', eventTypes: ['*'] }],
    ['a relative URL', { url: '/hooks', eventTypes: ['*'] }],
    ['credentials in the URL', { url: 'https://user:pw@hooks.example.com/x', eventTypes: ['*'] }],
    ['a URL over 2048 characters', { url: `https://hooks.example.com/${'a'.repeat(2048)}`, eventTypes: ['*'] }],
    ['an unknown event type', { url: 'https://hooks.example.com/x', eventTypes: ['transfer.sent'] }],
    ['no event types', { url: 'https://hooks.example.com/x', eventTypes: [] }],
    ['a repeated event type', { url: 'https://hooks.example.com/x', eventTypes: ['topup.completed', 'topup.completed'] }],
    ['"*" with other types', { url: 'https://hooks.example.com/x', eventTypes: ['*', 'topup.completed'] }],
    ['an unknown field', { url: 'https://hooks.example.com/x', eventTypes: ['*'], secret: 'mine' }],
  ])('rejects %s with 400 validation_failed', async (_what, payload) => {
    const user = await signUp(t.app);
    const res = await t.app.inject({ method: 'POST', url: '/v1/webhooks', headers: user.auth, payload });
    expect(res.statusCode).toBe(400);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.json().code).toBe('validation_failed');
  });

  it('refuses more endpoints than WEBHOOK_MAX_PER_USER with 422 limit_exceeded', async () => {
    const user = await signUp(t.app);
    for (let i = 0; i < 3; i++) await register(user, `https://hooks.example.com/${i}`);
    const res = await t.app.inject({ method: 'POST', url: '/v1/webhooks', headers: user.auth, payload: { url: 'https://hooks.example.com/4', eventTypes: ['*'] } });
    expect(res.statusCode).toBe(422);
    expect(res.json().code).toBe('limit_exceeded');
  });

  it("answers 404 for another user's endpoint and its deliveries", async () => {
    const [owner, other] = [await signUp(t.app), await signUp(t.app)];
    const { id } = await register(owner, 'https://hooks.example.com/a');
    const deliveryId = newId('dlv', shardOf(owner.id));
    for (const [method, url] of [
      ['GET', `/v1/webhooks/${id}`],
      ['DELETE', `/v1/webhooks/${id}`],
      ['GET', `/v1/webhooks/${id}/deliveries`],
      ['POST', `/v1/webhooks/${id}/deliveries/${deliveryId}/retry`],
    ] as const) {
      const res = await t.app.inject({ method, url, headers: other.auth });
      expect(res.statusCode, `${method} ${url}`).toBe(404);
      expect(res.json().code).toBe('not_found');
    }
    expect((await t.app.inject({ method: 'GET', url: `/v1/webhooks/${id}`, headers: owner.auth })).statusCode).toBe(200);
  });

  it('requires a token', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/v1/webhooks' });
    expect(res.statusCode).toBe(401);
  });

  it('describes the webhook endpoints in the OpenAPI document', async () => {
    const doc = (await t.app.inject({ method: 'GET', url: '/docs/json' })).json();
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/webhooks', '/v1/webhooks/{id}', '/v1/webhooks/{id}/deliveries', '/v1/webhooks/{id}/deliveries/{deliveryId}/retry']));
  });
});

describe('webhook deliveries', () => {
  it('delivers a transfer once after failed attempts, signed with the endpoint secret', async () => {
    const [sender, recipient] = [await signUp(t.app), await signUp(t.app)];
    await fund(t.app, sender, 10_000);
    const server = await receiver((n) => (n <= 3 ? 500 : 200));
    try {
      const { id: endpointId, secret } = await register(recipient, server.url, ['transfer.completed']);
      const transfer = await moneyPost(t.app, sender, '/v1/transfers', { to: recipient.id, amount: 2_500, currency: 'USD', note: 'rent' });
      expect(transfer.statusCode).toBe(201);
      const event = await outboxEvent('transfer.completed', transfer.json().id);
      await t.platform.bus.publish([event]);

      await drain(() => server.requests.some((r) => r.answered === 200));
      await drainFor(100);
      expect(await sweepWebhookDeliveries(t.platform, t.platform.db.forShard(shardOf(recipient.id)), new Date(Date.now() + 3_600_000))).toBe(0);
      expect(server.requests.map((r) => r.answered)).toEqual([500, 500, 500, 200]);

      const ok = server.requests[3]!;
      expect(verifyWebhookSignature(secret, ok.headers['wallet-signature'] as string, ok.body)).toBe(true);
      expect(ok.headers).toMatchObject({ 'content-type': 'application/json', 'wallet-event-id': event.id, 'wallet-event-type': 'transfer.completed' });
      expect(ok.headers['user-agent']).toMatch(/^wallet-platform-webhooks\//);
      // every attempt sends the same bytes
      expect(new Set(server.requests.map((r) => r.body)).size).toBe(1);
      const body = JSON.parse(ok.body);
      expect(body).toEqual({ id: event.id, type: 'transfer.completed', createdAt: event.at, data: { id: transfer.json().id, status: 'completed', from: sender.id, to: recipient.id, amount: 2_500, currency: 'USD', note: 'rent', createdAt: transfer.json().createdAt } });

      const { deliveries: list } = await deliveries(recipient, endpointId);
      expect(list).toHaveLength(1);
      expect(list[0]).toMatchObject({ id: ok.headers['wallet-delivery-id'], eventId: event.id, eventType: 'transfer.completed', status: 'delivered', attempts: 4, lastStatusCode: 200 });
      expect(list[0]!.deliveredAt).toBeDefined();
      expect(list[0]!.nextAttemptAt).toBeUndefined();
    } finally {
      await server.close();
    }
  });

  it('sends each party only the event types its endpoints subscribe to', async () => {
    const [sender, recipient] = [await signUp(t.app), await signUp(t.app)];
    await fund(t.app, sender, 10_000);
    const [toSender, toRecipient] = [await receiver(() => 200), await receiver(() => 200)];
    try {
      await register(sender, toSender.url, ['payment.captured']);
      await register(recipient, toRecipient.url, ['*']);
      const transfer = await moneyPost(t.app, sender, '/v1/transfers', { to: recipient.id, amount: 100, currency: 'USD' });
      await t.platform.bus.publish([await outboxEvent('transfer.completed', transfer.json().id)]);
      await drain(() => toRecipient.requests.length === 1);
      await drainFor(50);
      expect(toSender.requests).toHaveLength(0);
      expect(toRecipient.requests).toHaveLength(1);
    } finally {
      await Promise.all([toSender.close(), toRecipient.close()]);
    }
  });

  it('creates one delivery when the consumer gets the same event twice', async () => {
    const user = await signUp(t.app);
    const server = await receiver(() => 200);
    try {
      const { id: endpointId } = await register(user, server.url);
      const event = topupEvent(user);
      await consumer().handler(event, { attempt: 1, group: 'webhooks' });
      await consumer().handler(event, { attempt: 2, group: 'webhooks' });
      await drain(() => server.requests.length >= 1);
      await drainFor(50);
      expect(server.requests).toHaveLength(1);
      expect((await deliveries(user, endpointId)).deliveries).toHaveLength(1);
    } finally {
      await server.close();
    }
  });

  it('lists deliveries newest first, page by page, and by status', async () => {
    const user = await signUp(t.app);
    const server = await receiver(() => 200);
    try {
      const { id: endpointId } = await register(user, server.url, ['topup.completed']);
      const events = [topupEvent(user, 1), topupEvent(user, 2), topupEvent(user, 3)];
      for (const e of events) await t.platform.bus.publish([e]);
      await drain(() => server.requests.length === 3);

      const first = await deliveries(user, endpointId, '?limit=2');
      expect(first.deliveries.map((d) => d.eventId)).toEqual([events[2]!.id, events[1]!.id]);
      expect(first.nextCursor).toBeDefined();
      const second = await deliveries(user, endpointId, `?limit=2&cursor=${first.nextCursor}`);
      expect(second.deliveries.map((d) => d.eventId)).toEqual([events[0]!.id]);
      expect(second.nextCursor).toBeUndefined();
      expect((await deliveries(user, endpointId, '?status=delivered')).deliveries).toHaveLength(3);
      expect((await deliveries(user, endpointId, '?status=dead')).deliveries).toHaveLength(0);
      const bad = await t.app.inject({ method: 'GET', url: `/v1/webhooks/${endpointId}/deliveries?limit=1000`, headers: user.auth });
      expect(bad.statusCode).toBe(400);
    } finally {
      await server.close();
    }
  });

  it('gives up after the retry window: the delivery is dead, listed, and a manual retry delivers it', async () => {
    const user = await signUp(t.app);
    let healthy = false;
    const server = await receiver(() => (healthy ? 204 : 503));
    try {
      const { id: endpointId, secret } = await register(user, server.url);
      await t.platform.bus.publish([topupEvent(user)]);
      // the window started a day and an hour ago: the first failure is the last
      await t.platform.db.forShard(shardOf(user.id)).sql`update webhook_deliveries set window_started_at = now() - interval '25 hours', created_at = now() - interval '25 hours' where endpoint_id = ${endpointId}`;
      await drain(async () => (await deliveries(user, endpointId, '?status=dead')).deliveries.length === 1);
      expect(server.requests).toHaveLength(1);

      const [dead] = (await deliveries(user, endpointId, '?status=dead')).deliveries;
      expect(dead).toMatchObject({ status: 'dead', attempts: 1, lastStatusCode: 503, lastError: 'HTTP 503 Service Unavailable' });

      healthy = true;
      const retry = await t.app.inject({ method: 'POST', url: `/v1/webhooks/${endpointId}/deliveries/${dead!.id}/retry`, headers: user.auth });
      expect(retry.statusCode).toBe(202);
      expect(retry.json()).toMatchObject({ id: dead!.id, status: 'pending' });
      const again = await t.app.inject({ method: 'POST', url: `/v1/webhooks/${endpointId}/deliveries/${dead!.id}/retry`, headers: user.auth });
      expect(again.statusCode).toBe(409);
      expect(again.json().code).toBe('conflict');

      await drain(() => server.requests.length === 2);
      await drainFor(50);
      expect(server.requests).toHaveLength(2);
      expect(verifyWebhookSignature(secret, server.requests[1]!.headers['wallet-signature'] as string, server.requests[1]!.body)).toBe(true);
      const [done] = (await deliveries(user, endpointId)).deliveries;
      expect(done).toMatchObject({ id: dead!.id, status: 'delivered', attempts: 2, lastStatusCode: 204 });
      expect(done!.lastError).toBeUndefined();
    } finally {
      await server.close();
    }
  });

  it('answers 404 to a retry of an unknown delivery', async () => {
    const user = await signUp(t.app);
    const { id } = await register(user, 'https://hooks.example.com/a');
    const res = await t.app.inject({ method: 'POST', url: `/v1/webhooks/${id}/deliveries/${newId('dlv', shardOf(user.id))}/retry`, headers: user.auth });
    expect(res.statusCode).toBe(404);
  });

  it('the sweep re-queues a pending delivery whose job was lost', async () => {
    const user = await signUp(t.app);
    const server = await receiver(() => 200);
    try {
      const { id: endpointId } = await register(user, server.url);
      await t.platform.bus.publish([topupEvent(user)]);
      // the queued job is lost
      for (const leased of await t.platform.jobs.take('high', 100)) await leased.ack();
      const cluster = t.platform.db.forShard(shardOf(user.id));
      expect(await sweepWebhookDeliveries(t.platform, cluster)).toBe(0); // not overdue yet
      await cluster.sql`update webhook_deliveries set next_attempt_at = now() - interval '2 minutes' where endpoint_id = ${endpointId}`;
      expect(await sweepWebhookDeliveries(t.platform, cluster)).toBe(1);
      await drain(() => server.requests.length === 1);
      expect((await deliveries(user, endpointId)).deliveries[0]).toMatchObject({ status: 'delivered', attempts: 1 });
    } finally {
      await server.close();
    }
  });

  it('sends nothing for an endpoint deleted before its delivery ran', async () => {
    const user = await signUp(t.app);
    const server = await receiver(() => 200);
    try {
      const { id } = await register(user, server.url);
      await t.platform.bus.publish([topupEvent(user)]);
      expect((await t.app.inject({ method: 'DELETE', url: `/v1/webhooks/${id}`, headers: user.auth })).statusCode).toBe(204);
      await drainFor(50);
      expect(server.requests).toHaveLength(0);
    } finally {
      await server.close();
    }
  });

  it('does not follow redirects', async () => {
    const target = await receiver(() => 200);
    const redirecting = await receiver(() => 302);
    try {
      const result = await postWebhook(redirecting.url, {}, '{}', { timeoutMs: 2000, allowPrivate: true });
      expect(result).toMatchObject({ ok: false, statusCode: 302 });
      expect(target.requests).toHaveLength(0);
    } finally {
      await Promise.all([target.close(), redirecting.close()]);
    }
  });
});

describe('signatures', () => {
  const secret = 'whsec_test';
  const body = '{"id":"evt_1","type":"topup.completed"}';
  const now = 1_750_000_000;

  it('verifies its own signature', () => {
    expect(verifyWebhookSignature(secret, signatureHeader(secret, body, now), body, now)).toBe(true);
  });

  it('refuses a tampered body, another secret, an old timestamp and a malformed header', () => {
    const header = signatureHeader(secret, body, now);
    expect(verifyWebhookSignature(secret, header, body.replace('topup', 'transfer'), now)).toBe(false);
    expect(verifyWebhookSignature('whsec_other', header, body, now)).toBe(false);
    expect(verifyWebhookSignature(secret, header, body, now + 301)).toBe(false);
    expect(verifyWebhookSignature(secret, header.replace(`t=${now}`, `t=${now + 1}`), body, now)).toBe(false);
    expect(verifyWebhookSignature(secret, 'garbage', body, now)).toBe(false);
    expect(verifyWebhookSignature(secret, undefined, body, now)).toBe(false);
  });
});

describe('retry policy and address policy', () => {
  it('backs off exponentially with full jitter, capped', () => {
    expect([1, 2, 3, 4].map((n) => retryDelayMs(n, 10_000, 3_600_000, () => 0.999_999))).toEqual([9_999, 19_999, 39_999, 79_999]);
    expect(retryDelayMs(30, 10_000, 3_600_000, () => 0.999_999)).toBe(3_599_996);
    expect(retryDelayMs(5, 10_000, 3_600_000, () => 0)).toBe(0);
  });

  it('allows only https to public addresses in the strict (production) policy', () => {
    const strict = { relaxed: false };
    for (const url of ['http://hooks.example.com/x', 'https://127.0.0.1/x', 'https://10.1.2.3/x', 'https://169.254.169.254/latest', 'https://[::1]/x', 'https://[::ffff:192.168.0.1]/x', 'https://localhost/x']) {
      expect(checkEndpointUrl(url, strict).ok, url).toBe(false);
    }
    expect(checkEndpointUrl('https://hooks.example.com/x', strict)).toEqual({ ok: true, url: 'https://hooks.example.com/x' });
    expect(checkEndpointUrl('http://127.0.0.1:8080/x', { relaxed: true }).ok).toBe(true);
  });

  it('refuses to connect to a non-public address in the strict policy', async () => {
    const server = await receiver(() => 200);
    try {
      const literal = await postWebhook(server.url, {}, '{}', { timeoutMs: 2000, allowPrivate: false });
      expect(literal).toMatchObject({ ok: false, statusCode: null });
      const named = await postWebhook(server.url.replace('127.0.0.1', 'localhost'), {}, '{}', { timeoutMs: 2000, allowPrivate: false });
      expect(named).toMatchObject({ ok: false, statusCode: null, error: expect.stringMatching(/^refused/) });
      expect(server.requests).toHaveLength(0);
    } finally {
      await server.close();
    }
  });
});
