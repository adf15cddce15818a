/**
 * Exactly-once effects over an at-least-once bus: the effect runs in one transaction with the
 * insert of (consumer, event id) into consumer_inbox; a redelivered event finds the row and is
 * skipped. Use it for every consumer whose effect lives in PostgreSQL.
 */
import type { Queryable, Sql } from '../db/index.js';

/** Runs effect once per (consumer, eventId) on this database; false when it already ran. */
export async function once(sql: Sql, consumer: string, eventId: string, effect: (tx: Queryable) => Promise<void>): Promise<boolean> {
  return sql.begin(async (tx) => {
    const fresh = await tx`insert into consumer_inbox (consumer, event_id) values (${consumer}, ${eventId}) on conflict do nothing returning 1`;
    if (!fresh.length) return false;
    await effect(tx);
    return true;
  }) as Promise<boolean>;
}
