/**
 * Security events (sign-ins, failed sign-ins, KEK rotations) go to the audit-logs topic through
 * the outbox, in the caller's transaction when it has one; the audit consumer chains them with
 * the money events. They never carry a password or a secret, and a failed sign-in for an email
 * that has no account carries a keyed fingerprint of the email, never the email itself.
 */
import { createHmac } from 'node:crypto';
import { userInfo } from 'node:os';
import type { Db, Queryable } from '../db/index.js';
import { appendOutbox } from '../events/outbox.js';
import { hashShard, newId } from '../shared/ids.js';
import { normalizeEmail } from '../users/service.js';

export type SecurityEventType = 'security.login' | 'security.login_failed' | 'security.kek_rotated';

export interface SecurityEvent {
  type: SecurityEventType;
  /** the account concerned, when there is one: the partition key */
  userId?: string;
  /** a stable non-personal partition key when there is no user (e.g. email:<fingerprint>, system:vault) */
  subject?: string;
  /** the user's shard, or the shard of the database the event commits with */
  shard: number;
  ip?: string;
  detail?: Record<string, unknown>;
}

/** keys a security event's detail must never have */
const SECRET_KEYS = /pass(word)?|secret|cvc|token|^pan$|^email$/i;

/** Writes the event's outbox row (topic audit-logs) with sql; returns the event id. */
export async function recordSecurityEvent(sql: Queryable, e: SecurityEvent): Promise<string> {
  const leaked = Object.keys(e.detail ?? {}).find((k) => SECRET_KEYS.test(k));
  if (leaked) throw new Error(`security event ${e.type}: detail.${leaked} must not be recorded`);
  const eventId = newId('evt', e.shard);
  const payload: Record<string, unknown> = { ...e.detail };
  if (e.userId) payload.userId = e.userId;
  if (e.ip) payload.ip = e.ip;
  await appendOutbox(sql, [{ eventId, topic: 'audit-logs', partitionKey: e.userId ?? e.subject ?? 'system', shard: e.shard, type: e.type, payload }]);
  return eventId;
}

/**
 * A keyed fingerprint of an email (HMAC-SHA256, 128 bits, hex): the same email always gives the
 * same fingerprint, so repeated attempts on one address are visible, but a reader of the audit
 * log cannot test guesses without the key. Keyed by the JWT secret with its own label (no new
 * secret to deploy); rotating JWT_SECRET starts new fingerprints.
 */
export function emailFingerprint(secret: string, email: string): string {
  return createHmac('sha256', secret).update(`wallet-audit-email\0${normalizeEmail(email)}`).digest('hex').slice(0, 32);
}

/**
 * The event of a failed sign-in. A known account's failure is its user's event (its key and
 * shard); an unknown email's is keyed by the email's fingerprint and goes with the failure
 * record it commits with (`shard`: that record's shard).
 */
export function failedLoginEvent(a: { user?: { id: string; shard: number }; email: string; ip: string; secret: string; shard: number }): SecurityEvent {
  if (a.user) return { type: 'security.login_failed', userId: a.user.id, shard: a.user.shard, ip: a.ip, detail: { reason: 'wrong_password' } };
  const fingerprint = emailFingerprint(a.secret, a.email);
  return { type: 'security.login_failed', subject: `email:${fingerprint}`, shard: a.shard, ip: a.ip, detail: { reason: 'unknown_email', emailFingerprint: fingerprint } };
}

export const VAULT_SUBJECT = 'system:vault';

/** After `wallet vault rotate-kek`: who ran it (OS user), which KEK is active, how many keys moved. */
export async function recordKekRotation(db: Db, r: { activeKek: string; rewrapped: number }): Promise<string> {
  const shard = hashShard(VAULT_SUBJECT);
  let operator = 'unknown';
  try {
    operator = userInfo().username;
  } catch {
    // no passwd entry for the uid (some containers): the rotation is still recorded
  }
  return recordSecurityEvent(db.forShard(shard).sql, { type: 'security.kek_rotated', subject: VAULT_SUBJECT, shard, detail: { activeKek: r.activeKek, rewrapped: r.rewrapped, operator } });
}
