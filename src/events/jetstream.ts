/**
 * NATS JetStream adapters (production). Streams and durable consumers are created or updated
 * from the configuration at start:
 * - one stream per topic (`TRANSACTION_EVENTS` holds `transaction-events.<p>`, p = fnv1a(user id)
 *   mod the topic's partitions), max_age BUS_MAX_AGE_DAYS, NATS_STREAM_REPLICAS replicas, file
 *   storage, the dedup window BUS_DEDUP_WINDOW_MS (the event id is the Nats-Msg-Id);
 * - a `DEAD_LETTER` stream (`dead-letter.<topic>`) for events a group could not handle, with the
 *   reason;
 * - a `JOBS` work-queue stream with `jobs.high|medium|low`, one pull consumer per priority.
 * A consumer group is a durable pull consumer named after the group, explicit acks. The client
 * decides dead letters (after BUS_MAX_DELIVER deliveries, or at once for a PoisonEvent), so
 * nothing stops being delivered without landing in DEAD_LETTER.
 * BUS_NAMESPACE prefixes every subject and stream name (tests run side by side on one server).
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type ConsumerConfig,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type StreamConfig,
} from '@nats-io/jetstream';
import type { Config } from '../config/index.js';
import type { Logger } from '../observability/logger.js';
import type { EventMetrics } from '../observability/metrics.js';
import type { Backbone } from './index.js';
import { createAsyncPublisher, type AsyncPublisher, type OutgoingMessage } from './async-publish.js';
import { attemptWithin, decideFailure, isBusEvent } from './handling.js';
import {
  PRIORITIES,
  TOPIC_NAMES,
  partitionOf,
  type Bus,
  type BusEvent,
  type DeadLetter,
  type Handler,
  type Job,
  type JobQueue,
  type LeasedJob,
  type Priority,
  type SubscribeOptions,
  type Subscription,
  type Topic,
} from './types.js';

const ms = (n: number) => n * 1_000_000; // JetStream durations are nanoseconds
const ACK_WAIT_MARGIN_MS = 5_000;
const JOB_ACK_WAIT_MS = 60_000;
const DEAD_LETTER_MAX_AGE_DAYS = 30;
/**
 * Events per JetStream message, by topic. Money events travel one per message, with the event
 * id as Nats-Msg-Id (exact server-side de-duplication); notification events, at 50,000/s, in
 * envelopes of up to 100 (bench:notify: one message per event left the server and the client
 * per-message overhead as the ceiling). Bytes stay well under NATS's 1 MB max_payload.
 */
const ENVELOPE_MAX_EVENTS: Record<Topic, number> = { 'transaction-events': 1, 'fraud-alerts': 1, 'audit-logs': 1, 'notification-events': 100 };
const ENVELOPE_MAX_BYTES = 256 * 1024;

/**
 * A publish batch as envelopes: the events of one partition, in publish order, up to a count
 * and a size per message. The server's per-message work (store, dedup, deliver, ack) is then
 * paid once per envelope, not per event. The Nats-Msg-Id is the first event's id and the count:
 * a republished batch (relay restart) that forms the same envelope is dropped by the server;
 * one that forms a different envelope is delivered again and the consumers' inboxes drop it.
 */
export function envelopes(events: readonly BusEvent[], names: Names, maxEvents: (t: Topic) => number, maxBytes: number): OutgoingMessage[] {
  const byPartition = new Map<string, string[]>();
  const firstIds = new Map<string, string>();
  const out: OutgoingMessage[] = [];
  const sizes = new Map<string, number>();
  const flush = (subject: string) => {
    const parts = byPartition.get(subject);
    if (!parts?.length) return;
    // one event: the event itself, its id as the message id
    if (parts.length === 1) out.push({ subject, data: parts[0]!, msgId: firstIds.get(subject)! });
    else out.push({ subject, data: `[${parts.join(',')}]`, msgId: `${firstIds.get(subject)}+${parts.length}` });
    byPartition.set(subject, []);
    sizes.set(subject, 0);
  };
  for (const e of events) {
    const subject = names.subject(`${e.topic}.${partitionOf(e.topic, e.key)}`);
    const json = JSON.stringify(e);
    const parts = byPartition.get(subject) ?? [];
    if (parts.length && (parts.length >= maxEvents(e.topic) || (sizes.get(subject) ?? 0) + json.length > maxBytes)) flush(subject);
    const now = byPartition.get(subject) ?? [];
    if (!now.length) firstIds.set(subject, e.id);
    now.push(json);
    byPartition.set(subject, now);
    sizes.set(subject, (sizes.get(subject) ?? 0) + json.length);
  }
  for (const subject of byPartition.keys()) flush(subject);
  return out;
}

export interface Names {
  subject(s: string): string;
  stream(s: string): string;
  topicStream(t: Topic): string;
}

export function jetStreamNames(namespace: string): Names {
  const subject = (s: string) => (namespace ? `${namespace}.${s}` : s);
  const stream = (s: string) => (namespace ? `${namespace}_${s}` : s).toUpperCase().replace(/[^A-Z0-9_]/g, '_');
  return { subject, stream, topicStream: (t) => stream(t) };
}

async function ensureStream(jsm: JetStreamManager, cfg: Partial<StreamConfig> & { name: string }): Promise<void> {
  try {
    await jsm.streams.info(cfg.name);
    await jsm.streams.update(cfg.name, cfg);
  } catch (err) {
    if (!/not found/i.test((err as Error).message)) throw err;
    await jsm.streams.add(cfg);
  }
}

async function ensureConsumer(jsm: JetStreamManager, stream: string, cfg: Partial<ConsumerConfig> & { durable_name: string }): Promise<void> {
  try {
    await jsm.consumers.info(stream, cfg.durable_name);
    await jsm.consumers.update(stream, cfg.durable_name, cfg);
  } catch (err) {
    if (!/not found/i.test((err as Error).message)) throw err;
    await jsm.consumers.add(stream, cfg);
  }
}

export function createJetStreamBackbone(config: Config, log: Logger, metrics?: EventMetrics): Backbone {
  const names = jetStreamNames(config.busNamespace);
  const replicas = config.natsStreamReplicas;
  let conn: Promise<{ nc: NatsConnection; js: JetStreamClient; jsm: JetStreamManager; publisher: AsyncPublisher }> | undefined;
  const connection = () =>
    (conn ??= (async () => {
      const nc = await connect({ servers: config.natsUrl!.split(','), name: 'wallet', maxReconnectAttempts: -1, reconnectTimeWait: 500, noAsyncTraces: true });
      const jsm = await jetstreamManager(nc);
      return { nc, jsm, js: jetstream(nc), publisher: createAsyncPublisher(nc) };
    })());
  let closing = false;
  let users = 2; // bus and jobs share the connection; the last close() closes it
  const release = async () => {
    if (--users > 0 || !conn) return;
    const { nc, publisher } = await conn;
    publisher.close();
    await nc.drain().catch(() => nc.close());
  };

  const deadSubject = (topic: string) => names.subject(`dead-letter.${topic}`);
  const deadLetter = async (js: JetStreamClient, d: DeadLetter, id: string) => {
    await js.publish(deadSubject(String(d.topic)), JSON.stringify(d), { msgID: `${d.group}:${id}` });
  };

  const subs = new Set<{ stop(): Promise<void> }>();

  const bus: Bus = {
    kind: 'jetstream',
    async start() {
      const { jsm } = await connection();
      for (const topic of TOPIC_NAMES) {
        await ensureStream(jsm, {
          name: names.topicStream(topic),
          subjects: [names.subject(`${topic}.*`)],
          storage: StorageType.File,
          num_replicas: replicas,
          max_age: ms(config.busMaxAgeDays * 86_400_000),
          duplicate_window: ms(config.busDedupWindowMs),
          discard: DiscardPolicy.Old,
        });
      }
      await ensureStream(jsm, {
        name: names.stream('dead-letter'),
        subjects: [names.subject('dead-letter.>')],
        storage: StorageType.File,
        num_replicas: replicas,
        max_age: ms(DEAD_LETTER_MAX_AGE_DAYS * 86_400_000),
        duplicate_window: ms(config.busDedupWindowMs),
      });
    },
    async publish(events) {
      if (!events.length) return;
      const { publisher } = await connection();
      // async publishes, acknowledged together: one round trip's latency for the whole batch
      await publisher.publish(envelopes(events, names, (t) => ENVELOPE_MAX_EVENTS[t], ENVELOPE_MAX_BYTES));
    },
    subscribe(group, topic, handler, o = {}) {
      const sub = consumeGroup(group, topic, handler, o);
      subs.add(sub);
      return {
        group,
        topic,
        async stop() {
          subs.delete(sub);
          await sub.stop();
        },
      };
    },
    async deadLetters(limit = 100) {
      const { jsm } = await connection();
      const name = names.stream('dead-letter');
      const info = await jsm.streams.info(name);
      const out: DeadLetter[] = [];
      for (let seq = info.state.last_seq; seq >= info.state.first_seq && seq > 0 && out.length < limit; seq--) {
        const m = await jsm.streams.getMessage(name, { seq }).catch(() => null);
        if (m) out.unshift(m.json<DeadLetter>());
      }
      return out;
    },
    async close() {
      closing = true;
      await Promise.all([...subs].map((s) => s.stop()));
      subs.clear();
      await release();
    },
  };

  function consumeGroup(group: string, topic: Topic, handler: Handler, o: SubscribeOptions): Subscription {
    const maxDeliver = o.maxDeliver ?? config.busMaxDeliver;
    const concurrency = o.concurrency ?? 64;
    const ackWaitMs = o.ackWaitMs ?? config.busAckWaitMs;
    let stopped = false;
    let messages: ConsumerMessages | undefined;
    const chains = new Map<string, Promise<void>>();
    let active = 0;
    let wake: (() => void) | undefined;

    /** one event of an envelope: true = done (handled or dead-lettered), false = redeliver the envelope */
    const handleEvent = async (js: JetStreamClient, event: BusEvent, attempt: number): Promise<{ done: boolean; delayMs: number; ok?: true }> => {
      try {
        if (attempt > maxDeliver) throw Object.assign(new Error(`delivered ${attempt} times without an outcome (did the consumer crash on it?)`), { final: true });
        await attemptWithin(handler(event, { attempt, group }), ackWaitMs, group);
        return { done: true, delayMs: 0, ok: true };
      } catch (err) {
        const d = decideFailure(err, attempt, maxDeliver);
        if (!d.deadLetter) {
          metrics?.consumed(group, topic, 'retry');
          return { done: false, delayMs: d.delayMs };
        }
        try {
          await deadLetter(js, { group, topic, reason: d.reason, event, at: new Date().toISOString() }, event.id);
          metrics?.consumed(group, topic, 'dead_letter');
          log.warn({ group, topic, eventId: event.id, type: event.type, reason: d.reason }, 'event dead-lettered');
          return { done: true, delayMs: 0 };
        } catch (dlErr) {
          log.error({ err: dlErr, group, eventId: event.id }, 'dead-letter publish failed; redelivering');
          return { done: false, delayMs: 1000 };
        }
      }
    };

    /**
     * An envelope: its keys in parallel, each key's events in order (a key's later events wait
     * for its earlier ones). Acked when every event is done; otherwise redelivered whole, after
     * the longest delay asked for (events already handled run again: consumers are idempotent).
     */
    const handle = async (js: JetStreamClient, m: JsMsg, events: BusEvent[]) => {
      const attempt = m.info.deliveryCount;
      const byKey = new Map<string, BusEvent[]>();
      for (const e of events) {
        const list = byKey.get(e.key);
        if (list) list.push(e);
        else byKey.set(e.key, [e]);
      }
      let redeliverAfter = -1;
      let ok = 0;
      await Promise.all(
        [...byKey.values()].map(async (list) => {
          for (const e of list) {
            const r = await handleEvent(js, e, attempt);
            if (r.ok) ok++;
            if (!r.done) {
              redeliverAfter = Math.max(redeliverAfter, r.delayMs);
              return; // this key's later events wait for the redelivery, in order
            }
          }
        }),
      );
      if (redeliverAfter < 0) m.ack();
      else m.nak(redeliverAfter);
      if (ok) metrics?.consumed(group, topic, 'ok', ok);
    };

    const run = async () => {
      const { js, jsm } = await connection();
      const stream = names.topicStream(topic);
      await ensureConsumer(jsm, stream, {
        durable_name: group,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        filter_subject: names.subject(`${topic}.*`),
        // past the client's own deadline (attemptWithin), which naks first: the server's
        // redelivery is for a consumer that died holding the message
        ack_wait: ms(ackWaitMs + ACK_WAIT_MARGIN_MS),
        max_deliver: -1,
        max_ack_pending: Math.max(1000, concurrency * 16),
      });
      const consumer = await js.consumers.get(stream, group);
      messages = await consumer.consume({ max_messages: o.batch ?? 256 });
      if (stopped) messages.stop();
      for await (const m of messages) {
        let events: BusEvent[];
        try {
          const parsed: unknown = JSON.parse(m.string());
          const list = Array.isArray(parsed) ? parsed : [parsed];
          if (!list.length || !list.every(isBusEvent)) throw new Error('not an event or an array of events (id, topic, key, type, shard, at, payload)');
          events = list;
        } catch (err) {
          const raw = m.string().slice(0, 10_000);
          await deadLetter(js, { group, topic, reason: `malformed: ${(err as Error).message}`, event: raw, at: new Date().toISOString() }, `seq-${m.seq}`).then(
            () => {
              m.ack();
              metrics?.consumed(group, topic, 'dead_letter');
            },
            () => m.nak(1000),
          );
          continue;
        }
        while (active >= concurrency) await new Promise<void>((r) => (wake = r));
        active++;
        // one partition's envelopes in order (a user's events are all in one partition); per-key
        // chains across envelopes measured slower (bench/README.md)
        const lane = m.subject;
        const prev = chains.get(lane) ?? Promise.resolve();
        const next = prev.then(() => handle(js, m, events)).finally(() => {
          active--;
          if (chains.get(lane) === next) chains.delete(lane);
          const w = wake;
          wake = undefined;
          w?.();
        });
        chains.set(lane, next);
      }
    };

    const loop = (async () => {
      while (!stopped) {
        try {
          await run();
        } catch (err) {
          if (!stopped && !closing) log.error({ err, group, topic }, 'consumer stopped; restarting in 1 s');
        }
        if (!stopped) await new Promise((r) => setTimeout(r, 1000));
      }
    })();

    return {
      group,
      topic,
      async stop() {
        stopped = true;
        messages?.stop();
        await loop;
        await Promise.all([...chains.values()]);
        // acks are fire-and-forget: make sure they reached the server
        if (conn) await (await conn).nc.flush().catch(() => undefined);
      },
    };
  }

  // ---- priority work queues ----
  const jobsStream = names.stream('jobs');
  const jobSubject = (p: Priority) => names.subject(`jobs.${p}`);
  const BUFFER_MAX = 256;
  interface Buffered {
    m: JsMsg;
    job: Job;
  }
  const buffers: Record<Priority, Buffered[]> = { high: [], medium: [], low: [] };
  const feeders: { messages?: ConsumerMessages; done?: Promise<void> }[] = [];
  let space: Record<Priority, (() => void) | undefined> = { high: undefined, medium: undefined, low: undefined };
  let keepAlive: ReturnType<typeof setInterval> | undefined;

  const jobs: JobQueue = {
    kind: 'jetstream',
    async start() {
      const { jsm, js } = await connection();
      await ensureStream(jsm, {
        name: jobsStream,
        subjects: PRIORITIES.map(jobSubject),
        retention: RetentionPolicy.Workqueue,
        storage: StorageType.File,
        num_replicas: replicas,
        duplicate_window: ms(config.busDedupWindowMs),
      });
      for (const p of PRIORITIES) {
        await ensureConsumer(jsm, jobsStream, {
          durable_name: `workers-${p}`,
          ack_policy: AckPolicy.Explicit,
          filter_subject: jobSubject(p),
          ack_wait: ms(JOB_ACK_WAIT_MS),
          max_deliver: -1,
          max_ack_pending: 100_000,
        });
      }
      // jobs held in the local buffer stay leased to this process (working() resets the clock)
      keepAlive = setInterval(() => {
        for (const p of PRIORITIES) for (const b of buffers[p]) b.m.working();
      }, JOB_ACK_WAIT_MS / 3);
      keepAlive.unref();
      void js;
    },
    async enqueue(priority, list, o = {}) {
      if (!list.length) return;
      const { publisher } = await connection();
      const notBefore = o.delayMs ? Date.now() + o.delayMs : undefined;
      await publisher.publish(list.map((j) => ({ subject: jobSubject(priority), data: JSON.stringify(notBefore ? { ...j, notBefore } : j), msgId: j.id })));
    },
    async take(priority, max) {
      startFeeder(priority);
      const got = buffers[priority].splice(0, max);
      if (got.length) {
        const w = space[priority];
        space[priority] = undefined;
        w?.();
      }
      return got.map(({ m, job }): LeasedJob => ({
        job,
        priority,
        attempt: m.info.deliveryCount,
        async ack() {
          await m.ackAck().catch(() => m.ack());
        },
        async retry(delayMs) {
          m.nak(delayMs);
        },
      }));
    },
    async depth() {
      const { jsm } = await connection();
      const out = { high: 0, medium: 0, low: 0 } as Record<Priority, number>;
      for (const p of PRIORITIES) {
        const info = await jsm.consumers.info(jobsStream, `workers-${p}`);
        out[p] = info.num_pending + info.num_ack_pending;
      }
      return out;
    },
    async close() {
      closing = true;
      if (keepAlive) clearInterval(keepAlive);
      for (const f of feeders) f.messages?.stop();
      for (const p of PRIORITIES) {
        space[p]?.();
        // not taken: hand them back at once rather than after the ack wait
        for (const b of buffers[p].splice(0)) b.m.nak();
      }
      await Promise.all(feeders.map((f) => f.done));
      await release();
    },
  };

  const started = new Set<Priority>();
  function startFeeder(priority: Priority) {
    if (started.has(priority) || closing) return;
    started.add(priority);
    const f: { messages?: ConsumerMessages; done?: Promise<void> } = {};
    feeders.push(f);
    f.done = (async () => {
      while (!closing) {
        try {
          const { js } = await connection();
          const consumer = await js.consumers.get(jobsStream, `workers-${priority}`);
          f.messages = await consumer.consume({ max_messages: BUFFER_MAX });
          for await (const m of f.messages) {
            let job: Job & { notBefore?: number };
            try {
              job = m.json<Job & { notBefore?: number }>();
            } catch {
              log.error({ seq: m.seq, priority }, 'malformed job; terminated');
              m.term('malformed');
              continue;
            }
            const wait = (job.notBefore ?? 0) - Date.now();
            if (wait > 0) {
              m.nak(wait);
              continue;
            }
            buffers[priority].push({ m, job: { id: job.id, kind: job.kind, payload: job.payload } });
            while (buffers[priority].length >= BUFFER_MAX && !closing) await new Promise<void>((r) => (space[priority] = r));
          }
        } catch (err) {
          if (!closing) log.error({ err, priority }, 'job feeder stopped; restarting in 1 s');
        }
        if (!closing) await new Promise((r) => setTimeout(r, 1000));
      }
    })();
  }
  space = { high: undefined, medium: undefined, low: undefined };

  return { bus, jobs };
}
