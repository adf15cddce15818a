/**
 * The event roles of DESIGN.md, started from one place:
 * - `notify`: the notification consumers (money event → per-user notification → push/email) and
 *   the webhook fan-out (money event → delivery rows → jobs);
 * - `workers`: the worker pool over the priority queues (webhook deliveries, emails), the
 *   audit-log appender and the clearing consumer (credit legs of transfers between clusters);
 * - `relay`: the outbox relay.
 * Consumers subscribe before the relay starts, so with the in-process bus nothing is published
 * to a topic whose groups are not yet listening.
 */
import type { Role } from '../config/index.js';
import type { Platform } from '../platform.js';
import { purgeInBatches, type MaintenanceTask } from '../maintenance/index.js';
import { createNotifications } from '../notify/index.js';
import { webhookConsumers, webhookJobHandlers, webhookTasks } from '../webhooks/index.js';
import { auditConsumers } from '../audit/consumer.js';
import { clearingConsumers } from '../transfers/clearing.js';
import { createRelay } from './relay.js';
import { startWorkers } from './workers.js';
import type { ConsumerSpec, JobHandler, Subscription } from './types.js';

export interface EventRoles {
  stop(): Promise<void>;
}

export function startEventRoles(p: Platform, roles: readonly Role[]): EventRoles {
  const notify = roles.includes('notify');
  const workers = roles.includes('workers');
  // The in-process bus reaches only this process's consumers: a relay here without them would
  // mark events sent that no group ever handles.
  if (p.bus.kind === 'memory' && roles.includes('relay') && !(notify && workers)) {
    throw new Error('WALLET_ROLES: with the in-process bus (no NATS_URL) the relay must run with notify and workers in one process; set NATS_URL to run them apart');
  }
  const notifications = notify || workers ? createNotifications(p) : undefined;

  const specs: ConsumerSpec[] = [];
  if (notify) specs.push(...notifications!.consumers, ...webhookConsumers(p));
  if (workers) specs.push(...auditConsumers(p), ...clearingConsumers(p));
  const subs: Subscription[] = specs.map((s) => p.bus.subscribe(s.group, s.topic, s.handler, s.options));

  const handlers: Record<string, JobHandler> = { ...(workers ? { ...notifications!.jobHandlers, ...webhookJobHandlers(p) } : {}) };
  const pool = workers ? startWorkers(p.jobs, handlers, p.config, { log: p.log, metrics: p.metrics.events }) : undefined;
  const relay = roles.includes('relay') ? createRelay(p).start() : undefined;

  return {
    async stop() {
      await relay?.stop();
      await Promise.all(subs.map((s) => s.stop()));
      await pool?.stop();
      await notifications?.close();
    },
  };
}

/** housekeeping of the backbone's tables, run by the maintenance role */
export function eventTasks(p: Platform): MaintenanceTask[] {
  return [
    {
      name: 'outbox-purge',
      run: async (c, now) => {
        const cutoff = new Date(now.getTime() - p.config.outboxRetentionHours * 3_600_000);
        return purgeInBatches(async (limit) => (await c.sql`delete from outbox where seq = any(array(select seq from outbox where sent_at < ${cutoff} limit ${limit})) returning 1`).length);
      },
    },
    {
      name: 'inbox-purge',
      run: async (c, now) => {
        const cutoff = new Date(now.getTime() - p.config.inboxRetentionDays * 86_400_000);
        return purgeInBatches(async (limit) => (await c.sql`delete from consumer_inbox where ctid = any(array(select ctid from consumer_inbox where at < ${cutoff} limit ${limit})) returning 1`).length);
      },
    },
    ...webhookTasks(p),
  ];
}
