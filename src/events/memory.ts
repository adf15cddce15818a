/**
 * The in-process bus and job queue of the embedded default: one process runs every role, so
 * events need not leave it. Semantics match JetStream where the tests look: de-duplication by
 * event id within the window, every group gets every event, one key's events in order,
 * redelivery with backoff up to maxDeliver, then a dead letter with the reason.
 *
 * Durability comes from the outbox: publish() resolves only after every subscribed group has
 * handled (or dead-lettered) the events, so the relay marks rows sent only after their effects
 * are done; a crash before that republishes them and the consumers' inboxes skip what ran. A
 * republish of an event still being delivered waits for that delivery rather than returning at
 * once, for the same reason. A handler attempt that has not finished within the ack wait counts
 * as failed and is redelivered, as JetStream does past ack_wait: one hung handler cannot hold
 * its publisher (and so the relay) for ever.
 * Events published to a topic with no subscriber in this process are kept in nobody's queue:
 * with the in-process bus, run the consuming roles in the publishing process (the default).
 */
import type { EventMetrics } from '../observability/metrics.js';
import { decideFailure } from './handling.js';
import {
  PRIORITIES,
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

export interface MemoryBusOptions {
  maxDeliver: number;
  dedupWindowMs: number;
  /** first redelivery delay; doubles per attempt (capped at 1 s) */
  redeliveryBaseMs?: number;
  /** a handler attempt not settled by then is redelivered; default 30 s */
  ackWaitMs?: number;
  /** dead letters kept (oldest dropped first) */
  deadLettersMax?: number;
  metrics?: EventMetrics;
}

interface Sub {
  group: string;
  topic: Topic;
  handler: Handler;
  concurrency: number;
  maxDeliver: number;
  stopped: boolean;
  inFlight: Set<Promise<void>>;
}

/** de-duplication by id inside a time window (insertion-ordered map, oldest expire first) */
export class DedupWindow {
  private readonly seen = new Map<string, number>();
  /** maxIds: the window also ends after this many newer ids (bounds memory under a flood) */
  constructor(private readonly windowMs: number, private readonly maxIds = 1_000_000) {}
  has(id: string, now = Date.now()): boolean {
    const exp = this.seen.get(id);
    return exp !== undefined && exp > now;
  }
  /** true the first time an id is seen inside the window */
  add(id: string, now = Date.now()): boolean {
    for (const [k, exp] of this.seen) {
      if (exp > now && this.seen.size < this.maxIds) break;
      this.seen.delete(k);
    }
    if (this.has(id, now)) return false;
    this.seen.set(id, now + this.windowMs);
    return true;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function createMemoryBus(opts: MemoryBusOptions): Bus {
  const subs: Sub[] = [];
  const dedup = new DedupWindow(opts.dedupWindowMs);
  const dead: DeadLetter[] = [];
  const deadMax = opts.deadLettersMax ?? 10_000;
  const base = opts.redeliveryBaseMs ?? 5;
  const ackWaitMs = opts.ackWaitMs ?? 30_000;
  /** deliveries under way, by event id: a duplicate publish waits for them */
  const delivering = new Map<string, Promise<void>>();
  let closed = false;

  /** the handler's attempt, failed when it has not settled within the ack wait */
  const attemptOf = (sub: Sub, event: BusEvent, attempt: number): Promise<void> => {
    let timer: NodeJS.Timeout | undefined;
    const work = sub.handler(event, { attempt, group: sub.group });
    // the abandoned attempt's late failure is nobody's any more
    work.catch(() => undefined);
    const late = new Promise<never>((_, fail) => (timer = setTimeout(() => fail(new Error(`${sub.group}: not acknowledged within ${ackWaitMs} ms`)), ackWaitMs)));
    return Promise.race([work, late]).finally(() => clearTimeout(timer));
  };

  const deadLetter = (sub: Sub, event: BusEvent, reason: string) => {
    dead.push({ group: sub.group, topic: sub.topic, reason, event, at: new Date().toISOString() });
    if (dead.length > deadMax) dead.splice(0, dead.length - deadMax);
  };

  /** one event through one group: redelivered on failure, dead-lettered after maxDeliver */
  const handleOne = async (sub: Sub, event: BusEvent) => {
    for (let attempt = 1; ; attempt++) {
      try {
        await attemptOf(sub, event, attempt);
        opts.metrics?.consumed(sub.group, sub.topic, 'ok');
        return;
      } catch (err) {
        const d = decideFailure(err, attempt, sub.maxDeliver, base);
        if (d.deadLetter) {
          opts.metrics?.consumed(sub.group, sub.topic, 'dead_letter');
          return deadLetter(sub, event, d.reason);
        }
        opts.metrics?.consumed(sub.group, sub.topic, 'retry');
        await sleep(Math.min(1000, d.delayMs));
      }
    }
  };

  /** a batch through one group: keys in parallel (bounded), each key's events in order */
  const deliver = async (sub: Sub, events: BusEvent[]) => {
    const byKey = new Map<string, BusEvent[]>();
    for (const e of events) {
      const list = byKey.get(e.key);
      if (list) list.push(e);
      else byKey.set(e.key, [e]);
    }
    const lanes = [...byKey.values()];
    let next = 0;
    const worker = async () => {
      while (next < lanes.length) {
        const lane = lanes[next++]!;
        for (const e of lane) await handleOne(sub, e);
      }
    };
    await Promise.all(Array.from({ length: Math.min(sub.concurrency, lanes.length) }, worker));
  };

  return {
    kind: 'memory',
    async start() {},
    async publish(events) {
      if (closed) throw new Error('bus closed');
      const earlier = new Set<Promise<void>>();
      const fresh = events.filter((e) => {
        const under = delivering.get(e.id);
        if (under) earlier.add(under);
        return dedup.add(e.id);
      });
      if (!fresh.length) return void (await Promise.all(earlier));
      const byTopic = new Map<Topic, BusEvent[]>();
      for (const e of fresh) {
        const list = byTopic.get(e.topic);
        if (list) list.push(e);
        else byTopic.set(e.topic, [e]);
      }
      const work: Promise<void>[] = [];
      for (const sub of subs) {
        const list = byTopic.get(sub.topic);
        if (!list || sub.stopped) continue;
        const p = deliver(sub, list);
        sub.inFlight.add(p);
        work.push(p.finally(() => sub.inFlight.delete(p)));
      }
      const all = Promise.all(work).then(() => undefined);
      for (const e of fresh) delivering.set(e.id, all);
      try {
        await Promise.all([all, ...earlier]);
      } finally {
        for (const e of fresh) if (delivering.get(e.id) === all) delivering.delete(e.id);
      }
    },
    subscribe(group: string, topic: Topic, handler: Handler, o: SubscribeOptions = {}): Subscription {
      if (subs.some((s) => s.group === group && s.topic === topic && !s.stopped)) throw new Error(`bus: group ${group} already subscribed to ${topic} in this process`);
      const sub: Sub = { group, topic, handler, concurrency: o.concurrency ?? 16, maxDeliver: o.maxDeliver ?? opts.maxDeliver, stopped: false, inFlight: new Set() };
      subs.push(sub);
      return {
        group,
        topic,
        async stop() {
          sub.stopped = true;
          await Promise.all([...sub.inFlight]);
          subs.splice(subs.indexOf(sub), 1);
        },
      };
    },
    async deadLetters(limit = 100) {
      return dead.slice(-limit);
    },
    async close() {
      closed = true;
      await Promise.all(subs.flatMap((s) => [...s.inFlight]));
    },
  };
}

interface Entry {
  job: Job;
  attempt: number;
  dueAt: number;
  leased: boolean;
}

export function createMemoryJobQueue(opts: { dedupWindowMs: number; maxDepth?: number }): JobQueue {
  const queues: Record<Priority, Entry[]> = { high: [], medium: [], low: [] };
  const dedup = new DedupWindow(opts.dedupWindowMs);
  const maxDepth = opts.maxDepth ?? 1_000_000;
  const total = () => queues.high.length + queues.medium.length + queues.low.length;
  return {
    kind: 'memory',
    async start() {},
    async enqueue(priority, jobs, o = {}) {
      const now = Date.now();
      const inBatch = new Set<string>();
      const fresh = jobs.filter((j) => !dedup.has(j.id, now) && !inBatch.has(j.id) && inBatch.add(j.id));
      // refused whole, before any id is remembered: the caller may enqueue the same jobs again
      if (total() + fresh.length > maxDepth) throw new Error(`job queue full (${maxDepth} jobs)`);
      for (const j of fresh) dedup.add(j.id, now);
      const dueAt = Date.now() + (o.delayMs ?? 0);
      for (const job of fresh) queues[priority].push({ job, attempt: 0, dueAt, leased: false });
    },
    async take(priority, max) {
      const now = Date.now();
      const q = queues[priority];
      const out: LeasedJob[] = [];
      for (const entry of q) {
        if (out.length >= max) break;
        if (entry.leased || entry.dueAt > now) continue;
        entry.leased = true;
        entry.attempt++;
        out.push({
          job: entry.job,
          priority,
          attempt: entry.attempt,
          async ack() {
            const i = q.indexOf(entry);
            if (i >= 0) q.splice(i, 1);
          },
          async retry(delayMs) {
            entry.leased = false;
            entry.dueAt = Date.now() + delayMs;
          },
        });
      }
      return out;
    },
    async depth() {
      return Object.fromEntries(PRIORITIES.map((p) => [p, queues[p].length])) as Record<Priority, number>;
    },
    async close() {},
  };
}
