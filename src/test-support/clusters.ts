/**
 * Real cluster sets for tests: `startTestClusters({ clusters: 4, replicas: 1 })` gives the
 * topology (migrated `wallet` database on every cluster), the node handles (kill a primary with
 * SIGKILL) and close(), which stops every node and removes the data under /tmp.
 *
 * Fast starts: the data directory is made once (initdb, `create database wallet`, migrations)
 * into a template under /tmp keyed by the migrations' content, the binaries and the month (the
 * partitions made ahead depend on it), then copied for every node; a 2 x 1 set starts in about
 * a second. Parallel files build the template at most once each and keep the first complete one.
 *
 * fsync=off is safe here even where a test kills a primary under sync-replica: a SIGKILL ends
 * processes, not the machine, so what a server wrote is in the kernel's page cache and survives;
 * fsync matters only for a power loss. What does matter is synchronous_commit: with `on` a commit
 * waits until its WAL is written locally and flushed (in the same sense) by a replica; `off` or
 * `local` would acknowledge commits a failover can lose, so sync-replica refuses them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statfsSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { startClusterSet, MAX_NODE_PORT, type ClusterSet, type EmbeddedCluster, type NodeHandle } from '../db/cluster-set.js';
import type { Durability } from '../db/durability.js';
import { binaries, initDataDir, releaseSharedMemory, startEmbeddedPostgres } from '../db/embedded.js';
import { connect } from '../db/index.js';
import { migrate } from '../db/migrate.js';
import type { Topology } from '../db/topology.js';

export interface TestClustersOptions {
  clusters: number;
  replicas: number;
  durability?: Durability;
  /** extra server settings for every node (after the test defaults) */
  settings?: Record<string, string>;
  poolMax?: number;
}

export interface TestClusters {
  topology: Topology;
  set: ClusterSet;
  clusters: readonly EmbeddedCluster[];
  nodes: readonly NodeHandle[];
  cluster(name: string): EmbeddedCluster;
  close(): Promise<void>;
}

const TEST_SETTINGS: Record<string, string> = {
  fsync: 'off',
  full_page_writes: 'off', // torn pages need a power loss too
  synchronous_commit: 'on',
  shared_buffers: '32MB',
  max_connections: '100',
  // dynamic shared memory as files in the data directory: a SIGKILLed server's segments go with
  // its directory instead of staying in /dev/shm (posix) until a reboot
  dynamic_shared_memory_type: 'mmap',
};
/**
 * Where test data directories go: RAM (/dev/shm) when it has room, else the OS temp dir;
 * WALLET_TEST_DATA_DIR overrides. Copying a data directory is most of a set's start, and this
 * machine's disk is shared: four copies of the template took 9 s on /tmp under load, 0.5 s in RAM.
 */
export function testDataRoot(): string {
  if (process.env.WALLET_TEST_DATA_DIR) return process.env.WALLET_TEST_DATA_DIR;
  try {
    const fs = statfsSync('/dev/shm');
    if (fs.bavail * fs.bsize > 4 * 1024 ** 3) return '/dev/shm';
  } catch {
    // no /dev/shm here
  }
  return tmpdir();
}

const TEMPLATE_ROOT = join(testDataRoot(), 'wallet-pg-templates');
const TEMPLATE_MAX_AGE_MS = 3_600_000; // older ones of other keys: no test run still copies them
const MIGRATIONS_DIR = fileURLToPath(new URL('../db/migrations/', import.meta.url));

function canListen(port: number): Promise<boolean> {
  return new Promise((ok) => {
    const server = createServer();
    server.once('error', () => ok(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => ok(true)));
  });
}

/** `count` consecutive ports free right now (EMBEDDED_PG_PORT and up), at random below the ephemeral range. */
export async function freePortRange(count: number): Promise<number> {
  for (let tries = 0; tries < 100; tries++) {
    const base = 20_000 + Math.floor(Math.random() * (MAX_NODE_PORT - 20_000 - count));
    let free = true;
    for (let i = 0; free && i < count; i++) free = await canListen(base + i);
    if (free) return base;
  }
  throw new Error(`could not find ${count} consecutive free ports`);
}

/** Ports free right now, chosen at random below the ephemeral range so parallel files rarely collide. */
export async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  for (let tries = 0; ports.size < count; tries++) {
    if (tries > count * 50) throw new Error(`could not find ${count} free ports`);
    const port = 20_000 + Math.floor(Math.random() * (MAX_NODE_PORT - 20_000));
    if (!ports.has(port) && (await canListen(port))) ports.add(port);
  }
  return [...ports];
}

async function templateKey(): Promise<string> {
  const hash = createHash('sha256');
  const server = (await binaries()).postgres;
  hash.update(`${server}:${statSync(server).mtimeMs}`);
  for (const f of readdirSync(MIGRATIONS_DIR).sort()) hash.update(f).update(readFileSync(join(MIGRATIONS_DIR, f)));
  hash.update(new Date().toISOString().slice(0, 7)).update('wal-segsize=1,no-recycle');
  return hash.digest('hex').slice(0, 16);
}

/** A stopped data directory holding the migrated `wallet` database. */
export async function migratedTemplate(): Promise<string> {
  await mkdir(TEMPLATE_ROOT, { recursive: true, mode: 0o755 });
  const key = await templateKey();
  const dir = join(TEMPLATE_ROOT, key);
  if (existsSync(join(dir, 'PG_VERSION'))) return dir;
  const building = `${dir}.building-${process.pid}-${randomBytes(4).toString('hex')}`;
  await initDataDir(building, { walSegmentSizeMb: 1 });
  const [port] = await freePorts(1);
  const pg = await startEmbeddedPostgres({ dataDir: building, port: port!, settings: { ...TEST_SETTINGS, synchronous_commit: 'off', max_connections: '20', min_wal_size: '2MB', wal_recycle: 'off' } }); // no spare WAL segments to copy
  try {
    const admin = postgres(pg.url('postgres'), { max: 1, onnotice: () => undefined });
    await admin.unsafe('create database wallet').finally(() => admin.end({ timeout: 1 }));
    const sql = connect(pg.url('wallet'), { poolMax: 1, statementTimeoutMs: 60_000 });
    await migrate(sql, { partitionsAheadMonths: 3 }).finally(() => sql.end({ timeout: 1 }));
  } finally {
    await pg.stop();
  }
  // another test file may have finished one first: keep that one
  await rename(building, dir).catch(() => rm(building, { recursive: true, force: true }));
  await pruneTemplates(key);
  return dir;
}

async function pruneTemplates(keep: string): Promise<void> {
  for (const name of await readdir(TEMPLATE_ROOT).catch(() => [])) {
    if (name === keep || name.startsWith(`${keep}.`)) continue;
    const path = join(TEMPLATE_ROOT, name);
    const age = Date.now() - (await stat(path).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
    if (age > TEMPLATE_MAX_AGE_MS) await rm(path, { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Sets left behind by test processes that died before close() (in RAM they would stay until a
 * reboot). Only directories whose process is gone and whose servers all stopped are removed.
 */
async function pruneAbandoned(root: string): Promise<void> {
  for (const name of await readdir(root).catch(() => [])) {
    const pid = Number(/^wallet-clusters-(\d+)-/.exec(name)?.[1]);
    if (!pid || alive(pid)) continue;
    const dir = join(root, name);
    const pidFiles = (await readdir(dir, { recursive: true }).catch(() => [] as string[])).filter((f) => f.endsWith('postmaster.pid'));
    const running = await Promise.all(pidFiles.map(async (f) => alive(Number((await readFile(join(dir, f), 'utf8').catch(() => '')).split('\n')[0]))));
    if (!running.some(Boolean)) await rm(dir, { recursive: true, force: true });
  }
}

export async function startTestClusters(opts: TestClustersOptions): Promise<TestClusters> {
  const durability = opts.durability ?? 'local';
  const settings = { ...TEST_SETTINGS, ...opts.settings };
  if (durability === 'sync-replica' && ['off', 'local'].includes(settings.synchronous_commit!)) {
    throw new Error(`synchronous_commit=${settings.synchronous_commit} acknowledges commits no replica has: not sync-replica`);
  }
  const templateDir = await migratedTemplate();
  await pruneAbandoned(testDataRoot());
  const baseDir = await mkdtemp(join(testDataRoot(), `wallet-clusters-${process.pid}-`));
  await chmod(baseDir, 0o755); // the server runs as the postgres user
  const nodeCount = opts.clusters * (1 + opts.replicas);
  let set: ClusterSet | undefined;
  for (let attempt = 1; !set; attempt++) {
    try {
      set = await startClusterSet({ baseDir, clusters: opts.clusters, replicas: opts.replicas, ports: await freePorts(nodeCount), durability, templateDir, settings, poolMax: opts.poolMax });
    } catch (err) {
      // a parallel file took a port between our check and the server's bind: new ports, same data
      if (attempt < 3 && /Address already in use|could not bind/i.test((err as Error).message)) continue;
      await rm(baseDir, { recursive: true, force: true });
      throw err;
    }
  }
  const started = set;
  return {
    topology: started.topology,
    set: started,
    clusters: started.clusters,
    nodes: started.nodes,
    cluster: (name) => started.cluster(name),
    async close() {
      await started.stop();
      await Promise.all(started.nodes.map((n) => releaseSharedMemory(n.dataDir)));
      await rm(baseDir, { recursive: true, force: true });
    },
  };
}

/** a query with our own deadline: postgres.js neither fails nor times out while no host of a multi-host URL qualifies */
export async function within<T>(ms: number, what: string, run: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([run(), new Promise<never>((_, fail) => (timer = setTimeout(() => fail(new Error(`${what}: no answer within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
