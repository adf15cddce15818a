/**
 * The event backbone's seams. Producers write outbox rows in the transaction of their effect;
 * the relay publishes them to a Bus; consumers subscribe by group. Background work goes to a
 * JobQueue with three priorities. Two implementations of each: in-process (the embedded
 * default, one process) and NATS JetStream (production), behind the same interfaces and the
 * same behaviour tests.
 */

/** The plan's topics and their partition counts. */
export const TOPICS = {
  'transaction-events': 10,
  'fraud-alerts': 5,
  'notification-events': 20,
  'audit-logs': 5,
} as const;
export type Topic = keyof typeof TOPICS;
export const TOPIC_NAMES = Object.keys(TOPICS) as Topic[];

/** The money events on transaction-events (what notifications and webhooks fan out). */
export const MONEY_EVENT_TYPES = [
  'topup.completed',
  'transfer.completed',
  /** a transfer between clusters whose credit could not be applied: the money went back */
  'transfer.reversed',
  'payment.authorized',
  'payment.captured',
  'payment.voided',
  'payment.expired',
  'payment.refunded',
  'payment.declined',
] as const;
export type MoneyEventType = (typeof MONEY_EVENT_TYPES)[number];

/** FNV-1a 32-bit: a stable hash, the same in every process and version. */
export function fnv1a(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The partition of a key (a user id) within a topic. */
export function partitionOf(topic: Topic, key: string): number {
  return fnv1a(key) % TOPICS[topic];
}

/** An event as it travels on the bus. */
export interface BusEvent {
  /** unique; the de-duplication id (Nats-Msg-Id) and the consumers' inbox key */
  id: string;
  topic: Topic;
  /** partition key: the user id the event is about */
  key: string;
  /** e.g. transfer.completed, payment.captured, security.login_failed */
  type: string;
  /** the logical shard of the producing user */
  shard: number;
  /** ISO-8601 time the event was produced */
  at: string;
  /** the event's own fields; amounts are JSON integers in minor units */
  payload: Record<string, unknown>;
}

export interface Delivery {
  /** 1 on the first delivery */
  attempt: number;
  /** the consumer group */
  group: string;
}

/** A consumer's effect for one event. Throwing redelivers (up to maxDeliver, then dead letter). */
export type Handler = (event: BusEvent, delivery: Delivery) => Promise<void>;

/** Thrown by a handler for an event it can never process (unknown type, malformed fields):
 *  the event goes to the dead-letter stream at once, with the reason. */
export class PoisonEvent extends Error {
  override name = 'PoisonEvent';
}

export interface SubscribeOptions {
  /** events handled at once (different keys only; one key's events run in order) */
  concurrency?: number;
  /** deliveries before dead letter (default: config BUS_MAX_DELIVER) */
  maxDeliver?: number;
  /** events fetched per pull */
  batch?: number;
  /** a handler attempt not settled by then counts as failed and is redelivered (default 30 s) */
  ackWaitMs?: number;
}

export interface Subscription {
  readonly group: string;
  readonly topic: Topic;
  /** stops fetching and waits for the events in hand */
  stop(): Promise<void>;
}

export interface DeadLetter {
  group: string;
  topic: Topic | string;
  reason: string;
  /** the event, or the raw text when it could not be parsed */
  event: BusEvent | string;
  at: string;
}

export interface Bus {
  readonly kind: 'memory' | 'jetstream';
  /** creates/updates streams (JetStream); idempotent */
  start(): Promise<void>;
  /** resolves once every event is durably accepted by the bus (all or throw) */
  publish(events: readonly BusEvent[]): Promise<void>;
  /** a durable consumer group on a topic: each event reaches each group at least once */
  subscribe(group: string, topic: Topic, handler: Handler, opts?: SubscribeOptions): Subscription;
  /** recent dead letters, newest last (for operators and tests) */
  deadLetters(limit?: number): Promise<DeadLetter[]>;
  close(): Promise<void>;
}

export const PRIORITIES = ['high', 'medium', 'low'] as const;
export type Priority = (typeof PRIORITIES)[number];

export interface Job {
  /** unique per job; enqueueing the same id twice (within the dedup window) runs it once */
  id: string;
  /** selects the handler */
  kind: string;
  payload: Record<string, unknown>;
}

export interface LeasedJob {
  job: Job;
  priority: Priority;
  /** 1 on the first delivery */
  attempt: number;
  /** done: never delivered again */
  ack(): Promise<void>;
  /** deliver again after delayMs (the job stays queued meanwhile) */
  retry(delayMs: number): Promise<void>;
}

export interface JobQueue {
  readonly kind: 'memory' | 'jetstream';
  start(): Promise<void>;
  /** durably queued when it resolves; delayMs: not delivered before that much time has passed */
  enqueue(priority: Priority, jobs: readonly Job[], opts?: { delayMs?: number }): Promise<void>;
  /** up to max jobs of one priority that are due now; [] when none */
  take(priority: Priority, max: number): Promise<LeasedJob[]>;
  /** jobs waiting or in flight, by priority */
  depth(): Promise<Record<Priority, number>>;
  close(): Promise<void>;
}

/** A job kind's work. It may ack or retry itself; returning acks, throwing retries with backoff
 *  (the handler owns giving up). */
export type JobHandler = (job: LeasedJob) => Promise<void>;

/** What a feature contributes to the roles that run consumers and workers. */
export interface ConsumerSpec {
  group: string;
  topic: Topic;
  handler: Handler;
  options?: SubscribeOptions;
}
