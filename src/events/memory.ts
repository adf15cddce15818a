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
import { attemptWithin, decideFailure } from './handling.js';
import { Fifo } from '../shared/fifo.js';
import {
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
  ackWaitMs?: number;
  stopped: boolean;
  inFlight: Set<Promise<void>>;
}

/**
 * De-duplication by id inside a time window. The ids also sit in a queue in the order they came,
 * so the oldest expire first in O(1) each: a Map walked from its start to find them (as this was)
 * skips every entry deleted since its last rehash, ~40 µs an add with 100,000 ids in the window.
 */
export class DedupWindow {
  private readonly seen = new Map<string, number>();
  /** [id, expiry] in the order they came */
  private readonly order = new Fifo<readonly [string, number]>();
  /** maxIds: the window also ends after this many newer ids (bounds memory under a flood) */
  constructor(private readonly windowMs: number, private readonly maxIds = 1_000_000) {}
  has(id: string, now = Date.now()): boolean {
    const exp = this.seen.get(id);
    return exp !== undefined && exp > now;
  }
  /** true the first time an id is seen inside the window */
  add(id: string, now = Date.now()): boolean {
    this.expire(now);
    if (this.has(id, now)) return false;
    const exp = now + this.windowMs;
    this.seen.set(id, exp);
    this.order.push([id, exp]);
    return true;
  }
  get size(): number {
    return this.seen.size;
  }
  private expire(now: number): void {
    for (let oldest = this.order.peek(); oldest && (oldest[1] <= now || this.seen.size >= this.maxIds); oldest = this.order.peek()) {
      this.order.shift();
      // an id added again after it expired has a newer entry further back: that one stays
      if (this.seen.get(oldest[0]) === oldest[1]) this.seen.delete(oldest[0]);
    }
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

  const attemptOf = (sub: Sub, event: BusEvent, attempt: number): Promise<void> =>
    attemptWithin(sub.handler(event, { attempt, group: sub.group }), sub.ackWaitMs ?? ackWaitMs, sub.group);

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
      const sub: Sub = { group, topic, handler, concurrency: o.concurrency ?? 16, maxDeliver: o.maxDeliver ?? opts.maxDeliver, ackWaitMs: o.ackWaitMs, stopped: false, inFlight: new Set() };
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
  /** order among entries due at the same instant: first queued, first taken */
  seq: number;
  leased: boolean;
}

/** entries not yet due, earliest first (a binary heap on dueAt, then seq) */
class DueHeap {
  private readonly a: Entry[] = [];
  get size(): number {
    return this.a.length;
  }
  peek(): Entry | undefined {
    return this.a[0];
  }
  push(e: Entry): void {
    const a = this.a;
    let i = a.push(e) - 1;
    while (i > 0) {
      const up = (i - 1) >> 1;
      if (!before(a[i]!, a[up]!)) break;
      [a[i], a[up]] = [a[up]!, a[i]!];
      i = up;
    }
  }
  pop(): Entry | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length && last) {
      a[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && before(a[l]!, a[m]!)) m = l;
        if (r < a.length && before(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}
const before = (x: Entry, y: Entry) => x.dueAt < y.dueAt || (x.dueAt === y.dueAt && x.seq < y.seq);

/**
 * One priority's jobs: those due now in a FIFO, those
 * delayed in a heap, those leased counted. Taking, acking and retrying are O(1) or O(log n) at
 * any depth; the queue was one array scanned from its start by every take and spliced by every
 * ack, which at a deep queue (a spike, a mail server down) cost O(depth) each.
 */
class PriorityQueue {
  private readonly ready = new Fifo<Entry>();
  private readonly delayed = new DueHeap();
  leased = 0;
  get depth(): number {
    return this.ready.length + this.delayed.size + this.leased;
  }
  add(e: Entry, now: number): void {
    if (e.dueAt <= now) this.ready.push(e);
    else this.delayed.push(e);
  }
  take(max: number, now: number): Entry[] {
    for (let e = this.delayed.peek(); e && e.dueAt <= now; e = this.delayed.peek()) this.ready.push(this.delayed.pop()!);
    const out: Entry[] = [];
    while (out.length < max && this.ready.length) out.push(this.ready.shift()!);
    return out;
  }
}

export function createMemoryJobQueue(opts: { dedupWindowMs: number; maxDepth?: number }): JobQueue {
  const queues: Record<Priority, PriorityQueue> = { high: new PriorityQueue(), medium: new PriorityQueue(), low: new PriorityQueue() };
  const dedup = new DedupWindow(opts.dedupWindowMs);
  const maxDepth = opts.maxDepth ?? 1_000_000;
  const total = () => queues.high.depth + queues.medium.depth + queues.low.depth;
  let seq = 0;
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
      const dueAt = now + (o.delayMs ?? 0);
      for (const job of fresh) queues[priority].add({ job, attempt: 0, dueAt, seq: seq++, leased: false }, now);
    },
    async take(priority, max) {
      const q = queues[priority];
      return q.take(max, Date.now()).map((entry): LeasedJob => {
        entry.leased = true;
        entry.attempt++;
        q.leased++;
        return {
          job: entry.job,
          priority,
          attempt: entry.attempt,
          async ack() {
            if (!entry.leased) return;
            entry.leased = false;
            q.leased--;
          },
          async retry(delayMs) {
            if (!entry.leased) return;
            entry.leased = false;
            q.leased--;
            const now = Date.now();
            entry.dueAt = now + delayMs;
            entry.seq = seq++;
            q.add(entry, now);
          },
        };
      });
    },
    async depth() {
      return { high: queues.high.depth, medium: queues.medium.depth, low: queues.low.depth };
    },
    async close() {},
  };
}
