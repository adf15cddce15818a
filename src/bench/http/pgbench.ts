/**
 * pgbench TPC-B on the same PostgreSQL, in a database of its own, as the yardstick: our
 * transfers/s divided by its tps is the figure to compare across machines.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import postgres from 'postgres';

const exec = promisify(execFile);

export interface PgbenchResult {
  available: boolean;
  /** why there is no figure, when there is none */
  reason?: string;
  binary?: string;
  version?: string;
  tps?: number;
  latencyAvgMs?: number;
  clients?: number;
  threads?: number;
  seconds?: number;
  scale?: number;
  transactions?: number;
  failed?: number;
}

export function findPgbench(): string | undefined {
  const candidates = [process.env.PGBENCH, '/usr/bin/pgbench', '/usr/local/bin/pgbench', ...['18', '17', '16', '15', '14'].map((v) => `/usr/lib/postgresql/${v}/bin/pgbench`)];
  return candidates.find((c): c is string => !!c && existsSync(c));
}

export async function runPgbench(serverUrl: string, database: string, opts: { clients: number; seconds: number; scale: number; log: (m: string) => void }): Promise<PgbenchResult> {
  const binary = findPgbench();
  if (!binary) return { available: false, reason: 'pgbench is not installed (Debian: apt-get install postgresql-client); no ratio is computed' };
  const u = new URL(serverUrl);
  const admin = postgres(withDatabase(serverUrl, 'postgres'), { max: 1, onnotice: () => undefined });
  try {
    await admin.unsafe(`drop database if exists ${database} with (force)`);
    await admin.unsafe(`create database ${database}`);
  } finally {
    await admin.end({ timeout: 2 });
  }
  const env = { ...process.env, PGHOST: u.hostname, PGPORT: u.port || '5432', PGUSER: decodeURIComponent(u.username || 'postgres'), PGPASSWORD: decodeURIComponent(u.password), PGDATABASE: database };
  try {
    const version = (await exec(binary, ['--version'], { env })).stdout.trim();
    opts.log(`pgbench: initializing TPC-B scale ${opts.scale} in ${database}`);
    await exec(binary, ['-i', '-q', '-s', String(opts.scale)], { env, maxBuffer: 16 * 1024 * 1024 });
    const threads = Math.min(opts.clients, 2);
    opts.log(`pgbench: TPC-B, ${opts.clients} clients, ${threads} threads, ${opts.seconds} s`);
    const run = await exec(binary, ['-c', String(opts.clients), '-j', String(threads), '-T', String(opts.seconds), '-n'], { env, maxBuffer: 16 * 1024 * 1024 });
    return { available: true, binary, version, ...parsePgbench(run.stdout), clients: opts.clients, threads, seconds: opts.seconds, scale: opts.scale };
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    return { available: false, binary, reason: `pgbench failed: ${(e.stderr || e.message).trim().slice(-500)}` };
  } finally {
    const cleanup = postgres(withDatabase(serverUrl, 'postgres'), { max: 1, onnotice: () => undefined });
    await cleanup.unsafe(`drop database if exists ${database} with (force)`).catch(() => undefined);
    await cleanup.end({ timeout: 2 });
  }
}

/** the figures of pgbench's summary (versions 13 to 18 print these lines) */
export function parsePgbench(stdout: string): Pick<PgbenchResult, 'tps' | 'latencyAvgMs' | 'transactions' | 'failed'> {
  const num = (re: RegExp) => {
    const m = re.exec(stdout);
    return m ? Number(m[1]) : undefined;
  };
  const tps = num(/tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)\)/) ?? num(/tps = ([\d.]+)/);
  if (tps === undefined) throw new Error(`pgbench printed no tps: ${stdout.slice(-500)}`);
  return { tps, latencyAvgMs: num(/latency average = ([\d.]+) ms/), transactions: num(/number of transactions actually processed: (\d+)/), failed: num(/number of failed transactions: (\d+)/) };
}

export function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}
