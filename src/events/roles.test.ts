/**
 * The event roles end to end, on both buses: money moved through the API reaches, through the
 * outbox and the relay, the notification channels (email in the mailbox), a merchant's webhook
 * (signed) and the audit chain; and stopping the roles leaves nothing half done.
 */
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createTestPlatform, fund, moneyPost, signUp, type TestPlatform, until } from '../test-support/platform.js';
import { busEnv, dropNamespace } from '../test-support/nats.js';
import { startEventRoles, type EventRoles } from './roles.js';
import { verifyWebhookSignature } from '../webhooks/index.js';
import { verifyAuditChain } from '../audit/verify.js';


describe.each(['memory', 'jetstream'] as const)('event roles on the %s bus', (kind) => {
  let t: TestPlatform;
  let roles: EventRoles;
  let ns = '';
  let mailbox: string;
  let hooks: Server;
  let hookUrl: string;
  const received: { headers: Record<string, string | string[] | undefined>; body: string }[] = [];

  beforeAll(async () => {
    const bus = await busEnv(kind);
    ns = bus.namespace;
    const env = bus.env;
    mailbox = mkdtempSync(join(tmpdir(), 'wallet-mailbox-'));
    hooks = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        received.push({ headers: req.headers, body });
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => hooks.listen(0, '127.0.0.1', r));
    hookUrl = `http://127.0.0.1:${(hooks.address() as { port: number }).port}/hooks`;
    t = await createTestPlatform({ ...env, MAILBOX_DIR: mailbox, RELAY_POLL_MS: '10', WORKERS_MIN: '2' });
    roles = startEventRoles(t.platform, ['relay', 'notify', 'workers']);
  });
  afterAll(async () => {
    await roles?.stop();
    await t?.close();
    await new Promise((r) => hooks.close(r));
    rmSync(mailbox, { recursive: true, force: true });
    if (ns) await dropNamespace(ns);
  });

  test('a transfer notifies both parties by email, reaches the recipient’s webhook signed, and lands in the audit chain', async () => {
    const alice = await signUp(t.app, { name: 'Alice' });
    const bob = await signUp(t.app, { name: 'Bob' });
    const hook = await t.app.inject({ method: 'POST', url: '/v1/webhooks', headers: bob.auth, payload: { url: hookUrl, eventTypes: ['transfer.completed'] } });
    expect(hook.statusCode).toBe(201);
    const secret = hook.json().secret as string;
    await fund(t.app, alice, 5000);
    const sent = await moneyPost(t.app, alice, '/v1/transfers', { to: bob.id, amount: 1234, currency: 'USD' });
    expect(sent.statusCode).toBe(201);
    const transferId = sent.json().id as string;

    await until(() => received.length >= 1, 20_000, 'the webhook delivery');
    const [delivery] = received;
    expect(JSON.parse(delivery!.body)).toMatchObject({ type: 'transfer.completed', data: { id: transferId, amount: 1234, currency: 'USD', from: alice.id, to: bob.id } });
    expect(verifyWebhookSignature(secret, String(delivery!.headers['wallet-signature']), delivery!.body)).toBe(true);

    // top-up (Alice), transfer sent (Alice), transfer received (Bob)
    await until(() => readdirSync(mailbox).filter((f) => f.endsWith('.eml')).length >= 3, 20_000, 'three emails');
    const mails = readdirSync(mailbox).filter((f) => f.endsWith('.eml')).map((f) => readFileSync(join(mailbox, f), 'utf8'));
    expect(mails.some((m) => m.includes(`To: ${bob.email}`) && m.includes('$12.34'))).toBe(true);
    expect(mails.some((m) => m.includes(`To: ${alice.email}`) && m.includes('$12.34'))).toBe(true);

    const sql = t.platform.db.clusters[0]!.sql;
    await until(async () => (await sql`select 1 from audit_log where type = 'transfer.completed'`).length === 1, 20_000, 'the audit record');
    const logins = await sql`select 1 from audit_log where type = 'security.login'`;
    expect(logins.length).toBeGreaterThanOrEqual(2);
    expect((await verifyAuditChain(sql)).ok).toBe(true);
    expect(received).toHaveLength(1);
  });
});

describe('event roles on the in-process bus', () => {
  test('refuse a relay without its consumers in the process (events would be marked sent unhandled)', async () => {
    const t = await createTestPlatform();
    try {
      expect(() => startEventRoles(t.platform, ['api', 'relay'])).toThrow(/relay must run with notify and workers/);
    } finally {
      await t.close();
    }
  });
});
