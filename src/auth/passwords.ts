/** Password hashing with scrypt (node:crypto, no native addon): N=2^cost (default 2^15), r=8, p=1, 64-byte key. */
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';

const R = 8, P = 1, KEYLEN = 64;

function scrypt(password: string, salt: Buffer, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((ok, fail) => scryptCb(password.normalize('NFKC'), salt, KEYLEN, opts, (err, key) => (err ? fail(err) : ok(key))));
}

const maxmem = (n: number) => 128 * n * R * 2;

export async function hashPassword(password: string, log2Cost: number): Promise<string> {
  const N = 2 ** log2Cost;
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, { N, r: R, p: P, maxmem: maxmem(N) });
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, key] = stored.split('$');
  if (scheme !== 'scrypt' || !salt || !key) return false;
  const N = Number(n);
  if (!Number.isInteger(N) || N < 1024 || N > 2 ** 20) return false;
  const expected = Buffer.from(key, 'base64');
  const actual = await scrypt(password, Buffer.from(salt, 'base64'), { N, r: Number(r), p: Number(p), maxmem: maxmem(N) });
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** Verified against when the email is unknown, so both answers cost the same time as a real check. */
export function dummyHash(log2Cost: number): string {
  return `scrypt$${2 ** log2Cost}$${R}$${P}$${Buffer.alloc(16).toString('base64')}$${Buffer.alloc(64).toString('base64')}`;
}
