/**
 * Writing outbox rows outside the ledger engine (security events, fraud alerts, audit): in the
 * caller's transaction when it has one, so the event exists if and only if its effect does.
 * The engine writes its own rows in its batch (ledger/engine.ts).
 */
import type { Queryable } from '../db/index.js';
import type { OutboxEvent } from '../ledger/types.js';
import { stringifyJson } from '../shared/json.js';

export async function appendOutbox(sql: Queryable, events: readonly OutboxEvent[]): Promise<void> {
  if (!events.length) return;
  // payloads travel as text and are cast once: a json[] parameter would be JSON-encoded again
  await sql`insert into outbox (event_id, topic, partition_key, shard, type, payload)
    select e, t, k, s, ty, p::json from unnest(${events.map((e) => e.eventId)}::text[], ${events.map((e) => e.topic)}::text[], ${events.map((e) => e.partitionKey)}::text[],
      ${events.map((e) => e.shard)}::smallint[], ${events.map((e) => e.type)}::text[], ${events.map((e) => stringifyJson(e.payload))}::text[]) as x(e, t, k, s, ty, p)`;
}
