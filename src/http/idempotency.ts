/**
 * Idempotency for money-moving POSTs (API.md): the key is required; the record is written by
 * the ledger batch in the same transaction as the effect (src/ledger/engine.ts); a duplicate
 * that arrives while the first is in flight in this process gets 409 at once. A duplicate in
 * another process waits on the record's unique index and then replays: never a second movement.
 */
import { formatPosition } from '../db/consistency.js';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ProblemError } from './problem.js';
import { EngineUnavailable, requestHash } from '../ledger/engine.js';
import type { CommandResult } from '../ledger/types.js';

export interface InFlight {
  /** claims (user, key); throws 409 while another request holds it */
  claim(userId: string, key: string): () => void;
}

export function createInFlight(max: number): InFlight {
  const held = new Set<string>();
  return {
    claim(userId, key) {
      const k = `${userId}\u0000${key}`;
      if (held.has(k)) throw new ProblemError('conflict', 'A request with this Idempotency-Key is still in progress.');
      if (held.size >= max) throw new ProblemError('unavailable', 'Too many requests in flight.', { headers: { 'retry-after': '1' } });
      held.add(k);
      return () => held.delete(k);
    },
  };
}

const KEY_RE = /^[\x21-\x7e]{1,255}$/;

export function idempotencyKey(req: FastifyRequest): string {
  const raw = req.headers['idempotency-key'];
  if (raw === undefined || raw === '') throw new ProblemError('idempotency_key_required', 'Send an Idempotency-Key header (1-255 printable characters) with every request that moves money.');
  if (typeof raw !== 'string' || !KEY_RE.test(raw)) throw new ProblemError('validation_failed', 'The Idempotency-Key header must be 1-255 printable ASCII characters.');
  return raw;
}

/** The fingerprint of a request: same key with a different fingerprint is a reuse. */
export function fingerprint(req: FastifyRequest): string {
  return requestHash([req.method, req.routeOptions.url, req.params ?? null, req.body ?? null]);
}

export function sendResult(reply: FastifyReply, result: CommandResult): FastifyReply {
  reply.code(result.status).type(result.status >= 400 ? 'application/problem+json' : 'application/json; charset=utf-8');
  if (result.replayed) reply.header('idempotent-replayed', 'true');
  // the versions this request left on the caller's wallets: sent back on reads, they keep any
  // process from answering with an older balance (src/wallets/service.ts); the WAL position
  // keeps replica reads from being older than the write (src/db/consistency.ts)
  const token = [...(result.versions ?? [])].map(([id, v]) => `${id}=${v}`);
  if (result.position) token.push(formatPosition(result.position.cluster, result.position.lsn));
  if (token.length) reply.header('wallet-consistency', token.join(','));
  return reply.send(result.json);
}

/**
 * Runs one money-moving request under its Idempotency-Key (required), held in flight in this
 * process until answered, and sends the answer (the first one, or its replay).
 */
export async function idempotentRequest(
  inFlight: InFlight,
  req: FastifyRequest,
  reply: FastifyReply,
  run: (idem: { key: string; requestHash: string }) => Promise<CommandResult>,
): Promise<FastifyReply> {
  const key = idempotencyKey(req);
  const release = inFlight.claim(req.principal!.userId, key);
  try {
    return sendResult(reply, await run({ key, requestHash: fingerprint(req) }).catch(unavailableFrom));
  } finally {
    release();
  }
}

/** Maps engine back-pressure to 503 with Retry-After. */
export function unavailableFrom(err: unknown): never {
  if (err instanceof EngineUnavailable) throw new ProblemError('unavailable', 'The ledger is busy; retry with the same Idempotency-Key.', { headers: { 'retry-after': '1' } });
  throw err;
}
