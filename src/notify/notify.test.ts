import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createTestPlatform, fund, moneyPost, signUp, type TestPlatform, type TestUser } from '../test-support/platform.js';
import type { BusEvent, LeasedJob, Subscription } from '../events/types.js';
import { newId } from '../shared/ids.js';
import { createNotifications, DELIVER_GROUP, NOTIFY_GROUP, type Notifications } from './consumers.js';
import { createDevPushSink, type DevPushSink } from './push.js';
import { createSmtpMailer, EMAIL_JOB_KIND, type EmailMessage } from './email.js';
import { readMail } from './mailbox.js';
import { createMemoryOnceKeys, createRedisOnceKeys } from './once-keys.js';
import { consoleErrorsDuring } from '../test-support/console.js';
import { createRecipientDirectory } from './preferences.js';
import type { Platform } from '../platform.js';
import type { Notification } from './notification.js';

let t: TestPlatform;
let mailbox: string;
let notify: Notifications;
let push: DevPushSink;
const subs: Subscription[] = [];
/** every notification event the fan-out published */
const published: BusEvent[] = [];

beforeAll(async () => {
  mailbox = await mkdtemp(join(tmpdir(), 'wallet-notify-'));
  t = await createTestPlatform({ MAILBOX_DIR: mailbox });
  push = createDevPushSink();
  notify = createNotifications(t.platform, { push });
  for (const c of notify.consumers) subs.push(t.platform.bus.subscribe(c.group, c.topic, c.handler, c.options));
  subs.push(t.platform.bus.subscribe('test-spy', 'notification-events', async (e) => void published.push(e)));
});
afterAll(async () => {
  await Promise.all(subs.map((s) => s.stop()));
  await notify?.close();
  await t?.close();
  await rm(mailbox, { recursive: true, force: true });
});

/** the event of a money movement as the relay publishes it: from its outbox row */
async function outboxEvent(type: string, id: string): Promise<BusEvent> {
  const [row] = await t.platform.db.clusters[0]!.sql`select event_id, topic, partition_key, shard, type, payload, created_at from outbox where type = ${type} and payload->>'id' = ${id}`;
  if (!row) throw new Error(`no ${type} event for ${id}`);
  return { id: row.event_id, topic: row.topic, key: row.partition_key, type: row.type, shard: row.shard, at: row.created_at.toISOString(), payload: row.payload };
}

async function transfer(from: TestUser, to: TestUser, amount: number, note?: string): Promise<BusEvent> {
  const res = await moneyPost(t.app, from, '/v1/transfers', { to: to.id, amount, currency: 'USD', ...(note ? { note } : {}) });
  expect(res.statusCode).toBe(201);
  return outboxEvent('transfer.completed', res.json().id);
}

/** runs the queued emails through the handler, as the workers role would */
async function drainEmails(): Promise<void> {
  const handler = notify.jobHandlers[EMAIL_JOB_KIND]!;
  for (;;) {
    const jobs = (await t.platform.jobs.take('medium', 100)).filter((j) => j.job.kind === EMAIL_JOB_KIND);
    if (!jobs.length) return;
    for (const j of jobs) await handler(j);
  }
}

const pushesTo = (u: TestUser) => push.recent().filter((r) => r.userId === u.id);
const emailsFor = async (event: BusEvent, u: TestUser) => (await readdir(mailbox)).filter((f) => f === `${event.id}:${u.id}.eml`);
const notificationOf = (event: BusEvent, u: TestUser) => published.find((e) => e.id === `${event.id}:${u.id}`)?.payload as Notification | undefined;

async function pair(): Promise<[TestUser, TestUser]> {
  const alice = await signUp(t.app, { name: 'Alice' });
  const bob = await signUp(t.app, { name: 'Bob' });
  await fund(t.app, alice, 10_000);
  return [alice, bob];
}

const setPrefs = async (u: TestUser, prefs: Record<string, unknown>) => {
  const res = await t.app.inject({ method: 'PATCH', url: '/v1/me/notification-preferences', headers: u.auth, payload: prefs });
  expect(res.statusCode).toBe(200);
};

describe('notifications of a transfer', () => {
  it('push the sender and the recipient and email each of them', async () => {
    const [alice, bob] = await pair();
    const event = await transfer(alice, bob, 1234, 'lunch');
    await t.platform.bus.publish([event]);

    expect(pushesTo(alice).map((r) => r.title)).toEqual(['You sent $12.34 to Bob']);
    expect(pushesTo(bob).map((r) => r.title)).toEqual(['You received $12.34 from Alice']);

    await drainEmails();
    const toAlice = await readMail(mailbox, `${event.id}:${alice.id}`);
    expect(toAlice).toMatchObject({ to: alice.email, subject: 'You sent $12.34 to Bob' });
    expect(toAlice!.text).toContain('You sent $12.34 to Bob.\nNote: lunch');
    expect(await readMail(mailbox, `${event.id}:${bob.id}`)).toMatchObject({ to: bob.email, subject: 'You received $12.34 from Alice' });
  });

  it('sends no email to a user who turned email off, and still pushes', async () => {
    const [alice, bob] = await pair();
    await setPrefs(bob, { email: false });
    const event = await transfer(alice, bob, 500);
    await t.platform.bus.publish([event]);
    await drainEmails();

    expect(pushesTo(bob)).toHaveLength(1);
    expect(await emailsFor(event, bob)).toEqual([]);
    expect(await emailsFor(event, alice)).toHaveLength(1);
    // the address and the HTML travel only with an email
    expect(notificationOf(event, bob)).toMatchObject({ channels: ['push'] });
    expect(notificationOf(event, bob)).not.toHaveProperty('email');
    expect(notificationOf(event, bob)).not.toHaveProperty('html');
    expect(notificationOf(event, alice)).toMatchObject({ channels: ['email', 'push'], email: alice.email, html: expect.stringContaining('$5.00') });
  });

  it('sends nothing at all for an event type the user muted', async () => {
    const [alice, bob] = await pair();
    await setPrefs(bob, { mutedEventTypes: ['transfer.completed'] });
    const event = await transfer(alice, bob, 700);
    await t.platform.bus.publish([event]);
    await drainEmails();

    expect(pushesTo(bob)).toEqual([]);
    expect(await emailsFor(event, bob)).toEqual([]);
    expect(notificationOf(event, bob)).toBeUndefined();
    expect(pushesTo(alice)).toHaveLength(1);
  });

  it('sends one email and one push for an event delivered twice', async () => {
    const [alice, bob] = await pair();
    const event = await transfer(alice, bob, 900);
    await t.platform.bus.publish([event]);
    await t.platform.bus.publish([event]); // inside the bus's window
    // redeliveries past the bus's window reach the handlers again
    const [fanOut, deliver] = [notify.consumers.find((c) => c.group === NOTIFY_GROUP)!, notify.consumers.find((c) => c.group === DELIVER_GROUP)!];
    await fanOut.handler(event, { attempt: 2, group: NOTIFY_GROUP });
    const toBob = published.find((e) => e.id === `${event.id}:${bob.id}`)!;
    await deliver.handler(toBob, { attempt: 2, group: DELIVER_GROUP });
    await drainEmails();
    // and a redelivered email job
    const n = toBob.payload as unknown as Notification;
    const job = { id: `${n.notificationId}:email`, kind: EMAIL_JOB_KIND, payload: { notificationId: n.notificationId, userId: n.userId, to: n.email, subject: n.subject, text: n.text, html: n.html, at: n.at } };
    const ack = vi.fn(async () => undefined);
    await notify.jobHandlers[EMAIL_JOB_KIND]!({ job, priority: 'medium', attempt: 2, ack, retry: async () => undefined } satisfies LeasedJob);

    expect(ack).toHaveBeenCalledOnce();
    expect(pushesTo(bob)).toHaveLength(1);
    expect(pushesTo(alice)).toHaveLength(1);
    expect(await emailsFor(event, bob)).toHaveLength(1);
    expect(await emailsFor(event, alice)).toHaveLength(1);
  });

  it('still notifies the sender when the recipient is not a user here', async () => {
    const [alice] = await pair();
    const event = await transfer(alice, await signUp(t.app), 100);
    const ghost = newId('usr', 7);
    const ghosted = { ...event, id: newId('evt', event.shard), payload: { ...event.payload, to: ghost } };
    await t.platform.bus.publish([ghosted]);
    expect(published.filter((e) => e.id.startsWith(`${ghosted.id}:`)).map((e) => e.key)).toEqual([alice.id]);
  });
});

describe('notifications of a payment', () => {
  it('tell the payer what they paid and the merchant what they received', async () => {
    const payer = await signUp(t.app, { name: 'Carol' });
    const merchant = await signUp(t.app, { name: 'Corner Café', kind: 'merchant' });
    await fund(t.app, payer, 10_000);
    const res = await moneyPost(t.app, payer, '/v1/payments', { merchantId: merchant.id, amount: 250, currency: 'USD' });
    expect(res.json().status).toBe('captured');
    const event = await outboxEvent('payment.captured', res.json().id);
    await t.platform.bus.publish([event]);

    expect(pushesTo(payer).map((r) => r.title)).toEqual(['You paid $2.50 to Corner Café']);
    expect(pushesTo(merchant).map((r) => r.title)).toEqual(['You received a payment of $2.50 from Carol']);
    await drainEmails();
    expect(await readMail(mailbox, `${event.id}:${merchant.id}`)).toMatchObject({ to: merchant.email, subject: 'You received a payment of $2.50 from Carol' });
  });
});

describe('the recipient directory', () => {
  it('loads the users asked for at about the same time with one query per cluster', async () => {
    const [a, b, c] = [await signUp(t.app, { name: 'A' }), await signUp(t.app, { name: 'B' }), await signUp(t.app, { name: 'C' })];
    await setPrefs(c, { push: false });
    const real = t.platform.db.clusters[0]!;
    let queries = 0;
    const counting = { ...real, sql: ((...args: Parameters<typeof real.sql>) => (queries++, real.sql(...args))) as unknown as typeof real.sql };
    const uncached = { get: <T>(_key: string, load: () => Promise<T>) => load() };
    const directory = createRecipientDirectory({ db: { ...t.platform.db, forShard: () => counting }, cache: uncached } as unknown as Pick<Platform, 'db' | 'cache'>);
    const [first, second] = await Promise.all([directory.get([a.id, b.id, newId('usr', 9)]), directory.get([c.id])]);

    expect(queries).toBe(1);
    expect([...first.keys()]).toEqual([a.id, b.id]);
    expect(first.get(a.id)).toEqual({ id: a.id, name: 'A', email: a.email, preferences: { email: true, push: true, mutedEventTypes: [] } });
    expect(second.get(c.id)!.preferences).toEqual({ email: true, push: false, mutedEventTypes: [] });
  });
});

describe('events that cannot be notified', () => {
  const money = (type: string, payload: Record<string, unknown>): BusEvent => {
    const key = newId('usr', 3);
    return { id: newId('evt', 3), topic: 'transaction-events', key, type, shard: 3, at: new Date().toISOString(), payload: { id: newId('txn', 3), from: key, to: newId('usr', 4), amount: 100, currency: 'USD', ...payload } };
  };
  const deadLetterOf = async (event: BusEvent) => (await t.platform.bus.deadLetters(1000)).find((d) => typeof d.event !== 'string' && d.event.id === event.id);

  it('an unknown event type goes to the dead letters with the reason', async () => {
    const event = money('transfer.teleported', {});
    await t.platform.bus.publish([event]);
    expect(await deadLetterOf(event)).toMatchObject({ group: NOTIFY_GROUP, reason: expect.stringMatching(/^poison: .*unknown event type/) });
  });

  it('a money event with a malformed amount goes to the dead letters', async () => {
    const event = money('transfer.completed', { amount: 'lots' });
    await t.platform.bus.publish([event]);
    expect(await deadLetterOf(event)).toMatchObject({ group: NOTIFY_GROUP, reason: expect.stringMatching(/amount is not an amount in minor units/) });
  });

  it('a malformed notification goes to the dead letters', async () => {
    const userId = newId('usr', 5);
    const event: BusEvent = { id: `${newId('evt', 5)}:${userId}`, topic: 'notification-events', key: userId, type: 'notification.created', shard: 5, at: new Date().toISOString(), payload: { notificationId: 'x' } };
    await t.platform.bus.publish([event]);
    expect(await deadLetterOf(event)).toMatchObject({ group: DELIVER_GROUP, reason: expect.stringMatching(/notificationId is malformed/) });
  });
});

describe('email over SMTP', () => {
  const message = (): EmailMessage => {
    const userId = newId('usr', 0);
    return { notificationId: `${newId('evt', 0)}:${userId}`, userId, to: 'someone@example.com', subject: 'You sent $1.00 to Bob', text: 'Hi\n', html: '<p>Hi</p>', at: new Date().toISOString() };
  };
  const transport = () => {
    const json = nodemailer.createTransport({ jsonTransport: true });
    return { json, sent: vi.spyOn(json, 'sendMail') };
  };

  it('sends a notification once, recorded in the inbox on the user\u2019s shard', async () => {
    const { json, sent } = transport();
    const mailer = createSmtpMailer({ transport: json, from: 'no-reply@wallet.test', onceBy: { db: t.platform.db } });
    const m = message();
    expect(await mailer.deliver(m)).toBe('sent');
    expect(await mailer.deliver(m)).toBe('duplicate');
    expect(sent).toHaveBeenCalledOnce();
    expect(sent.mock.calls[0]![0]).toMatchObject({ to: 'someone@example.com', subject: 'You sent $1.00 to Bob', messageId: `<${m.notificationId.replace(':', '.')}@wallet.test>` });
  });

  it('sends again after a failed send', async () => {
    const { json, sent } = transport();
    sent.mockRejectedValueOnce(new Error('421 try later'));
    const mailer = createSmtpMailer({ transport: json, from: 'no-reply@wallet.test', onceBy: { keys: createMemoryOnceKeys() } });
    const m = message();
    await expect(mailer.deliver(m)).rejects.toThrow('421 try later');
    expect(await mailer.deliver(m)).toBe('sent');
    expect(await mailer.deliver(m)).toBe('duplicate');
  });

  it('a released Redis claim can be claimed again, and a claimed one cannot', async () => {
    const url = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
    const keys = createRedisOnceKeys({ url, cluster: false, prefix: `test:notify:${randomBytes(6).toString('hex')}:` });
    try {
      expect(await keys.claim('push:a', 60_000)).toBe(true);
      expect(await keys.claim('push:a', 60_000)).toBe(false);
      await keys.release('push:a');
      expect(await keys.claim('push:a', 60_000)).toBe(true);
      expect(await Promise.all([keys.claim('push:b', 60_000), keys.claim('push:b', 60_000)])).toEqual([true, false]);
    } finally {
      await keys.close();
    }
  });

  it('sends a notification once across processes with a Redis key', async () => {
    const url = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
    const prefix = `test:notify:${randomBytes(6).toString('hex')}:`;
    const [keysA, keysB] = [createRedisOnceKeys({ url, cluster: false, prefix }), createRedisOnceKeys({ url, cluster: false, prefix })];
    try {
      const { json, sent } = transport();
      const [a, b] = [createSmtpMailer({ transport: json, from: 'no-reply@wallet.test', onceBy: { keys: keysA } }), createSmtpMailer({ transport: json, from: 'no-reply@wallet.test', onceBy: { keys: keysB } })];
      const m = message();
      expect((await Promise.all([a.deliver(m), b.deliver(m)])).sort()).toEqual(['duplicate', 'sent']);
      expect(sent).toHaveBeenCalledOnce();
    } finally {
      await Promise.all([keysA.close(), keysB.close()]);
    }
  });
});

describe('the once-keys Redis client while Redis is down', () => {
  it('fails the claim, writing nothing to stderr as it reconnects', async () => {
    const once = createRedisOnceKeys({ url: 'redis://127.0.0.1:1', cluster: false, prefix: 'test:' });
    try {
      const written = await consoleErrorsDuring(async () => {
        await expect(once.claim('k', 60_000)).rejects.toThrow();
        await new Promise((r) => setTimeout(r, 400)); // a few reconnect attempts
      });
      expect(written.filter((w) => w.includes('ioredis'))).toEqual([]);
    } finally {
      await once.close();
    }
  });
});
