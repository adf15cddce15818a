/**
 * Push notifications. The platform talks to a push provider (APNs, FCM, ...) through
 * PushChannel; the development sink stands in for one: it keeps the most recent pushes in a
 * bounded ring for tests and operators, counts them, and logs a debug line per push that names
 * the event, never the person or the text.
 */
import type { Logger } from '../observability/logger.js';
import type { Notification, NotificationChannel } from './notification.js';

export type PushChannel = NotificationChannel;

export interface PushRecord {
  notificationId: string;
  userId: string;
  eventType: string;
  title: string;
  body: string;
  at: string;
}

export interface DevPushSink extends PushChannel {
  /** pushes received since start */
  readonly count: number;
  /** the most recent pushes (at most the ring's size), oldest first */
  recent(limit?: number): PushRecord[];
}

export const DEV_PUSH_RING_SIZE = 1000;

export function createDevPushSink(opts: { log?: Logger; ringSize?: number } = {}): DevPushSink {
  const size = opts.ringSize ?? DEV_PUSH_RING_SIZE;
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`ringSize must be a positive integer, got ${size}`);
  const ring: PushRecord[] = [];
  let next = 0;
  let count = 0;
  return {
    get count() {
      return count;
    },
    async send(n: Notification) {
      const record: PushRecord = { notificationId: n.notificationId, userId: n.userId, eventType: n.eventType, title: n.subject, body: n.text, at: new Date().toISOString() };
      if (ring.length < size) ring.push(record);
      else ring[next] = record;
      next = (next + 1) % size;
      count++;
      opts.log?.debug({ eventId: n.eventId, eventType: n.eventType, role: n.role }, 'push (development sink)');
    },
    recent(limit = size) {
      const ordered = ring.length < size ? ring : [...ring.slice(next), ...ring.slice(0, next)];
      return limit > 0 ? ordered.slice(-limit) : [];
    },
  };
}
