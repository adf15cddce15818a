/** What the benchmarks share: a fresh database of their own, percentiles, progress lines on stderr. */
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
