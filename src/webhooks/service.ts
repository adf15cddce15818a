/**
 * Webhook endpoints and their deliveries, as their owner sees and manages them. Everything lives
 * on the owner's shard and every query names the owner: another user's id is simply not found.
 */
import type { Platform } from '../platform.js';
import type { Job } from '../events/types.js';
import { newId, parseId } from '../shared/ids.js';
import { checkEndpointUrl, urlPolicy } from './addresses.js';
import { createSecretBox } from './secrets.js';
import { generateSecret } from './signing.js';
import { MONEY_EVENT_TYPES } from '../events/types.js';

/** the money events a webhook can subscribe to ('*': all of them, and any added later) */
export const WEBHOOK_EVENT_TYPES = MONEY_EVENT_TYPES;
export const ALL_EVENTS = '*';
export const DELIVERY_STATUSES = ['pending', 'delivered', 'dead'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

export const DELIVER_JOB = 'webhook.deliver';

/** the job that makes attempt number `attempt` (1-based) of a delivery */
export function deliverJob(deliveryId: string, attempt: number, idSuffix = ''): Job {
  return { id: `${attempt === 1 ? deliveryId : `${deliveryId}:${attempt}`}${idSuffix}`, kind: DELIVER_JOB, payload: { deliveryId, attempt } };
}

export interface WebhookEndpoint {
  id: string;
  url: string;
  eventTypes: string[];
  description?: string;
  createdAt: Date;
}

export interface WebhookDelivery {
  id: string;
  endpointId: string;
  eventId: string;
  eventType: string;
  status: DeliveryStatus;
  attempts: number;
  nextAttemptAt?: Date;
  lastStatusCode?: number;
  lastError?: string;
  createdAt: Date;
  deliveredAt?: Date;
}

const endpointFromRow = (r: Record<string, unknown>): WebhookEndpoint => ({
  id: r.id as string,
  url: r.url as string,
  eventTypes: r.event_types as string[],
  ...(r.description != null ? { description: r.description as string } : {}),
  createdAt: r.created_at as Date,
});

const deliveryFromRow = (r: Record<string, unknown>): WebhookDelivery => ({
  id: r.id as string,
  endpointId: r.endpoint_id as string,
  eventId: r.event_id as string,
  eventType: r.event_type as string,
  status: r.status as DeliveryStatus,
  attempts: r.attempts as number,
  ...(r.status === 'pending' && r.next_attempt_at ? { nextAttemptAt: r.next_attempt_at as Date } : {}),
  ...(r.last_status_code != null ? { lastStatusCode: r.last_status_code as number } : {}),
  ...(r.last_error != null ? { lastError: r.last_error as string } : {}),
  createdAt: r.created_at as Date,
  ...(r.delivered_at ? { deliveredAt: r.delivered_at as Date } : {}),
});

const DELIVERY_COLUMNS = ['id', 'endpoint_id', 'event_id', 'event_type', 'status', 'attempts', 'next_attempt_at', 'last_status_code', 'last_error', 'created_at', 'delivered_at'];

export interface CreateEndpointInput {
  url: string;
  eventTypes: string[];
  description?: string;
}

export type CreateEndpointResult = { ok: true; value: WebhookEndpoint & { secret: string } } | { ok: false; error: 'validation_failed' | 'limit_exceeded'; detail: string };
export type RetryResult = { ok: true; value: WebhookDelivery } | { ok: false; error: 'not_found' | 'conflict'; detail: string };

export function createWebhookService(p: Platform) {
  const sqlOf = (shard: number) => p.db.forShard(shard).sql;
  const box = createSecretBox(p.config);
  const policy = urlPolicy(p.config);
  const isEndpointId = (id: string) => parseId(id, 'whk') !== undefined;
  const get = async (userId: string, shard: number, id: string): Promise<WebhookEndpoint | undefined> => {
    if (!isEndpointId(id)) return undefined;
    const [row] = await sqlOf(shard)`select id, url, description, event_types, created_at from webhook_endpoints where id = ${id} and user_id = ${userId}`;
    return row ? endpointFromRow(row) : undefined;
  };

  return {
    async create(userId: string, shard: number, input: CreateEndpointInput): Promise<CreateEndpointResult> {
      const checked = checkEndpointUrl(input.url, policy);
      if (!checked.ok) return { ok: false, error: 'validation_failed', detail: checked.detail };
      if (input.eventTypes.includes(ALL_EVENTS) && input.eventTypes.length > 1) return { ok: false, error: 'validation_failed', detail: `eventTypes: "${ALL_EVENTS}" already means every type; send it alone` };
      const id = newId('whk', shard);
      const secret = generateSecret();
      const sealed = box.seal(id, secret);
      const max = p.config.webhookMaxPerUser;
      const row = await sqlOf(shard).begin(async (tx) => {
        // one registration per user at a time, so two concurrent ones cannot both pass the count
        await tx`select pg_advisory_xact_lock(hashtextextended(${`webhooks:${userId}`}, 0))`;
        const [count] = await tx<{ n: number }[]>`select count(*)::int as n from webhook_endpoints where user_id = ${userId}`;
        if (count!.n >= max) return undefined;
        const [r] = await tx`
          insert into webhook_endpoints (id, user_id, shard, url, description, event_types, secret_kek_id, secret_sealed)
          values (${id}, ${userId}, ${shard}, ${checked.url}, ${input.description ?? null}, ${input.eventTypes}, ${sealed.kekId}, ${sealed.sealed})
          returning id, url, description, event_types, created_at`;
        return r;
      });
      if (!row) return { ok: false, error: 'limit_exceeded', detail: `At most ${max} webhook endpoints per user; delete one first.` };
      return { ok: true, value: { ...endpointFromRow(row), secret } };
    },

    async list(userId: string, shard: number): Promise<WebhookEndpoint[]> {
      // bounded by WEBHOOK_MAX_PER_USER; index webhook_endpoints_user
      const rows = await sqlOf(shard)`select id, url, description, event_types, created_at from webhook_endpoints where user_id = ${userId} order by created_at, id`;
      return rows.map(endpointFromRow);
    },

    get,

    /** true when the endpoint was the user's and is gone, with its deliveries (pending ones are never sent) */
    async remove(userId: string, shard: number, id: string): Promise<boolean> {
      if (!isEndpointId(id)) return false;
      const rows = await sqlOf(shard)`delete from webhook_endpoints where id = ${id} and user_id = ${userId} returning id`;
      return rows.length === 1;
    },

    /** newest first; undefined when the endpoint is not the user's. Keyset on id (ids sort by time). */
    async deliveries(userId: string, shard: number, endpointId: string, q: { status?: DeliveryStatus; limit: number; cursor?: string }): Promise<{ deliveries: WebhookDelivery[]; nextCursor?: string } | undefined> {
      if (!(await get(userId, shard, endpointId))) return undefined;
      const sql = sqlOf(shard);
      // index webhook_deliveries_endpoint_status (with status) or webhook_deliveries_endpoint
      const rows = await sql`
        select ${sql(DELIVERY_COLUMNS)} from webhook_deliveries
        where endpoint_id = ${endpointId}
          ${q.status ? sql`and status = ${q.status}` : sql``}
          ${q.cursor ? sql`and id < ${q.cursor}` : sql``}
        order by id desc
        limit ${q.limit + 1}`;
      const page = rows.slice(0, q.limit).map(deliveryFromRow);
      return rows.length > q.limit ? { deliveries: page, nextCursor: page.at(-1)!.id } : { deliveries: page };
    },

    /**
     * A dead delivery goes back to pending with a fresh retry window (WEBHOOK_RETRY_HOURS from
     * now, backoff from the start) and is attempted at once. The row is durable before the job
     * is queued: if queueing fails, the sweep sends it.
     */
    async retry(userId: string, shard: number, endpointId: string, deliveryId: string): Promise<RetryResult> {
      if (!isEndpointId(endpointId) || !parseId(deliveryId, 'dlv')) return { ok: false, error: 'not_found', detail: 'No such delivery.' };
      const sql = sqlOf(shard);
      const [row] = await sql`
        update webhook_deliveries
        set status = 'pending', next_attempt_at = now(), locked_until = null, window_started_at = now(), attempts_before_window = attempts
        where id = ${deliveryId} and endpoint_id = ${endpointId} and user_id = ${userId} and status = 'dead'
        returning ${sql(DELIVERY_COLUMNS)}`;
      if (!row) {
        const [current] = await sql<{ status: string }[]>`select status from webhook_deliveries where id = ${deliveryId} and endpoint_id = ${endpointId} and user_id = ${userId}`;
        if (!current) return { ok: false, error: 'not_found', detail: 'No such delivery.' };
        return { ok: false, error: 'conflict', detail: `The delivery is ${current.status}; only a dead delivery can be retried.` };
      }
      const delivery = deliveryFromRow(row);
      try {
        await p.jobs.enqueue('high', [deliverJob(delivery.id, delivery.attempts + 1)]);
      } catch (err) {
        p.log.warn({ err, deliveryId }, 'webhook retry not queued; the sweep will send it');
      }
      return { ok: true, value: delivery };
    },
  };
}
export type WebhookService = ReturnType<typeof createWebhookService>;
