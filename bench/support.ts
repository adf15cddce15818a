/** What the benchmarks share: a fresh database of their own, percentiles, progress lines on stderr, Redis clean-up. */
import { Redis } from 'ioredis';
import postgres from 'postgres';
import type { Config } from '../src/config/index.js';
import { resolveDatabase } from '../src/db/resolve.js';

export const log = (msg: string) => process.stderr.write(`${msg}\n`);

export function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

/** Drops and creates `name` on DATABASE_URL's server, or on the embedded PostgreSQL. */
export async function freshDatabase(config: Config, name: string): Promise<{ url: string; stop(): Promise<void> }> {
  if (config.topologyFile) throw new Error('bench: runs on one cluster; unset WALLET_TOPOLOGY (use DATABASE_URL or the embedded default)');
  const server = await resolveDatabase(config, log);
  const admin = postgres(withDatabase(server.url!, 'postgres'), { max: 1, onnotice: () => undefined });
  try {
    await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.unsafe(`create database ${name}`);
  } finally {
    await admin.end({ timeout: 2 });
  }
  return { url: withDatabase(server.url!, name), stop: server.stop };
}

export function percentile(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/**
 * Deletes a run's Redis keys (`prefix*`): left until their TTL, they would make later runs
 * measure a fuller Redis (a day of runs left 270,000 keys, 514 MB).
 */
export async function dropRedisKeys(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length) await redis.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}
