/**
 * `wallet audit verify`: walks a cluster's chain in seq order, a page at a time (keyset on the
 * primary key, so memory stays one page however long the chain), and recomputes every link.
 *
 * What the table alone proves: an edited record (any column: its hash no longer matches, or the
 * next record's link breaks when the hash was edited too), a deleted record anywhere but at the
 * end (a sequence gap), a reordered record (seq is hashed, and the links break).
 *
 * What it cannot prove: that the newest records were not deleted (a shorter chain is still a
 * valid chain), nor that the whole chain was not recomputed by someone with write access (the
 * hash is unkeyed). Both need a record of the head kept outside this database: the verify
 * prints each cluster's head as `<cluster>:<seq>:<hash>`; operators keep the latest (ticket,
 * log archive, another system) and pass it back as an anchor (`--anchor`). The anchored record
 * must still exist with that hash, so a truncation or a rewrite of anything up to the anchor is
 * found; records appended after the last anchor stay as trusted as the database.
 */
import type { Db, Queryable } from '../db/index.js';
import { GENESIS_HASH, TIMESTAMP_FORMAT, recordHash, type AuditHead, type AuditRecord } from './chain.js';

export type AuditProblem =
  /** the record's hash is not the hash of its columns and its prev_hash: the record was edited */
  | 'hash_mismatch'
  /** prev_hash is not the previous record's hash: a record's hash was edited, or records were replaced */
  | 'broken_link'
  /** seq does not follow the previous one: records were deleted (before this one) */
  | 'sequence_gap'
  /** the anchored record is gone: the chain ends before it (the newest records were deleted) */
  | 'anchor_missing'
  /** the anchored record has another hash: the chain up to it was rewritten */
  | 'anchor_mismatch';

export interface AuditFinding {
  seq: bigint;
  problem: AuditProblem;
  detail: string;
}

export interface VerifyOptions {
  /** records per page; default 5,000 (at most 50,000) */
  pageSize?: number;
  /** a head recorded earlier: the record at its seq must exist with its hash */
  anchor?: AuditHead;
  /** findings kept in the result (all are counted); default 100 */
  maxFindings?: number;
  onProgress?: (checked: number) => void;
}

export interface VerifyResult {
  ok: boolean;
  /** records checked */
  checked: number;
  /** the last record checked; undefined for an empty chain */
  head?: AuditHead;
  findings: AuditFinding[];
  findingsTotal: number;
}

export const VERIFY_PAGE_MAX = 50_000;
const MIN_BIGINT = -(2n ** 63n);

interface Row {
  seq: bigint;
  event_id: string;
  type: string;
  user_key: string;
  shard: number;
  at: string;
  recorded_at: string;
  data: string;
  prev_hash: Buffer | null;
  hash: Buffer | null;
}

/** Verifies one cluster's chain up to the head it has when the verify starts (appends go on meanwhile). */
export async function verifyAuditChain(sql: Queryable, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const pageSize = Math.min(VERIFY_PAGE_MAX, Math.max(1, Math.floor(opts.pageSize ?? 5_000)));
  const maxFindings = Math.max(0, opts.maxFindings ?? 100);
  const findings: AuditFinding[] = [];
  let findingsTotal = 0;
  const find = (seq: bigint, problem: AuditProblem, detail: string) => {
    findingsTotal++;
    if (findings.length < maxFindings) findings.push({ seq, problem, detail });
  };

  const [top] = await sql<{ last: bigint | null }[]>`select max(seq) as last from audit_log`;
  const last = top?.last ?? null;
  let prev: { seq: bigint; hash: Buffer } = { seq: 0n, hash: GENESIS_HASH };
  let checked = 0;
  let anchorSeen = false;
  // MIN_BIGINT, not 0: a record moved to seq <= 0 is still read (and reported)
  for (let after = MIN_BIGINT; last !== null; ) {
    const rows = await sql<Row[]>`
      select seq, event_id, type, user_key, shard, data, prev_hash, hash,
        to_char(at at time zone 'UTC', ${TIMESTAMP_FORMAT}) as at, to_char(recorded_at at time zone 'UTC', ${TIMESTAMP_FORMAT}) as recorded_at
      from audit_log where seq > ${after} and seq <= ${last} order by seq limit ${pageSize}`;
    for (const r of rows) {
      const prevHash = r.prev_hash ?? Buffer.alloc(0);
      const hash = r.hash ?? Buffer.alloc(0);
      if (r.seq !== prev.seq + 1n) find(r.seq, 'sequence_gap', r.seq > prev.seq + 1n ? `records ${prev.seq + 1n}..${r.seq - 1n} are missing` : `seq ${r.seq} out of order`);
      else if (!prevHash.equals(prev.hash)) find(r.seq, 'broken_link', `prev_hash ${prevHash.toString('hex')} is not the previous record's hash ${prev.hash.toString('hex')}`);
      if (!recordHash(prevHash, toRecord(r)).equals(hash)) find(r.seq, 'hash_mismatch', `record ${r.event_id} does not hash to its stored hash`);
      if (opts.anchor && r.seq === opts.anchor.seq) {
        anchorSeen = true;
        if (hash.toString('hex') !== opts.anchor.hash.toLowerCase()) find(r.seq, 'anchor_mismatch', `hash ${hash.toString('hex')}, anchored ${opts.anchor.hash}`);
      }
      prev = { seq: r.seq, hash };
      checked++;
    }
    opts.onProgress?.(checked);
    if (rows.length < pageSize) break;
    after = rows[rows.length - 1]!.seq;
  }
  if (opts.anchor && !anchorSeen) find(opts.anchor.seq, 'anchor_missing', checked ? `the chain ends at seq ${prev.seq} (or skips the anchor); records after it were deleted` : 'the chain is empty');
  return { ok: findingsTotal === 0, checked, head: checked ? { seq: prev.seq, hash: prev.hash.toString('hex') } : undefined, findings, findingsTotal };
}

function toRecord(r: Row): AuditRecord {
  return { seq: r.seq, eventId: r.event_id, type: r.type, userKey: r.user_key, shard: r.shard, at: r.at, recordedAt: r.recorded_at, data: r.data };
}

export interface ClusterVerifyResult extends VerifyResult {
  cluster: string;
  durationMs: number;
}

/** Every cluster's chain (in parallel), each against its anchor when one is given. */
export async function verifyAuditClusters(db: Db, opts: Omit<VerifyOptions, 'anchor' | 'onProgress'> & { anchors?: ReadonlyMap<string, AuditHead> } = {}): Promise<{ ok: boolean; clusters: ClusterVerifyResult[] }> {
  const clusters = await Promise.all(
    db.clusters.map(async (c) => {
      const started = performance.now();
      const result = await verifyAuditChain(c.sql, { ...opts, anchor: opts.anchors?.get(c.name) });
      return { cluster: c.name, ...result, durationMs: Math.round(performance.now() - started) };
    }),
  );
  return { ok: clusters.every((c) => c.ok), clusters };
}

/** `<cluster>:<seq>:<hash>`, what the CLI prints and takes back as --anchor */
export function formatAnchor(cluster: string, head: AuditHead): string {
  return `${cluster}:${head.seq}:${head.hash}`;
}

export function parseAnchor(text: string): { cluster: string; head: AuditHead } | undefined {
  const m = /^([^:\s]+):(\d{1,19}):([0-9a-fA-F]{64})$/.exec(text.trim());
  if (!m) return undefined;
  return { cluster: m[1]!, head: { seq: BigInt(m[2]!), hash: m[3]!.toLowerCase() } };
}
