/**
 * A notification as it travels on 'notification-events': everything its delivery needs (the
 * address, the rendered texts, the channels the user wants), so delivering one reads nothing.
 * Its id is `${money event id}:${user id}`: a re-run of the fan-out republishes the same ids and
 * the bus drops them inside its de-duplication window; the channels de-duplicate after that.
 */
import { PoisonEvent, type BusEvent } from '../events/types.js';
import type { PartyRole } from '../events/parties.js';
import { shardOf } from '../shared/ids.js';

export const NOTIFICATION_CREATED = 'notification.created';
export const CHANNELS = ['email', 'push'] as const;
export type ChannelName = (typeof CHANNELS)[number];

export interface Notification {
  notificationId: string;
  userId: string;
  eventId: string;
  eventType: string;
  role: PartyRole;
  /** what to deliver through, already filtered by the user's preferences; never empty */
  channels: ChannelName[];
  /** only when channels has email */
  email?: string;
  subject: string;
  text: string;
  /** only when channels has email (push needs no HTML; it would only make the event larger) */
  html?: string;
  /** ISO-8601, when the money event happened */
  at: string;
}

/** One way of reaching a user. Push, email (through the job queue) and webhooks sit behind it. */
export interface NotificationChannel {
  send(n: Notification): Promise<void>;
}

/** ids we write into file names and Message-IDs: `<event id>:<user id>`, nothing else */
export const NOTIFICATION_ID_RE = /^[A-Za-z0-9_-]{1,64}:[A-Za-z0-9_-]{1,64}$/;

export function notificationEvent(n: Notification, at = new Date()): BusEvent {
  return {
    id: n.notificationId,
    topic: 'notification-events',
    key: n.userId,
    type: NOTIFICATION_CREATED,
    shard: shardOf(n.userId),
    at: at.toISOString(),
    payload: n as unknown as Record<string, unknown>,
  };
}

const ROLES = new Set<string>(['owner', 'sender', 'recipient', 'payer', 'merchant']);
const isString = (v: unknown, max: number): v is string => typeof v === 'string' && v.length > 0 && v.length <= max;

/** The notification in a bus event; PoisonEvent when anything is off (it could never be delivered). */
export function parseNotification(event: BusEvent): Notification {
  const bad = (why: string) => new PoisonEvent(`notify-deliver: ${event.id}: ${why}`);
  if (event.type !== NOTIFICATION_CREATED) throw bad(`unknown event type ${JSON.stringify(event.type)}`);
  const n = event.payload as Partial<Record<keyof Notification, unknown>>;
  if (typeof n !== 'object' || n === null) throw bad('payload is not an object');
  if (!isString(n.notificationId, 129) || !NOTIFICATION_ID_RE.test(n.notificationId)) throw bad('notificationId is malformed');
  if (!isString(n.userId, 64) || !isString(n.eventId, 64) || !isString(n.eventType, 64)) throw bad('userId, eventId or eventType is missing');
  if (!isString(n.role, 16) || !ROLES.has(n.role)) throw bad('role is unknown');
  if (!Array.isArray(n.channels) || !n.channels.length || n.channels.length > CHANNELS.length || !n.channels.every((c) => c === 'email' || c === 'push')) throw bad('channels are malformed');
  if (!isString(n.subject, 1000) || !isString(n.text, 100_000) || !isString(n.at, 64)) throw bad('subject, text or at is missing');
  if (n.channels.includes('email') && (!isString(n.email, 320) || !isString(n.html, 200_000))) throw bad('an email notification needs email and html');
  return n as Notification;
}
