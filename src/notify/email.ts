/**
 * Email. Delivering a notification by email enqueues an 'email.send' job (priority medium) whose
 * id is `<notificationId>:email`, so the queue runs it once within its window; the job's handler
 * composes the message with nodemailer and hands it to the mailer:
 *   - SMTP_URL set: an SMTP transport, once per notification by a Redis key with a TTL
 *     (REDIS_URL set) or else by an inbox row on the user's shard, in the transaction that
 *     waits for the SMTP server's answer (a failed send rolls it back and the job retries);
 *   - otherwise the local mailbox folder (mailbox.ts), once per notification by file name.
 * A crash between the SMTP server's acceptance and the record of it sends the email again: the
 * deterministic Message-ID lets mail systems drop that duplicate.
 */
import nodemailer, { type SendMailOptions, type Transporter } from 'nodemailer';
import type { Platform } from '../platform.js';
import type { Job, JobHandler, JobQueue } from '../events/types.js';
import { once } from '../events/inbox.js';
import { parseId, shardOf } from '../shared/ids.js';
import { writeMailboxMessage, mailboxDirOf } from './mailbox.js';
import { NOTIFICATION_ID_RE, type Notification, type NotificationChannel } from './notification.js';
import type { OnceKeys } from './once-keys.js';

export const EMAIL_JOB_KIND = 'email.send';
/** deliveries of one email before the handler gives up (logged as an error with the id) */
export const EMAIL_MAX_ATTEMPTS = 8;
/** how long a sent email's Redis key keeps a redelivered job from sending it again */
export const EMAIL_ONCE_TTL_MS = 24 * 3600_000;
const INBOX_CONSUMER = 'notify-email';

export interface EmailMessage {
  notificationId: string;
  userId: string;
  to: string;
  subject: string;
  text: string;
  html: string;
  /** ISO-8601: the Date header */
  at: string;
}

export interface Mailer {
  readonly kind: 'smtp' | 'mailbox';
  /** 'duplicate' when this notification's email was already sent */
  deliver(m: EmailMessage): Promise<'sent' | 'duplicate'>;
  close(): Promise<void>;
}

/** The email channel: queues the send, so a slow mail server never holds up a partition. */
export function createEmailChannel(jobs: JobQueue): NotificationChannel {
  return {
    async send(n: Notification) {
      const payload: EmailMessage = { notificationId: n.notificationId, userId: n.userId, to: n.email!, subject: n.subject, text: n.text, html: n.html!, at: n.at };
      const job: Job = { id: `${n.notificationId}:email`, kind: EMAIL_JOB_KIND, payload: payload as unknown as Record<string, unknown> };
      await jobs.enqueue('medium', [job]);
    },
  };
}

const isString = (v: unknown, max: number): v is string => typeof v === 'string' && v.length > 0 && v.length <= max;

export function parseEmailJob(payload: Record<string, unknown>): EmailMessage | undefined {
  const m = payload as Partial<Record<keyof EmailMessage, unknown>>;
  const ok =
    isString(m.notificationId, 129) && NOTIFICATION_ID_RE.test(m.notificationId) && isString(m.userId, 64) && parseId(m.userId, 'usr') !== undefined &&
    isString(m.to, 320) && isString(m.subject, 1000) && isString(m.text, 100_000) && isString(m.html, 200_000) && isString(m.at, 64);
  return ok ? (m as EmailMessage) : undefined;
}

/**
 * The 'email.send' job handler. It acks what is done (sent, a duplicate, or given up);
 * throwing asks the worker pool to retry with backoff. A malformed job can never succeed and is
 * dropped with an error log; a send that keeps failing is given up after EMAIL_MAX_ATTEMPTS,
 * also logged with the notification id.
 */
export function emailJobHandler(p: Pick<Platform, 'log'>, mailer: Mailer): JobHandler {
  return async (leased) => {
    const m = parseEmailJob(leased.job.payload);
    if (!m) {
      p.log.error({ jobId: leased.job.id }, 'email.send: malformed job dropped');
      return leased.ack();
    }
    try {
      await mailer.deliver(m);
    } catch (err) {
      if (leased.attempt < EMAIL_MAX_ATTEMPTS) throw err;
      p.log.error({ err, notificationId: m.notificationId, attempts: leased.attempt }, 'email.send: giving up');
    }
    await leased.ack();
  };
}

function messageDomain(from: string): string {
  return /@([A-Za-z0-9.-]+)>?\s*$/.exec(from)?.[1] ?? 'wallet.local';
}

/** nodemailer options of a notification's email; the Message-ID is derived from its id */
export function mailOptions(m: EmailMessage, from: string): SendMailOptions {
  return {
    from,
    to: m.to,
    subject: m.subject,
    text: m.text,
    html: m.html,
    date: new Date(m.at),
    messageId: `<${m.notificationId.replace(':', '.')}@${messageDomain(from)}>`,
  };
}

/** Writes into the mailbox folder: the message as nodemailer would send it, byte for byte. */
export function createMailboxMailer(opts: { dir: string; from: string }): Mailer {
  const composer = nodemailer.createTransport({ streamTransport: true, buffer: true });
  return {
    kind: 'mailbox',
    async deliver(m) {
      const info = await composer.sendMail(mailOptions(m, opts.from));
      return (await writeMailboxMessage(opts.dir, m.notificationId, info.message as Buffer)) ? 'sent' : 'duplicate';
    },
    async close() {
      composer.close();
    },
  };
}

/** Sends through an SMTP server (or any nodemailer transport), once per notification. */
export function createSmtpMailer(opts: { transport: Transporter; from: string; onceBy: { keys: OnceKeys } | { db: Platform['db'] } }): Mailer {
  const send = async (m: EmailMessage) => {
    await opts.transport.sendMail(mailOptions(m, opts.from));
  };
  return {
    kind: 'smtp',
    async deliver(m) {
      if ('keys' in opts.onceBy) {
        const key = `email:${m.notificationId}`;
        if (!(await opts.onceBy.keys.claim(key, EMAIL_ONCE_TTL_MS))) return 'duplicate';
        try {
          await send(m);
        } catch (err) {
          await opts.onceBy.keys.release(key);
          throw err;
        }
        return 'sent';
      }
      const sql = opts.onceBy.db.forShard(shardOf(m.userId)).sql;
      return (await once(sql, INBOX_CONSUMER, m.notificationId, () => send(m))) ? 'sent' : 'duplicate';
    },
    async close() {
      opts.transport.close();
    },
  };
}

/** SMTP when SMTP_URL is set, else the mailbox folder (MAILBOX_DIR, default <WALLET_DATA_DIR>/mailbox). */
export function createMailer(p: Pick<Platform, 'config' | 'db'>, keys: OnceKeys): Mailer {
  const { config } = p;
  if (!config.smtpUrl) return createMailboxMailer({ dir: mailboxDirOf(config), from: config.mailFrom });
  return createSmtpMailer({ transport: nodemailer.createTransport(config.smtpUrl), from: config.mailFrom, onceBy: keys.kind === 'redis' ? { keys } : { db: p.db } });
}
