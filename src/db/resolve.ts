/**
 * Where the database is: WALLET_TOPOLOGY or DATABASE_URL when set, otherwise the embedded
 * PostgreSQL in WALLET_DATA_DIR (started here, or reused when another `wallet` process of the
 * same data directory already runs it).
 */
import { join } from 'node:path';
import postgres from 'postgres';
import type { Config } from '../config/index.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded.js';

export interface ResolvedDatabase {
  /** undefined when a topology file names the clusters */
  url?: string;
  embedded?: EmbeddedPostgres;
  stop(): Promise<void>;
}

const EMBEDDED_DB = 'wallet';

async function answers(url: string): Promise<boolean> {
  const probe = postgres(url, { max: 1, connect_timeout: 2, onnotice: () => undefined });
  try {
    await probe`select 1`;
    return true;
  } catch {
    return false;
  } finally {
    await probe.end({ timeout: 1 });
  }
}

export async function resolveDatabase(config: Config, log: (msg: string) => void = () => undefined): Promise<ResolvedDatabase> {
  if (config.topologyFile) return { stop: async () => undefined };
  if (config.databaseUrl) return { url: config.databaseUrl, stop: async () => undefined };

  const adminUrl = `postgres://postgres@127.0.0.1:${config.embeddedPgPort}/postgres`;
  let embedded: EmbeddedPostgres | undefined;
  if (await answers(adminUrl)) {
    log(`using the embedded PostgreSQL already running on port ${config.embeddedPgPort}`);
  } else {
    embedded = await startEmbeddedPostgres({ dataDir: join(config.dataDir, 'pg'), port: config.embeddedPgPort });
    log(`embedded PostgreSQL started on port ${config.embeddedPgPort} (data in ${embedded.dataDir})`);
  }
  const admin = postgres(adminUrl, { max: 1, onnotice: () => undefined });
  try {
    const [exists] = await admin`select 1 from pg_database where datname = ${EMBEDDED_DB}`;
    if (!exists) await admin.unsafe(`create database ${EMBEDDED_DB}`);
  } finally {
    await admin.end({ timeout: 1 });
  }
  return {
    url: `postgres://postgres@127.0.0.1:${config.embeddedPgPort}/${EMBEDDED_DB}`,
    embedded,
    stop: async () => {
      await embedded?.stop();
    },
  };
}
