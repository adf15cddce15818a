/** What both bus adapters do with a consumer's failure, and what a well-formed event is. */
import { PoisonEvent, TOPICS, type BusEvent } from './types.js';
import { within } from '../shared/deadline.js';

/** redelivery backoff: 100 ms doubling per attempt, at most 30 s */
export function redeliveryDelayMs(attempt: number, baseMs = 100): number {
  return Math.min(30_000, baseMs * 2 ** Math.max(0, attempt - 1));
}

export type FailureDecision = { deadLetter: true; reason: string } | { deadLetter: false; delayMs: number };

export function decideFailure(err: unknown, attempt: number, maxDeliver: number, baseMs?: number): FailureDecision {
  const message = (err as Error)?.message ?? String(err);
  if (err instanceof PoisonEvent) return { deadLetter: true, reason: `poison: ${message}` };
  if ((err as { final?: boolean })?.final) return { deadLetter: true, reason: message };
  if (attempt >= maxDeliver) return { deadLetter: true, reason: `max deliveries (${maxDeliver}) reached: ${message}` };
  return { deadLetter: false, delayMs: redeliveryDelayMs(attempt, baseMs) };
}

export function isBusEvent(v: unknown): v is BusEvent {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as Record<string, unknown>;
  return (
    typeof e.id === 'string' && e.id.length > 0 &&
    typeof e.topic === 'string' && e.topic in TOPICS &&
    typeof e.key === 'string' && typeof e.type === 'string' &&
    typeof e.shard === 'number' && typeof e.at === 'string' &&
    typeof e.payload === 'object' && e.payload !== null && !Array.isArray(e.payload)
  );
}

/**
 * A handler's attempt, failed when it has not settled within the ack wait (as JetStream counts
 * an attempt past ack_wait): one hung handler (a stuck connection) cannot hold its key's lane,
 * its concurrency slot or its publisher for ever. The abandoned attempt runs on (consumers are
 * idempotent, so its late success is harmless too).
 */
export function attemptWithin(work: Promise<void>, ackWaitMs: number, group: string): Promise<void> {
  return within(work, ackWaitMs, () => new Error(`${group}: not acknowledged within ${ackWaitMs} ms`));
}
