/**
 * Where the database is: WALLET_TOPOLOGY or DATABASE_URL when set; an embedded cluster set in
 * WALLET_DATA_DIR/clusters when EMBEDDED_CLUSTERS is set (started and owned by this process);
 * otherwise the embedded PostgreSQL in WALLET_DATA_DIR (started here, or reused when another
 * `wallet` process of the same data directory already runs it).
 */
import { join } from 'node:path';
import postgres from 'postgres';
import { ConfigError, type Config } from '../config/index.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded.js';
import { runningClusterSet, startClusterSet, type ClusterSet } from './cluster-set.js';
import type { Topology } from './topology.js';

export interface ResolvedDatabase {
  /** undefined when a topology file names the clusters */
  url?: string;
  /** the embedded cluster set's clusters (EMBEDDED_CLUSTERS) */
  topology?: Topology;
  embedded?: EmbeddedPostgres;
  /** the nodes this process runs, for the failover manager */
  clusterSet?: ClusterSet;
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

async function startEmbeddedClusters(config: Config, log: (msg: string) => void): Promise<ResolvedDatabase> {
  if (config.topologyFile || config.databaseUrl) throw new ConfigError('EMBEDDED_CLUSTERS: cannot be combined with WALLET_TOPOLOGY or DATABASE_URL, which name the database already');
  if (config.dbDurability === 'sync-replica' && config.embeddedReplicas === 0) throw new ConfigError('DB_DURABILITY=sync-replica needs EMBEDDED_REPLICAS of 1 or more');
  const baseDir = join(config.dataDir, 'clusters');
  const ports = { basePort: config.embeddedPgPort };
  const running = await runningClusterSet({ baseDir, clusters: config.embeddedClusters, ports, database: EMBEDDED_DB });
  if (running) {
    log(`using the embedded cluster set another process runs (${baseDir})`);
    return { topology: running, stop: async () => undefined };
  }
  const started = performance.now();
  const clusterSet = await startClusterSet({
    baseDir,
    clusters: config.embeddedClusters,
    replicas: config.embeddedReplicas,
    ports,
    durability: config.dbDurability,
    database: EMBEDDED_DB,
    // PostgreSQL's own log stays out of ours (FATALs are routine around a failover or a
    // shutdown; a node that cannot start says why in the error); a PANIC is worth a line
    log: (chunk) => chunk.split('\n').filter((l) => l.includes('PANIC:')).forEach(log),
  });
  const nodePorts = clusterSet.nodes.map((n) => n.port);
  log(`embedded cluster set started in ${Math.round(performance.now() - started)} ms: ${clusterSet.clusters.map((c) => `${c.name} ${c.shards.join('-')}`).join(', ')}; ${config.embeddedReplicas} replica(s) each; ports ${Math.min(...nodePorts)}-${Math.max(...nodePorts)}; data in ${clusterSet.baseDir}`);
  return { topology: clusterSet.topology, clusterSet, stop: () => clusterSet.stop() };
}

export async function resolveDatabase(config: Config, log: (msg: string) => void = () => undefined): Promise<ResolvedDatabase> {
  if (config.embeddedClusters > 0) return startEmbeddedClusters(config, log);
  if (config.topologyFile) return { stop: async () => undefined };
  if (config.databaseUrl) return { url: config.databaseUrl, stop: async () => undefined };

  if (config.dbDurability === 'sync-replica') throw new ConfigError('DB_DURABILITY=sync-replica: the single embedded PostgreSQL has no replica (set EMBEDDED_CLUSTERS)');
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
