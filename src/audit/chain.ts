/**
 * The audit chain: one hash chain per cluster in audit_log (migration 006).
 *
 *   hash(n) = sha256(hash(n-1) ‖ utf8(canonicalRecord(row n))),   hash(0) = 32 zero bytes
 *
 * canonicalRecord covers every column but the hashes themselves (seq, event id, type, user key,
 * shard, at, recorded_at, data), so changing any column of a record breaks its own hash, and
 * changing its hash as well breaks the next record's link. seq is assigned here, previous + 1,
 * under a transaction-scoped advisory lock: one appender per cluster at a time, so the chain has
 * no forks and no gaps of its own making (an identity column would leave gaps on rollback, and
 * a gap is how a deleted record shows).
 *
 * Timestamps enter the hash as the text PostgreSQL gives back (UTC, microseconds), written as
 * that same text: a JS Date would drop the microseconds, and an edit of them would go unseen.
 */
import { createHash } from 'node:crypto';
import type { Queryable, Sql } from '../db/index.js';
import { isBusEvent } from '../events/handling.js';
import type { BusEvent } from '../events/types.js';
import { SHARD_COUNT } from '../shared/ids.js';

const AUDIT_LOCK = 72_616_006;
/** a record's format version, part of what is hashed, so a later format cannot be confused with this one */
const RECORD_VERSION = 'audit.v1';
export const GENESIS_HASH = Buffer.alloc(32);
/** to_char pattern of every timestamp that is hashed */
export const TIMESTAMP_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"';
/** events per appendAudit call; the consumer appends far smaller batches */
export const APPEND_MAX_EVENTS = 10_000;
/** an event bigger than this as canonical JSON is refused (the consumer dead-letters it) */
export const AUDIT_DATA_MAX_BYTES = 256 * 1024;

/** The fields of a record that are hashed, as stored. */
export interface AuditRecord {
  seq: bigint;
  eventId: string;
  type: string;
  userKey: string;
  shard: number;
  /** TIMESTAMP_FORMAT text */
  at: string;
  /** TIMESTAMP_FORMAT text */
  recordedAt: string;
  data: string;
}

export interface AuditHead {
  seq: bigint;
  /** hex */
  hash: string;
}

/** JSON with keys sorted at every level and bigints as integers: one text per value. */
export function canonicalJson(value: unknown): string {
  if (typeof value === 'bigint') return value.toString();
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined || typeof v === 'function' ? 'null' : canonicalJson(v))).join(',')}]`;
  if (value instanceof Date) return JSON.stringify(value);
  const obj = value as Record<string, unknown>;
  const parts: string[] = [];
  for (const key of Object.keys(obj).sort()) {
    const v = obj[key];
    if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
    parts.push(`${JSON.stringify(key)}:${canonicalJson(v)}`);
  }
  return `{${parts.join(',')}}`;
}

/** A JSON array is an unambiguous encoding of the fields (strings are escaped, never joined). */
export function canonicalRecord(r: AuditRecord): string {
  return JSON.stringify([RECORD_VERSION, r.seq.toString(), r.eventId, r.type, r.userKey, r.shard, r.at, r.recordedAt, r.data]);
}

export function recordHash(prevHash: Buffer, r: AuditRecord): Buffer {
  return createHash('sha256').update(prevHash).update(canonicalRecord(r), 'utf8').digest();
}

/** The event's time as TIMESTAMP_FORMAT text (millisecond precision, the bus carries no more). */
function eventTime(at: string): string | undefined {
  const ms = Date.parse(at);
  if (!Number.isFinite(ms)) return undefined;
  const iso = new Date(ms).toISOString();
  // toISOString writes 6-digit years with a sign outside 0000-9999; PostgreSQL's text differs
  if (!/^\d{4}-/.test(iso)) return undefined;
  return iso.replace(/Z$/, '000Z');
}

const NOT_STORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Why an event cannot be recorded, or undefined when it can. data: its canonicalJson, when the caller has it. */
export function auditEventProblem(e: unknown, data?: string): string | undefined {
  if (!isBusEvent(e)) return 'not a bus event (id, topic, key, type, shard, at, payload)';
  if (e.id.length > 200 || e.type.length === 0 || e.type.length > 200 || e.key.length === 0 || e.key.length > 200) return 'id, type or key empty or longer than 200 characters';
  // PostgreSQL text holds neither NUL nor half a surrogate pair (it would store another string than was hashed)
  if ([e.id, e.type, e.key].some((s) => NOT_STORABLE.test(s))) return 'id, type or key has a NUL or an unpaired surrogate';
  if (!Number.isInteger(e.shard) || e.shard < 0 || e.shard >= SHARD_COUNT) return `shard out of range: ${e.shard}`;
  if (!eventTime(e.at)) return `at is not a time: ${e.at}`;
  if (Buffer.byteLength(data ?? canonicalJson(e)) > AUDIT_DATA_MAX_BYTES) return `larger than ${AUDIT_DATA_MAX_BYTES} bytes`;
  return undefined;
}

export interface AppendResult {
  /** records written by this call (events already recorded are skipped) */
  appended: number;
  /** the chain's head after this call; undefined while the chain is empty */
  head?: AuditHead;
}

/**
 * Appends events to this cluster's chain, in the order given, in one transaction. Idempotent by
 * event id: an event already recorded (or repeated in the batch) is skipped, so a redelivered
 * event is recorded once. Throws on an event auditEventProblem refuses (the consumer checks
 * first and dead-letters those).
 */
export async function appendAudit(sql: Sql, events: readonly BusEvent[]): Promise<AppendResult> {
  if (events.length > APPEND_MAX_EVENTS) throw new RangeError(`appendAudit: ${events.length} events in one call; at most ${APPEND_MAX_EVENTS}`);
  const unique = new Map<string, { e: BusEvent; data: string }>();
  for (const e of events) {
    const data = canonicalJson(e);
    const problem = auditEventProblem(e, data);
    if (problem) throw new TypeError(`appendAudit: event ${(e as { id?: unknown })?.id}: ${problem}`);
    if (!unique.has(e.id)) unique.set(e.id, { e, data });
  }
  if (!unique.size) return { appended: 0 };
  return (await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${AUDIT_LOCK})`;
    // read after the lock: this statement's snapshot includes the previous appender's commit
    const present = await tx<{ event_id: string }[]>`select event_id from audit_log where event_id = any(${[...unique.keys()]}::text[])`;
    for (const r of present) unique.delete(r.event_id);
    const [head] = await tx<{ seq: bigint | null; hash: Buffer | null; now: string }[]>`
      select h.seq, h.hash, to_char(now() at time zone 'UTC', ${TIMESTAMP_FORMAT}) as now
      from (select 1) one left join lateral (select seq, hash from audit_log order by seq desc limit 1) h on true`;
    let seq = head!.seq ?? 0n;
    let prev = head!.hash ?? GENESIS_HASH;
    if (!unique.size) return { appended: 0, head: head!.seq === null ? undefined : { seq, hash: prev.toString('hex') } };
    const rows: (AuditRecord & { prevHash: Buffer; hash: Buffer })[] = [];
    for (const { e, data } of unique.values()) {
      const r: AuditRecord = { seq: ++seq, eventId: e.id, type: e.type, userKey: e.key, shard: e.shard, at: eventTime(e.at)!, recordedAt: head!.now, data };
      const hash = recordHash(prev, r);
      rows.push({ ...r, prevHash: prev, hash });
      prev = hash;
    }
    await insertRecords(tx, rows);
    return { appended: rows.length, head: { seq, hash: prev.toString('hex') } };
  })) as AppendResult;
}

/**
 * One statement for the whole batch. Times (and seq) travel as text and are cast in SQL: a
 * parameter typed timestamptz goes through postgres.js's Date serializer, which would drop the
 * microseconds the hash covers.
 */
async function insertRecords(tx: Queryable, rows: (AuditRecord & { prevHash: Buffer; hash: Buffer })[]): Promise<void> {
  await tx`insert into audit_log (seq, event_id, type, user_key, shard, at, recorded_at, data, prev_hash, hash)
    select seq::bigint, event_id, type, user_key, shard, at::timestamptz, recorded_at::timestamptz, data, decode(prev_hash, 'hex'), decode(hash, 'hex')
    from unnest(${rows.map((r) => r.seq.toString())}::text[], ${rows.map((r) => r.eventId)}::text[], ${rows.map((r) => r.type)}::text[],
      ${rows.map((r) => r.userKey)}::text[], ${rows.map((r) => r.shard)}::smallint[], ${rows.map((r) => r.at)}::text[],
      ${rows.map((r) => r.recordedAt)}::text[], ${rows.map((r) => r.data)}::text[],
      ${rows.map((r) => r.prevHash.toString('hex'))}::text[], ${rows.map((r) => r.hash.toString('hex'))}::text[])
      as t(seq, event_id, type, user_key, shard, at, recorded_at, data, prev_hash, hash)`;
}
