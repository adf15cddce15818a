/**
 * JetStream publishes with asynchronous acknowledgements, batched: every message of a batch is
 * sent with core NATS (Nats-Msg-Id header, reply subject = one inbox prefix + a token), and one
 * wildcard subscription matches the acks back to their batch. A batch resolves when every
 * message is acknowledged by the stream (stored, or recognised as a duplicate of a stored id);
 * any error ack, or no ack within the timeout, rejects it. Nothing is assumed stored without
 * its ack, so the relay's "mark sent after the bus acknowledged" holds.
 *
 * Why not js.publish(): it is a request per message, and the client allocates a request
 * object, a timer and two Error objects (for stack traces) per call; at tens of thousands of
 * messages a second that was most of the CPU (bench/README.md, bench:notify).
 */
import { createInbox, headers, type NatsConnection, type Subscription } from '@nats-io/transport-node';

export interface OutgoingMessage {
  subject: string;
  data: string;
  msgId: string;
}

interface Batch {
  left: number;
  failed?: Error;
  resolve(): void;
  reject(err: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

export interface AsyncPublisher {
  publish(messages: readonly OutgoingMessage[]): Promise<void>;
  close(): void;
}

export function createAsyncPublisher(nc: NatsConnection, timeoutMs = 10_000): AsyncPublisher {
  const prefix = `${createInbox()}.`;
  const pending = new Map<string, Batch>();
  let seq = 0;
  const settle = (b: Batch) => {
    clearTimeout(b.timer);
    if (b.failed) b.reject(b.failed);
    else b.resolve();
  };
  const sub: Subscription = nc.subscribe(`${prefix}*`, {
    callback: (err, msg) => {
      if (err) return;
      const token = msg.subject.slice(prefix.length);
      const batch = pending.get(token);
      if (!batch) return; // late ack of a timed-out batch
      pending.delete(token);
      const body = msg.data.length ? msg.string() : '';
      // {"stream":"X","seq":1} or {"stream":"X","seq":1,"duplicate":true}; errors carry "error"
      if (!body.startsWith('{"stream"') && !batch.failed) {
        batch.failed = new Error(`JetStream refused a publish: ${body.slice(0, 300) || 'no responders (no stream for the subject?)'}`);
      }
      if (--batch.left === 0) settle(batch);
    },
  });

  return {
    publish(messages) {
      if (!messages.length) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const tokens: string[] = [];
        const batch: Batch = {
          left: messages.length,
          resolve,
          reject,
          timer: setTimeout(() => {
            for (const t of tokens) pending.delete(t);
            reject(new Error(`JetStream did not acknowledge ${batch.left} of ${messages.length} messages within ${timeoutMs} ms`));
          }, timeoutMs),
        };
        try {
          for (const m of messages) {
            const token = (seq++).toString(36);
            tokens.push(token);
            pending.set(token, batch);
            const h = headers();
            h.set('Nats-Msg-Id', m.msgId);
            nc.publish(m.subject, m.data, { reply: prefix + token, headers: h });
          }
        } catch (err) {
          clearTimeout(batch.timer);
          for (const t of tokens) pending.delete(t);
          reject(err as Error);
        }
      });
    },
    close() {
      sub.unsubscribe();
      for (const b of new Set(pending.values())) {
        clearTimeout(b.timer);
        b.reject(new Error('publisher closed'));
      }
      pending.clear();
    },
  };
}
