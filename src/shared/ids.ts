/**
 * Ids carry their logical shard and their creation time, so any node routes an id with no
 * lookup and finds its month partition without an index scan over all months:
 *   <prefix>_<shard: 3 digits><time: 10 Crockford base32 chars, ms><random: 16 chars, 80 bits>
 * e.g. txn_0421KZ8X3M7QH4Z2N9V0C6R5T8WYB3D. Sorting ids of one prefix sorts them by time.
 */
import { randomBytes, randomInt } from 'node:crypto';

export const SHARD_COUNT = 1000;
export const ID_PREFIXES = ['usr', 'wal', 'txn', 'top', 'pay', 'ref', 'pm', 'evt', 'tok', 'whk', 'dlv', 'rev', 'mov'] as const;
export type IdPrefix = (typeof ID_PREFIXES)[number];

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const DECODE = new Map([...ALPHABET].map((c, i) => [c, i]));
const MAX_TIME_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
const ID_RE = /^([a-z]{2,3})_(\d{3})([0-9A-HJKMNP-TV-Z]{26})$/;

let pool = randomBytes(4096);
let poolOffset = 0;
function random16(): string {
  if (poolOffset + 16 > pool.length) {
    pool = randomBytes(4096);
    poolOffset = 0;
  }
  let out = '';
  for (let i = 0; i < 16; i++) out += ALPHABET[pool[poolOffset + i]! & 31];
  poolOffset += 16;
  return out;
}

function encodeTime(ms: number): string {
  let out = '';
  let t = ms;
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[t % 32] + out;
    t = Math.floor(t / 32);
  }
  return out;
}

/** A new user's shard: uniform over the 1,000 logical shards. */
export function newShard(): number {
  return randomInt(SHARD_COUNT);
}

export function newId(prefix: IdPrefix, shard: number, at: Date = new Date()): string {
  if (!Number.isInteger(shard) || shard < 0 || shard >= SHARD_COUNT) throw new RangeError(`shard out of range: ${shard}`);
  return `${prefix}_${String(shard).padStart(3, '0')}${encodeTime(at.getTime())}${random16()}`;
}

export interface ParsedId {
  prefix: string;
  shard: number;
  createdAt: Date;
}

/** Parses an id; undefined when it is not one of ours (callers answer 404). */
export function parseId(id: string, expectedPrefix?: IdPrefix | readonly IdPrefix[]): ParsedId | undefined {
  const m = ID_RE.exec(id);
  if (!m) return undefined;
  const prefix = m[1]!;
  if (expectedPrefix !== undefined) {
    const allowed: readonly string[] = typeof expectedPrefix === 'string' ? [expectedPrefix] : expectedPrefix;
    if (!allowed.includes(prefix)) return undefined;
  }
  let ms = 0;
  for (const c of m[3]!.slice(0, 10)) ms = ms * 32 + DECODE.get(c)!;
  // 48-bit times reach past year 9999, which PostgreSQL cannot store: not one of our ids
  if (ms > MAX_TIME_MS) return undefined;
  return { prefix, shard: Number(m[2]), createdAt: new Date(ms) };
}

export function shardOf(id: string): number {
  const parsed = parseId(id);
  if (!parsed) throw new RangeError(`not an id: ${id}`);
  return parsed.shard;
}

/** A stable shard for a key that is not a user's (an email in the login directory, a client address). */
export function hashShard(key: string): number {
  // FNV-1a 32-bit: stable across processes and versions, spreads short strings well.
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % SHARD_COUNT;
}
