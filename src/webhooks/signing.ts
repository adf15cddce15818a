/**
 * Webhook signatures. Every delivery carries
 *
 *   Wallet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
 *
 * where the key is the endpoint's whole signing secret as UTF-8 text (`whsec_...`, shown once
 * when the endpoint is created) and the body is the exact bytes received, before any JSON
 * parsing. A receiver recomputes the HMAC, compares in constant time, and refuses a `t` more
 * than 5 minutes from its clock (a replayed old delivery). `t` is fresh on every attempt, so a
 * retry a day later still verifies. Several `v1=` entries may appear (room for secret rotation);
 * one match is enough.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const SECRET_PREFIX = 'whsec_';
export const SIGNATURE_HEADER = 'wallet-signature';

/** 32 random bytes (256 bits), base64url, behind a prefix that makes leaked secrets greppable */
export function generateSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString('base64url');
}

function hmacHex(secret: string, timestampSeconds: number, body: string): string {
  return createHmac('sha256', secret).update(`${timestampSeconds}.`).update(body).digest('hex');
}

/** the Wallet-Signature header value for a body sent at timestampSeconds */
export function signatureHeader(secret: string, body: string, timestampSeconds: number): string {
  return `t=${timestampSeconds},v1=${hmacHex(secret, timestampSeconds, body)}`;
}

/**
 * For receivers (and tests): true when the header carries a valid v1 signature of body under
 * secret with a timestamp within toleranceSeconds of nowSeconds. Never throws on bad input.
 */
export function verifyWebhookSignature(secret: string, header: string | undefined, body: string, nowSeconds = Math.floor(Date.now() / 1000), toleranceSeconds = 300): boolean {
  if (typeof header !== 'string' || header.length > 4096) return false;
  let timestamp: number | undefined;
  const candidates: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't' && /^\d{1,12}$/.test(value)) timestamp = Number(value);
    else if (key === 'v1' && /^[0-9a-f]{64}$/.test(value)) candidates.push(value);
  }
  if (timestamp === undefined || !candidates.length) return false;
  if (Math.abs(nowSeconds - timestamp) > toleranceSeconds) return false;
  const expected = Buffer.from(hmacHex(secret, timestamp, body), 'hex');
  let match = false;
  // every candidate is compared, so the time taken does not say which one matched
  for (const c of candidates) match = timingSafeEqual(expected, Buffer.from(c, 'hex')) || match;
  return match;
}
