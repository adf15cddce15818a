/**
 * Event backbone benchmark, on NATS JetStream (NATS_URL, default nats://127.0.0.1:4222; exit 3
 * when it does not answer), in a namespace of its own that is deleted afterwards.
 *
 *   npm run bench:notify -- [--notifications 600000] [--batch 2000] [--in-flight 8]
 *                           [--relay-rate 10000] [--relay-seconds 20]
 *
 * 1. Notifications: --notifications 'notification.created' events (push channel, 10,000 users)
 *    are published to notification-events in batches of --batch (async publishes, acknowledged
 *    together, --in-flight batches at once) while the notify role's 'notify-deliver' consumer
 *    (the production code: parse, once-per-notification key in Redis when REDIS_URL answers,
 *    push channel = the development sink) consumes them with explicit acks. Figures: produced/s
 *    (acknowledged by JetStream), delivered/s (pushes sent), both over the whole run.
 * 2. Relay: outbox rows are written at --relay-rate per second (batches every 100 ms, as the
 *    ledger's batches write them) for --relay-seconds while the relay publishes them to
 *    JetStream. Figures: published/s, the oldest unsent event's age (max and p99 of samples
 *    every 250 ms) and the backlog at the end.
 *
 * Database: a fresh `wallet_bench_notify` database (DATABASE_URL's server, or the bench's
 * embedded PostgreSQL). Results: bench/results/notify-<time>.json.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { loadConfig } from '../src/config/index.js';
import { migrate } from '../src/db/migrate.js';
import { createPlatform, type Platform } from '../src/platform.js';
import { createLogger } from '../src/observability/logger.js';
import { createNotifications, createDevPushSink, DELIVER_GROUP } from '../src/notify/index.js';
import { notificationEvent, type Notification } from '../src/notify/notification.js';
import { createRelay, measureLag } from '../src/events/relay.js';
import { appendOutbox } from '../src/events/outbox.js';
import type { BusEvent } from '../src/events/types.js';
import type { OutboxEvent } from '../src/ledger/types.js';
import { newId, newShard } from '../src/shared/ids.js';
import { dropNamespace } from '../src/test-support/nats.js';
import { dropRedisKeys, freshDatabase, log, percentile } from './support.js';

const { values: args } = parseArgs({
  options: {
    notifications: { type: 'string', default: '600000' },
    batch: { type: 'string', default: '2000' },
    'in-flight': { type: 'string', default: '8' },
    'relay-rate': { type: 'string', default: '10000' },
    'relay-seconds': { type: 'string', default: '20' },
    only: { type: 'string' }, // notifications | relay
    producer: { type: 'boolean', default: false }, // internal: the producer child process
    sequential: { type: 'boolean', default: false }, // produce everything first, then consume (each side's own ceiling)
  },
});
const N = Number(args.notifications);
const BATCH = Number(args.batch);
const IN_FLIGHT = Number(args['in-flight']);
const RELAY_RATE = Number(args['relay-rate']);
const RELAY_SECONDS = Number(args['relay-seconds']);

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const namespace = `bench${process.pid}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function answers(check: () => Promise<unknown>): Promise<boolean> {
  try {
    await check();
    return true;
  } catch {
    return false;
  }
}

const users = Array.from({ length: 10_000 }, () => newId('usr', newShard()));
function notification(i: number, at: string): BusEvent {
  const userId = users[i % users.length]!;
  const eventId = `evt_b${process.pid}_${i}`;
  const n: Notification = { notificationId: `${eventId}:${userId}`, userId, eventId, eventType: 'transfer.completed', role: 'recipient', channels: ['push'], subject: 'You received $12.34', text: 'You received $12.34 from Ada.', at };
  return notificationEvent(n);
}

/** the producer child: publishes N notification events, prints its start time and figures */
async function producer(p: Platform) {
  const at = new Date().toISOString();
  const start = Date.now();
  process.stdout.write(`start ${start}\n`);
  let next = 0;
  const one = async () => {
    while (next < N) {
      const from = next;
      next = Math.min(N, next + BATCH);
      const events: BusEvent[] = [];
      for (let i = from; i < next; i++) events.push(notification(i, at));
      await p.bus.publish(events);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, one));
  process.stdout.write(`done ${Date.now()}\n`);
}

/**
 * The consumer here, the producer in a child process: in production they are different roles
 * (the fan-out publishes, notify-deliver consumes), and one Node thread cannot do both at this
 * rate.
 */
async function notificationsPhase(p: Platform) {
  const push = createDevPushSink({ ringSize: 16 });
  const notifications = createNotifications(p, { push });
  const spec = notifications.consumers.find((c) => c.group === DELIVER_GROUP)!;
  const subscribe = () => p.bus.subscribe(spec.group, spec.topic, spec.handler, { concurrency: 256, batch: 512 });
  let sub = args.sequential ? undefined : subscribe();
  log(`notifications: a producer process publishes ${N.toLocaleString()} in batches of ${BATCH} (${IN_FLIGHT} in flight) while '${DELIVER_GROUP}' consumes here`);
  const child = spawn(process.execPath, ['--max-semi-space-size=64', '--import', 'tsx', fileURLToPath(import.meta.url), '--producer', '--notifications', String(N), '--batch', String(BATCH), '--in-flight', String(IN_FLIGHT)], {
    env: { ...process.env, BUS_NAMESPACE: namespace, NATS_URL },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let started = 0;
  let produced = 0;
  child.stdout.on('data', (d: Buffer) => {
    for (const line of d.toString().split('\n')) {
      if (line.startsWith('start ')) started = Number(line.slice(6));
      if (line.startsWith('done ')) produced = Number(line.slice(5));
    }
  });
  const exited = new Promise<number>((r) => child.on('exit', (code) => r(code ?? 1)));
  let consumeStart = 0;
  if (args.sequential) {
    await exited;
    consumeStart = Date.now();
    sub = subscribe();
  }
  const progress = setInterval(() => started && log(`  ${((Date.now() - started) / 1000).toFixed(1)} s: delivered ${push.count.toLocaleString()}`), 2000);
  const deadline = Date.now() + 600_000;
  while (push.count < N && Date.now() < deadline) await sleep(5);
  const delivered = Date.now();
  clearInterval(progress);
  if ((await exited) !== 0) throw new Error('the producer process failed');
  await sub!.stop();
  await notifications.close();
  if (args.sequential) log(`  consumed alone: ${Math.round(push.count / ((delivered - consumeStart) / 1000)).toLocaleString()}/s`);
  return {
    notifications: N,
    delivered: push.count,
    producedPerSecond: Math.round(N / ((produced - started) / 1000)),
    deliveredPerSecond: Math.round(push.count / ((delivered - started) / 1000)),
    seconds: +((delivered - started) / 1000).toFixed(2),
  };
}

async function relayPhase(p: Platform) {
  const sql = p.db.clusters[0]!.sql;
  const relay = createRelay(p).start();
  const users = Array.from({ length: 10_000 }, () => newId('usr', newShard()));
  const perTick = Math.round(RELAY_RATE / 10);
  let written = 0;
  const ages: number[] = [];
  let stop = false;
  log(`relay: writing ${RELAY_RATE.toLocaleString()} outbox events/s for ${RELAY_SECONDS} s while the relay publishes to JetStream`);
  const sampler = (async () => {
    while (!stop) {
      ages.push((await measureLag(p, p.db.clusters[0]!)).oldestAgeSeconds);
      await sleep(250);
    }
  })();
  const start = performance.now();
  for (let tick = 0; tick < RELAY_SECONDS * 10; tick++) {
    const rows: OutboxEvent[] = [];
    for (let i = 0; i < perTick; i++) {
      const u = users[(written + i) % users.length]!;
      const shard = Number(u.slice(4, 7));
      rows.push({ eventId: `${newId('evt', shard)}${written + i}`, topic: 'transaction-events', partitionKey: u, shard, type: 'transfer.completed', payload: { id: newId('txn', shard), status: 'completed', from: u, to: users[(written + i + 1) % users.length], amount: 1234, currency: 'USD' } });
    }
    await appendOutbox(sql, rows);
    written += rows.length;
    const due = start + (tick + 1) * 100;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    if (tick % 20 === 19) log(`  ${((performance.now() - start) / 1000).toFixed(0)} s: written ${written.toLocaleString()}, oldest unsent ${(ages.at(-1) ?? 0).toFixed(2)} s`);
  }
  const writeSeconds = (performance.now() - start) / 1000;
  // drain what is left
  while ((await measureLag(p, p.db.clusters[0]!)).backlog > 0 && performance.now() - start < (RELAY_SECONDS + 60) * 1000) await sleep(50);
  const drainedSeconds = (performance.now() - start) / 1000;
  stop = true;
  await sampler;
  await relay.stop();
  const [{ published }] = await sql<{ published: bigint }[]>`select count(*) as published from outbox where sent_at is not null`;
  const sorted = [...ages].sort((a, b) => a - b);
  return {
    written,
    writtenPerSecond: Math.round(written / writeSeconds),
    published: Number(published),
    publishedPerSecond: Math.round(Number(published) / drainedSeconds),
    oldestUnsentAgeMaxSeconds: +Math.max(0, ...ages).toFixed(3),
    oldestUnsentAgeP99Seconds: +percentile(sorted, 99).toFixed(3),
    drainSecondsAfterWrites: +(drainedSeconds - writeSeconds).toFixed(2),
  };
}

async function main() {
  if (args.producer) {
    const p = createPlatform(loadConfig({ ...process.env, LOG_LEVEL: 'warn' }), { databaseUrl: 'postgres://unused@127.0.0.1:1/none', log: createLogger('warn') });
    await p.ready();
    await producer(p);
    await p.bus.close();
    process.exit(0);
  }
  if (!(await answers(async () => (await connect({ servers: NATS_URL, timeout: 3000 })).close()))) {
    log(`bench:notify needs NATS with JetStream at ${NATS_URL}`);
    process.exit(3);
  }
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const withRedis = await answers(() => redis.connect().then(() => redis.ping()));
  redis.disconnect();
  const env = { ...process.env, LOG_LEVEL: 'warn', NATS_URL, BUS_NAMESPACE: namespace, ...(withRedis ? { REDIS_URL } : {}) };
  if (!withRedis) delete env.REDIS_URL;
  const config = loadConfig(env);
  const db = await freshDatabase(config, 'wallet_bench_notify');
  const p = createPlatform(config, { databaseUrl: db.url, log: createLogger('warn') });
  try {
    await p.ready();
    await migrate(p.db.clusters[0]!.sql, { partitionsAheadMonths: 1 });
    const notify = args.only === 'relay' ? undefined : await notificationsPhase(p);
    if (notify) log(`notifications: produced ${notify.producedPerSecond.toLocaleString()}/s, delivered ${notify.deliveredPerSecond.toLocaleString()}/s (${notify.delivered.toLocaleString()} in ${notify.seconds} s)`);
    const relay = args.only === 'notifications' ? undefined : await relayPhase(p);
    if (relay) log(`relay: ${relay.publishedPerSecond.toLocaleString()} events/s published, oldest unsent age max ${relay.oldestUnsentAgeMaxSeconds} s (p99 ${relay.oldestUnsentAgeP99Seconds} s)`);
    const result = {
      at: new Date().toISOString(),
      machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
      nats: NATS_URL,
      redis: withRedis ? REDIS_URL : null,
      args,
      notifications: notify,
      relay,
      targets: { notificationsPerSecond: 50_000, relayEventsPerSecond: 10_000, backlogAgeSeconds: 1 },
    };
    mkdirSync('bench/results', { recursive: true });
    const file = `bench/results/notify-${result.at.replace(/[:.]/g, '-')}.json`;
    writeFileSync(file, JSON.stringify(result, null, 2));
    process.stdout.write(`${JSON.stringify(result, null, 2)}\nwritten to ${file}\n`);
  } finally {
    await p.close();
    await db.stop();
    await dropNamespace(namespace).catch(() => undefined);
    if (withRedis) await dropRedisKeys(REDIS_URL, `wallet:${namespace}:`).catch((err) => log(`could not delete the run's Redis keys: ${(err as Error).message}`));
  }
}

await main();
