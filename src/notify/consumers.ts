/**
 * The notify role's consumers and job handler.
 *   'notify' on transaction-events: a money event → its parties → one 'notification.created'
 *     event per party on notification-events, rendered from the templates, with the channels
 *     the party's preferences allow (none: no event). Recipients come from the cache, misses
 *     from one query per cluster. Its effect is publishing with deterministic ids, not a write
 *     in PostgreSQL: a redelivered money event republishes the same ids, which the bus drops
 *     inside its window, and the channels de-duplicate after that.
 *   'notify-deliver' on notification-events: each channel of the notification, with no
 *     database query (the benchmark path): push directly, once per notification (a Redis key or
 *     an in-process key); email as an 'email.send' job.
 *   'email.send' jobs: email.ts.
 * Unknown types and malformed events throw PoisonEvent: dead letter with the reason.
 */
import type { Platform } from '../platform.js';
import { PoisonEvent, type BusEvent, type ConsumerSpec, type JobHandler } from '../events/types.js';
import { eventParties } from '../events/parties.js';
import { parseId } from '../shared/ids.js';
import { createEmailChannel, createMailer, emailJobHandler, EMAIL_JOB_KIND, type Mailer } from './email.js';
import { createDevPushSink, type PushChannel } from './push.js';
import { createMemoryOnceKeys, createRedisOnceKeys, type OnceKeys } from './once-keys.js';
import { createRecipientDirectory, type Recipient } from './preferences.js';
import { parseMoneyEvent, renderNotification } from './templates.js';
import { notificationEvent, parseNotification, type ChannelName, type Notification, type NotificationChannel } from './notification.js';

export const NOTIFY_GROUP = 'notify';
export const DELIVER_GROUP = 'notify-deliver';
/**
 * How long a sent push's key keeps a redelivery from pushing again. Redeliveries come within
 * minutes (max deliveries × ack wait); a fan-out re-run within the bus's de-duplication window
 * never reaches us. An hour covers both without keeping a key per push for days.
 */
export const PUSH_ONCE_TTL_MS = 3600_000;

export interface NotificationDeps {
  push?: PushChannel;
  mailer?: Mailer;
  /** where "sent once" is recorded for push (and SMTP with Redis); default: Redis when REDIS_URL is set */
  onceKeys?: OnceKeys;
}

export interface Notifications {
  consumers: ConsumerSpec[];
  jobHandlers: Record<string, JobHandler>;
  push: PushChannel;
  /** closes what this module opened (the Redis client, the SMTP transport) */
  close(): Promise<void>;
}

/** the channels a recipient wants for an event type, in a fixed order */
export function channelsFor(r: Recipient, eventType: string): ChannelName[] {
  const prefs = r.preferences;
  if ((prefs.mutedEventTypes as string[]).includes(eventType)) return [];
  const out: ChannelName[] = [];
  if (prefs.email && r.email) out.push('email');
  if (prefs.push) out.push('push');
  return out;
}

/** a channel that acts once per notification: claims the key first, gives it back if sending fails */
function oncePerNotification(name: ChannelName, channel: NotificationChannel, keys: OnceKeys, ttlMs: number): NotificationChannel {
  return {
    async send(n) {
      const key = `${name}:${n.notificationId}`;
      if (!(await keys.claim(key, ttlMs))) return;
      try {
        await channel.send(n);
      } catch (err) {
        await keys.release(key);
        throw err;
      }
    },
  };
}

export function createNotifications(p: Platform, deps: NotificationDeps = {}): Notifications {
  const push = deps.push ?? createDevPushSink({ log: p.log });
  const keys =
    deps.onceKeys ?? (p.config.redisUrl ? createRedisOnceKeys({ url: p.config.redisUrl, cluster: p.config.redisCluster, prefix: `wallet:${p.config.busNamespace}:notify:once:` }) : createMemoryOnceKeys());
  const mailer = deps.mailer ?? createMailer(p, keys);
  const recipients = createRecipientDirectory(p);
  const channels: Record<ChannelName, NotificationChannel> = {
    push: oncePerNotification('push', push, keys, PUSH_ONCE_TTL_MS),
    // the job id makes the enqueue once per notification; the mailer de-duplicates beyond the queue's window
    email: createEmailChannel(p.jobs),
  };

  const fanOut = async (event: BusEvent): Promise<void> => {
    const facts = parseMoneyEvent(event);
    const parties = eventParties(event);
    if (!parties.length) throw new PoisonEvent(`notify: ${event.type} ${event.id}: no parties`);
    for (const party of parties) if (!parseId(party.userId, 'usr')) throw new PoisonEvent(`notify: ${event.type} ${event.id}: the ${party.role} is not a user id`);
    const people = await recipients.get(parties.map((x) => x.userId));
    const out: BusEvent[] = [];
    for (const party of parties) {
      const who = people.get(party.userId);
      if (!who) {
        p.log.warn({ eventId: event.id, eventType: event.type, role: party.role }, 'notify: a party of the event is not a user here; not notified');
        continue;
      }
      const wanted = channelsFor(who, event.type);
      if (!wanted.length) continue;
      const other = parties.find((x) => x.userId !== party.userId);
      const rendered = renderNotification(facts, party.role, { recipient: who.name, counterparty: other && people.get(other.userId)?.name });
      const withEmail = wanted.includes('email');
      const n: Notification = {
        notificationId: `${event.id}:${who.id}`,
        userId: who.id,
        eventId: event.id,
        eventType: event.type,
        role: party.role,
        channels: wanted,
        ...(withEmail ? { email: who.email } : {}),
        subject: rendered.subject,
        text: rendered.text,
        ...(withEmail ? { html: rendered.html } : {}),
        at: facts.at,
      };
      out.push(notificationEvent(n));
    }
    if (out.length) await p.bus.publish(out);
  };

  const deliver = async (event: BusEvent): Promise<void> => {
    const n = parseNotification(event);
    await Promise.all(n.channels.map((c) => channels[c].send(n)));
  };

  return {
    push,
    consumers: [
      { group: NOTIFY_GROUP, topic: 'transaction-events', handler: fanOut },
      { group: DELIVER_GROUP, topic: 'notification-events', handler: deliver },
    ],
    jobHandlers: { [EMAIL_JOB_KIND]: emailJobHandler(p, mailer) },
    async close() {
      await Promise.allSettled([mailer.close(), keys.close()]);
    },
  };
}
