/**
 * The 'webhooks' consumer group on transaction-events: each party of a money event (sender and
 * recipient, payer and merchant, owner) gets one delivery per endpoint of theirs subscribed to
 * the type. The rows are written once per event (consumer inbox, one transaction per cluster,
 * unique (event_id, endpoint_id)), then their first attempts are queued at high priority.
 * Queueing after the commit can fail: a redelivered event re-queues what was never attempted,
 * and the sweep catches the rest.
 */
import type { Cluster, Queryable, Sql } from '../db/index.js';
import { once } from '../events/inbox.js';
import { eventParties } from '../events/parties.js';
import { PoisonEvent, type BusEvent, type ConsumerSpec, type Job } from '../events/types.js';
import type { Platform } from '../platform.js';
import { newId, parseId } from '../shared/ids.js';
import { stringifyJson } from '../shared/json.js';
import { ALL_EVENTS, deliverJob } from './service.js';

export const WEBHOOK_GROUP = 'webhooks';

/** ledger-internal fields of the events (account and wallet ids) that the public API never shows */
const INTERNAL_FIELDS = new Set(['payerAccount', 'merchantWalletId', 'fromWallet', 'toWallet', 'walletId', 'viaClearing']);

/** The body every endpoint receives for an event, byte for byte on every attempt. */
export function webhookBody(event: BusEvent): string {
  const data: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(event.payload)) if (!INTERNAL_FIELDS.has(k)) data[k] = v;
  return stringifyJson({ id: event.id, type: event.type, createdAt: event.at, data });
}

export function webhookConsumers(p: Platform): ConsumerSpec[] {
  return [{ group: WEBHOOK_GROUP, topic: 'transaction-events', handler: (event) => fanOut(p, event) }];
}

async function fanOut(p: Platform, event: BusEvent): Promise<void> {
  const parties = eventParties(event);
  if (!parties.length) return;
  const usersByCluster = new Map<Cluster, string[]>();
  for (const { userId } of parties) {
    const id = parseId(userId, 'usr');
    if (!id) throw new PoisonEvent(`webhooks: party "${userId}" of ${event.type} is not a user id`);
    const cluster = p.db.forShard(id.shard);
    usersByCluster.set(cluster, [...(usersByCluster.get(cluster) ?? []), userId]);
  }
  const body = webhookBody(event);
  const jobs: Job[] = [];
  for (const [cluster, userIds] of usersByCluster) jobs.push(...(await recordDeliveries(cluster.sql, event, userIds, body)));
  if (jobs.length) await p.jobs.enqueue('high', jobs);
}

/** the first-attempt jobs of the event's deliveries to these users (all on one cluster) */
async function recordDeliveries(sql: Sql, event: BusEvent, userIds: string[], body: string): Promise<Job[]> {
  // index webhook_endpoints_user; at most WEBHOOK_MAX_PER_USER per user
  const subscribed = (q: Queryable) => q<{ id: string; user_id: string; shard: number }[]>`
    select id, user_id, shard from webhook_endpoints
    where user_id = any(${userIds}::text[]) and event_types && ${[event.type, ALL_EVENTS]}::text[]`;
  // most users have no endpoint: their events cost one indexed read, no inbox row
  if (!(await subscribed(sql)).length) return [];
  let created: string[] = [];
  const first = await once(sql, WEBHOOK_GROUP, event.id, async (tx) => {
    const endpoints = await subscribed(tx);
    if (!endpoints.length) return;
    const rows = await tx<{ id: string }[]>`
      insert into webhook_deliveries (id, endpoint_id, user_id, shard, event_id, event_type, body)
      select u.id, u.endpoint_id, u.user_id, u.shard, ${event.id}, ${event.type}, ${body}
      from unnest(${endpoints.map((e) => newId('dlv', e.shard))}::text[], ${endpoints.map((e) => e.id)}::text[],
        ${endpoints.map((e) => e.user_id)}::text[], ${endpoints.map((e) => e.shard)}::smallint[]) as u(id, endpoint_id, user_id, shard)
      on conflict (event_id, endpoint_id) do nothing
      returning id`;
    created = rows.map((r) => r.id);
  });
  if (first) return created.map((id) => deliverJob(id, 1));
  // a redelivery: the rows exist; queue again those never attempted (same job ids: the queue's
  // de-duplication drops them if the first queueing did succeed). Index: unique (event_id, endpoint_id).
  const pending = await sql<{ id: string }[]>`
    select id from webhook_deliveries
    where event_id = ${event.id} and user_id = any(${userIds}::text[]) and status = 'pending' and attempts = 0`;
  return pending.map((r) => deliverJob(r.id, 1));
}
