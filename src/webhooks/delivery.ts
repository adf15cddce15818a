/**
 * Sending deliveries. A 'webhook.deliver' job names a delivery and the attempt it makes; the
 * worker claims the row (status pending, attempt count as expected, no live claim), POSTs the
 * stored body with a fresh signature, and records the outcome in one statement:
 *   - 2xx: delivered;
 *   - anything else: a retry at WEBHOOK_RETRY_BASE_MS × 2^(n-1) capped at
 *     WEBHOOK_RETRY_MAX_DELAY_MS, with full jitter (a random delay up to that), queued as a new
 *     low-priority job, while that stays within WEBHOOK_RETRY_HOURS of the window start
 *     (creation, or the last manual retry); past it, dead (the dead-letter list).
 * Delivery is at least once: a crash between the POST and the record sends it again, so
 * receivers de-duplicate by Wallet-Event-Id. A duplicate or stale job finds the claim fails and
 * does nothing; the sweep re-queues pending deliveries whose job was lost.
 */
import client from 'prom-client';
import type { Cluster, Sql } from '../db/index.js';
import type { JobHandler, LeasedJob } from '../events/types.js';
import { purgeInBatches, type MaintenanceTask } from '../maintenance/index.js';
import type { Platform } from '../platform.js';
import { parseId } from '../shared/ids.js';
import { urlPolicy } from './addresses.js';
import { createSecretBox } from './secrets.js';
import { DELIVER_JOB, deliverJob } from './service.js';
import { SIGNATURE_HEADER, signatureHeader } from './signing.js';
import { postWebhook, type SendResult } from './transport.js';

export const USER_AGENT = 'wallet-platform-webhooks/1';
/** a claim outlives the longest attempt by this much before another worker may take the delivery */
const CLAIM_MARGIN_MS = 30_000;
/** a pending delivery this overdue has lost its job: the sweep queues it again */
const SWEEP_OVERDUE_MS = 60_000;
export const SWEEP_BATCH = 1000;
/** delivered and dead deliveries are kept this long (the dead-letter list included), then purged */
export const DELIVERY_RETENTION_DAYS = 30;

/** Full-jitter exponential backoff before attempt n+1, n = attempts made in the window (≥ 1). */
export function retryDelayMs(attemptsInWindow: number, baseMs: number, maxDelayMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxDelayMs, baseMs * 2 ** Math.min(attemptsInWindow - 1, 40));
  return Math.floor(random() * ceiling);
}

type Outcome = 'delivered' | 'retry' | 'dead' | 'skipped';

function outcomeCounter(p: Platform): client.Counter<'outcome'> {
  const name = 'webhook_deliveries_total';
  return (
    (p.metrics.registry.getSingleMetric(name) as client.Counter<'outcome'> | undefined) ??
    new client.Counter({ name, help: 'Webhook delivery attempts by outcome (delivered, retry, dead, skipped)', labelNames: ['outcome'], registers: [p.metrics.registry] })
  );
}

interface Claimed {
  id: string;
  endpoint_id: string;
  event_id: string;
  event_type: string;
  body: string;
  attempts_before_window: number;
  url: string;
  secret_kek_id: string;
  secret_sealed: Buffer;
}

export function webhookJobHandlers(p: Platform): Record<string, JobHandler> {
  const { config, log } = p;
  const box = createSecretBox(config);
  const allowPrivate = urlPolicy(config).relaxed;
  const outcomes = outcomeCounter(p);
  const claimMs = config.webhookTimeoutMs + CLAIM_MARGIN_MS;

  const claim = async (sql: Sql, deliveryId: string, attempt: number): Promise<Claimed | undefined> => {
    const [row] = await sql<Claimed[]>`
      update webhook_deliveries d set locked_until = now() + ${claimMs}::float8 * interval '1 millisecond'
      from webhook_endpoints e
      where d.id = ${deliveryId} and e.id = d.endpoint_id and d.status = 'pending' and d.attempts = ${attempt - 1}
        and (d.locked_until is null or d.locked_until < now())
      returning d.id, d.endpoint_id, d.event_id, d.event_type, d.body, d.attempts_before_window, e.url, e.secret_kek_id, e.secret_sealed`;
    return row;
  };

  const send = (d: Claimed): Promise<SendResult> => {
    const secret = box.open(d.endpoint_id, { kekId: d.secret_kek_id, sealed: d.secret_sealed });
    const headers = {
      'content-type': 'application/json',
      'user-agent': USER_AGENT,
      [SIGNATURE_HEADER]: signatureHeader(secret, d.body, Math.floor(Date.now() / 1000)),
      'wallet-event-id': d.event_id,
      'wallet-event-type': d.event_type,
      'wallet-delivery-id': d.id,
    };
    return postWebhook(d.url, headers, d.body, { timeoutMs: config.webhookTimeoutMs, allowPrivate });
  };

  /** records a failed attempt; the database's clock decides retry or dead */
  const recordFailure = async (sql: Sql, d: Claimed, attempt: number, result: Extract<SendResult, { ok: false }>): Promise<Outcome> => {
    const delayMs = retryDelayMs(attempt - d.attempts_before_window, config.webhookRetryBaseMs, config.webhookRetryMaxDelayMs);
    const next = sql`now() + ${delayMs}::float8 * interval '1 millisecond'`;
    const inWindow = sql`${next} <= window_started_at + ${config.webhookRetryHours}::float8 * interval '1 hour'`;
    const [row] = await sql<{ status: 'pending' | 'dead' }[]>`
      update webhook_deliveries
      set attempts = attempts + 1, last_status_code = ${result.statusCode}, last_error = ${result.error}, locked_until = null,
        status = case when ${inWindow} then 'pending' else 'dead' end,
        next_attempt_at = case when ${inWindow} then ${next} else null end
      where id = ${d.id} and attempts = ${attempt - 1}
      returning status`;
    if (!row) return 'skipped'; // the endpoint was deleted meanwhile
    if (row.status === 'dead') return 'dead';
    await p.jobs.enqueue('low', [deliverJob(d.id, attempt + 1)], { delayMs });
    return 'retry';
  };

  const deliver = async (leased: LeasedJob): Promise<void> => {
    const { deliveryId, attempt } = leased.job.payload as { deliveryId?: unknown; attempt?: unknown };
    const shard = typeof deliveryId === 'string' ? parseId(deliveryId, 'dlv')?.shard : undefined;
    if (shard === undefined || typeof attempt !== 'number' || !Number.isInteger(attempt) || attempt < 1) {
      log.error({ job: leased.job }, 'webhook.deliver: malformed job dropped');
      return leased.ack();
    }
    const sql = p.db.forShard(shard).sql;
    const d = await claim(sql, deliveryId as string, attempt);
    if (!d) {
      // delivered, dead, deleted, already attempted (a stale or duplicate job), or in flight elsewhere
      outcomes.inc({ outcome: 'skipped' });
      return leased.ack();
    }
    const result = await send(d);
    let outcome: Outcome;
    if (result.ok) {
      await sql`
        update webhook_deliveries
        set status = 'delivered', attempts = attempts + 1, delivered_at = now(), last_status_code = ${result.statusCode}, last_error = null, locked_until = null, next_attempt_at = null
        where id = ${d.id} and attempts = ${attempt - 1}`;
      outcome = 'delivered';
    } else {
      outcome = await recordFailure(sql, d, attempt, result);
      if (outcome === 'dead') log.warn({ deliveryId: d.id, endpointId: d.endpoint_id, attempts: attempt, error: result.error }, 'webhook delivery dead after its retry window');
    }
    outcomes.inc({ outcome });
    await leased.ack();
  };

  return { [DELIVER_JOB]: deliver };
}

/** Re-queues pending deliveries overdue by more than a minute (their job was lost); returns how many. */
export async function sweepWebhookDeliveries(p: Platform, cluster: Cluster, now = new Date(), limit = SWEEP_BATCH): Promise<number> {
  const cutoff = new Date(now.getTime() - SWEEP_OVERDUE_MS);
  // index webhook_deliveries_due
  const rows = await cluster.sql<{ id: string; attempts: number }[]>`
    select id, attempts from webhook_deliveries
    where status = 'pending' and next_attempt_at < ${cutoff} and (locked_until is null or locked_until < ${now})
    order by next_attempt_at
    limit ${limit}`;
  if (!rows.length) return 0;
  // a job id of its own per sweep minute: the original id may still sit in the queue's dedup window
  const suffix = `:sweep-${Math.floor(now.getTime() / 60_000)}`;
  await p.jobs.enqueue('low', rows.map((r) => deliverJob(r.id, r.attempts + 1, suffix)));
  return rows.length;
}

/** The maintenance role's webhook tasks: the sweep, and the purge of old finished deliveries. */
export function webhookTasks(p: Platform): MaintenanceTask[] {
  return [webhookSweep(p), webhookPurge()];
}

export function webhookSweep(p: Platform): MaintenanceTask {
  return { name: 'webhook-sweep', run: (cluster, now) => sweepWebhookDeliveries(p, cluster, now) };
}

export function webhookPurge(): MaintenanceTask {
  return {
    name: 'webhook-purge',
    run: async (cluster, now) => {
      const cutoff = new Date(now.getTime() - DELIVERY_RETENTION_DAYS * 86_400_000);
      // index webhook_deliveries_finished_age
      return purgeInBatches(async (limit) => (await cluster.sql`
        delete from webhook_deliveries where id = any(array(
          select id from webhook_deliveries where status <> 'pending' and created_at < ${cutoff} limit ${limit}))
        returning 1`).length);
    },
  };
}
