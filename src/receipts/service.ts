/**
 * Receipts: one history item of a user as a document they can show or share.
 *
 * A shareable receipt is reached through a signed, expiring URL: /v1/receipts/{token}, where
 *   token = base64url("<transaction id>.<user id>.<issued at s>.<expires at s>") "." base64url(HMAC-SHA256)
 * signed with RECEIPT_SIGNING_KEY. The token names exactly one row of `transactions` (the
 * owner's side of the movement), so it grants nothing but that receipt until it expires.
 *
 * Lookups read the owner's own row by its primary key (user_id, id, created_at); created_at is
 * the time encoded in the id, so the query is pruned to one monthly partition.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { publicBaseUrl, type Config } from '../config/index.js';
import type { Db } from '../db/index.js';
import type { HistoryRow } from '../ledger/types.js';
import { parseId } from '../shared/ids.js';

/** History items have the id of the transfer, top-up, payment or refund they record. */
export const RECEIPT_ID_PREFIXES = ['txn', 'top', 'pay', 'ref'] as const;

/** A pending item (an authorized payment) can still change, so shared caches keep it briefly. */
export const PENDING_RECEIPT_MAX_AGE_SECONDS = 60;
/** The most a shared cache may keep any receipt, however long its URL is valid. */
export const RECEIPT_MAX_AGE_SECONDS = 86_400;
/**
 * Issue times are rounded down to a bucket so that repeated requests for the same receipt get
 * the same URL (one CDN entry, a stable ETag on the private answer). A URL is therefore valid
 * for between ttl - bucket and ttl seconds from the request; the bucket is a tenth of the TTL,
 * at most an hour.
 */
export const RECEIPT_ISSUE_BUCKET_MAX_SECONDS = 3600;

export interface ReceiptGrant {
  transactionId: string;
  userId: string;
  /** whole seconds */
  issuedAt: Date;
  /** whole seconds; the URL answers while now < expiresAt */
  expiresAt: Date;
}

export interface Receipt {
  id: string;
  type: HistoryRow['type'];
  direction: HistoryRow['direction'];
  amountMinor: bigint;
  currency: string;
  status: HistoryRow['status'];
  counterparty?: string;
  note?: string;
  createdAt: Date;
  issuedAt: Date;
  expiresAt: Date;
  receiptUrl: string;
}

export type ReceiptResult = { ok: true; value: Receipt } | { ok: false; error: 'not_found' | 'forbidden' };

const TOKEN_RE = /^([A-Za-z0-9_-]{1,200})\.([A-Za-z0-9_-]{43})$/;
const CLAIMS_RE = /^([a-z]{2,3}_[0-9A-Z]{29})\.(usr_[0-9A-Z]{29})\.(\d{1,12})\.(\d{1,12})$/;

function signature(key: string, encodedClaims: string): string {
  // The version label keeps tokens of a future format from ever verifying as this one.
  return createHmac('sha256', key).update(`receipt.v1.${encodedClaims}`).digest('base64url');
}

/** Signs a grant. Exported so tests (and operators' tooling) can mint tokens, e.g. already expired. */
export function signReceiptToken(key: string, grant: ReceiptGrant): string {
  const claims = [grant.transactionId, grant.userId, Math.floor(grant.issuedAt.getTime() / 1000), Math.floor(grant.expiresAt.getTime() / 1000)].join('.');
  const encoded = Buffer.from(claims, 'utf8').toString('base64url');
  return `${encoded}.${signature(key, encoded)}`;
}

/**
 * Checks a token: 'forbidden' when it is malformed or its signature does not match (tampered),
 * 'expired' when it was ours but its time has passed. The signature is checked first, so an
 * altered expiry is always 'forbidden'.
 */
export function verifyReceiptToken(key: string, token: string, now: Date = new Date()): { ok: true; grant: ReceiptGrant } | { ok: false; error: 'forbidden' | 'expired' } {
  const m = TOKEN_RE.exec(token);
  if (!m) return { ok: false, error: 'forbidden' };
  // Compare the encoded text, not decoded bytes: base64url decoding ignores the spare low bits
  // of the last character, so a byte comparison would accept some altered signatures.
  const expected = Buffer.from(signature(key, m[1]!), 'utf8');
  const given = Buffer.from(m[2]!, 'utf8');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, error: 'forbidden' };
  const c = CLAIMS_RE.exec(Buffer.from(m[1]!, 'base64url').toString('utf8'));
  if (!c || !parseId(c[1]!, RECEIPT_ID_PREFIXES) || !parseId(c[2]!, 'usr')) return { ok: false, error: 'forbidden' };
  const grant = { transactionId: c[1]!, userId: c[2]!, issuedAt: new Date(Number(c[3]) * 1000), expiresAt: new Date(Number(c[4]) * 1000) };
  if (now.getTime() >= grant.expiresAt.getTime()) return { ok: false, error: 'expired' };
  return { ok: true, grant };
}

/** How long a shared cache may keep a receipt: never past the URL's expiry, at most a day. */
export function publicMaxAgeSeconds(receipt: Pick<Receipt, 'status' | 'expiresAt'>, now: Date = new Date()): number {
  const left = Math.max(0, Math.floor((receipt.expiresAt.getTime() - now.getTime()) / 1000));
  return Math.min(left, receipt.status === 'pending' ? PENDING_RECEIPT_MAX_AGE_SECONDS : RECEIPT_MAX_AGE_SECONDS);
}

export interface ReceiptServiceDeps {
  db: Db;
  config: Pick<Config, 'receiptSigningKey' | 'receiptUrlTtlSeconds' | 'publicBaseUrl' | 'host' | 'port'>;
  now?: () => Date;
}

export function createReceiptService({ db, config, now = () => new Date() }: ReceiptServiceDeps) {
  const ttlSeconds = config.receiptUrlTtlSeconds;
  const bucketSeconds = Math.max(1, Math.min(RECEIPT_ISSUE_BUCKET_MAX_SECONDS, Math.floor(ttlSeconds / 10)));
  const baseUrl = publicBaseUrl(config as Config);

  function grantFor(userId: string, transactionId: string): ReceiptGrant {
    const issuedS = Math.floor(now().getTime() / 1000 / bucketSeconds) * bucketSeconds;
    return { transactionId, userId, issuedAt: new Date(issuedS * 1000), expiresAt: new Date((issuedS + ttlSeconds) * 1000) };
  }

  /** The owner's row of a history item, or undefined. Index: the primary key, one partition. */
  async function readRow(userId: string, transactionId: string): Promise<Record<string, unknown> | undefined> {
    const id = parseId(transactionId, RECEIPT_ID_PREFIXES);
    const owner = parseId(userId, 'usr');
    // Ids beyond year 9999 cannot be ours (and would not survive the trip to PostgreSQL as text).
    if (!id || !owner || id.createdAt.getUTCFullYear() > 9999) return undefined;
    // the hot months or the archive (src/db/partitions.ts): each query prunes to the id's month
    const [row] = await db.forShard(owner.shard).sql`
      select id, type, direction, amount, currency, status, counterparty, note, created_at
      from transactions
      where user_id = ${userId} and id = ${transactionId} and created_at = ${id.createdAt}
      union all
      select id, type, direction, amount, currency, status, counterparty, note, created_at
      from archive.transactions
      where user_id = ${userId} and id = ${transactionId} and created_at = ${id.createdAt}`;
    return row;
  }

  function toReceipt(row: Record<string, unknown>, grant: ReceiptGrant, token: string): Receipt {
    return {
      id: row.id as string,
      type: row.type as Receipt['type'],
      direction: row.direction as Receipt['direction'],
      amountMinor: row.amount as bigint,
      currency: row.currency as string,
      status: row.status as Receipt['status'],
      ...(row.counterparty !== null ? { counterparty: row.counterparty as string } : {}),
      ...(row.note !== null ? { note: row.note as string } : {}),
      createdAt: row.created_at as Date,
      issuedAt: grant.issuedAt,
      expiresAt: grant.expiresAt,
      receiptUrl: `${baseUrl}/v1/receipts/${token}`,
    };
  }

  return {
    /** The receipt of one of the user's own history items, with a fresh shareable URL. */
    async ownReceipt(userId: string, transactionId: string): Promise<ReceiptResult> {
      const row = await readRow(userId, transactionId);
      if (!row) return { ok: false, error: 'not_found' };
      const grant = grantFor(userId, transactionId);
      return { ok: true, value: toReceipt(row, grant, signReceiptToken(config.receiptSigningKey, grant)) };
    },

    /**
     * The receipt a signed URL names. Its receiptUrl is that same URL and its times are the
     * token's, so the answer depends only on the token and the row (a CDN may cache it) and
     * grants nothing the token did not.
     */
    async sharedReceipt(token: string): Promise<ReceiptResult> {
      const verified = verifyReceiptToken(config.receiptSigningKey, token, now());
      // An expired link answers 404: it was genuine, but the receipt is no longer published
      // there. 403 is kept for links we never signed (tampered or forged).
      if (!verified.ok) return { ok: false, error: verified.error === 'expired' ? 'not_found' : 'forbidden' };
      const row = await readRow(verified.grant.userId, verified.grant.transactionId);
      if (!row) return { ok: false, error: 'not_found' };
      return { ok: true, value: toReceipt(row, verified.grant, token) };
    },
  };
}

export type ReceiptService = ReturnType<typeof createReceiptService>;
