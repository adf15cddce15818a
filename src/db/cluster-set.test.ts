import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, chmod, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import postgres from 'postgres';
import { layoutClusters, startClusterSet } from './cluster-set.js';
import { freePortRange, freePorts, migratedTemplate, startTestClusters, testDataRoot, within, type TestClusters } from '../test-support/clusters.js';


async function eventually(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('cluster layout', () => {
  it('lays four clusters out by the plan regions', () => {
    expect(layoutClusters(4)).toEqual([
      { name: 'us-east', region: 'us-east', shards: [0, 249] },
      { name: 'us-west', region: 'us-west', shards: [250, 499] },
      { name: 'eu-west', region: 'eu-west', shards: [500, 749] },
      { name: 'apac', region: 'apac', shards: [750, 999] },
    ]);
  });

  it('splits other counts evenly and names clusters that share a region', () => {
    const eight = layoutClusters(8);
    expect(eight.map((c) => c.name)).toEqual(['us-east-1', 'us-east-2', 'us-west-1', 'us-west-2', 'eu-west-1', 'eu-west-2', 'apac-1', 'apac-2']);
    const three = layoutClusters(3);
    expect(three.map((c) => c.shards)).toEqual([
      [0, 332],
      [333, 665],
      [666, 999],
    ]);
    expect(three.flatMap((c) => c.shards[1] - c.shards[0] + 1).reduce((a, b) => a + b)).toBe(1000);
  });
});

describe('an embedded cluster set of 2 clusters x 1 replica', () => {
  let set: TestClusters;
  const sqls: postgres.Sql[] = [];
  const client = (url: string) => {
    const sql = postgres(url, { max: 2, onnotice: () => undefined, connect_timeout: 5 });
    sqls.push(sql);
    return sql;
  };

  beforeAll(async () => {
    set = await startTestClusters({ clusters: 2, replicas: 1 });
  });
  afterAll(async () => {
    await Promise.all(sqls.map((s) => s.end({ timeout: 1 })));
    await set?.close();
  });

  it('describes each cluster with a multi-host primary URL and its replica', () => {
    const { clusters } = set.topology;
    expect(clusters.map((c) => [c.name, c.region, c.shards])).toEqual([
      ['us-east', 'us-east', [0, 499]],
      ['eu-west', 'eu-west', [500, 999]],
    ]);
    for (const c of clusters) {
      const nodes = set.cluster(c.name).nodes;
      expect(nodes.map((n) => [n.dir, n.role, n.running])).toEqual([
        ['primary', 'primary', true],
        ['replica-1', 'standby', true],
      ]);
      expect(c.primary).toBe(`postgres://postgres@127.0.0.1:${nodes[0]!.port},127.0.0.1:${nodes[1]!.port}/wallet?target_session_attrs=primary`);
      expect(c.replicas).toEqual([`postgres://postgres@127.0.0.1:${nodes[1]!.port}/wallet`]);
    }
  });

  it('streams a row written on a primary to its replica, and the replica refuses writes', async () => {
    for (const c of set.topology.clusters) {
      const primary = client(c.primary);
      const replica = client(c.replicas![0]!);
      const [role] = await within(5000, 'replica role', () => replica<{ recovery: boolean }[]>`select pg_is_in_recovery() as recovery`);
      expect(role!.recovery).toBe(true);
      // the migrated schema came with the template
      const [migrated] = await within(5000, 'migrations', () => primary<{ n: number }[]>`select count(*)::int as n from schema_migrations`);
      expect(migrated!.n).toBeGreaterThan(0);
      const marker = `row-${c.name}-${Date.now()}`;
      await within(5000, 'primary write', () => primary`create table if not exists replication_probe (marker text primary key)`);
      await within(5000, 'primary write', () => primary`insert into replication_probe values (${marker})`);
      await eventually(async () => (await replica`select 1 from pg_class where relname = 'replication_probe'`).length > 0 && (await replica`select 1 from replication_probe where marker = ${marker}`).length === 1, 5000, `${marker} on the replica of ${c.name}`);
      await expect(replica`insert into replication_probe values ('no')`).rejects.toThrow(/read-only/);
    }
  });

  it('keeps the clusters apart: a row on one cluster is not on the other', async () => {
    const [a, b] = set.topology.clusters;
    const marker = `only-${a!.name}-${Date.now()}`;
    await within(5000, 'write', () => client(a!.primary)`create table if not exists apart (marker text)`);
    await within(5000, 'write', () => client(a!.primary)`insert into apart values (${marker})`);
    const [other] = await within(5000, 'read', () => client(b!.primary)<{ exists: boolean }[]>`select to_regclass('apart') is not null as exists`);
    expect(other!.exists).toBe(false);
  });
});

describe('a cluster set on its data directory', () => {
  it('starts again on the same data (new ports), with the rows kept and the replica streaming', async () => {
    const baseDir = await mkdtemp(join(testDataRoot(), `wallet-clusters-${process.pid}-`));
    await chmod(baseDir, 0o755);
    const templateDir = await migratedTemplate();
    const start = async () => startClusterSet({ baseDir, clusters: 1, replicas: 1, ports: await freePorts(2), durability: 'sync-replica', templateDir, settings: { fsync: 'off', shared_buffers: '32MB', max_connections: '50' } });
    let set = await start();
    try {
      const url = set.topology.clusters[0]!.primary;
      let sql = postgres(url, { max: 1, onnotice: () => undefined });
      await within(5000, 'write', () => sql`create table kept (n int)`);
      await within(5000, 'write', () => sql`insert into kept values (42)`);
      // sync-replica: the replica is a synchronous (quorum) standby
      const [rep] = await sql<{ name: string; sync: string }[]>`select application_name as name, sync_state as sync from pg_stat_replication`;
      expect(rep).toEqual({ name: 'replica_1', sync: 'quorum' });
      await sql.end();
      await set.stop();
      expect(set.nodes.every((n) => !n.running)).toBe(true);
      expect(existsSync(join(baseDir, 'set.json'))).toBe(true);

      set = await start();
      const again = set.topology.clusters[0]!;
      expect(again.primary).not.toBe(url);
      sql = postgres(again.replicas![0]!, { max: 1, onnotice: () => undefined });
      const [row] = await within(5000, 'replica read', () => sql<{ n: number }[]>`select n from kept`);
      expect(row!.n).toBe(42);
      await sql.end();
      const primary = postgres(again.primary, { max: 1, onnotice: () => undefined });
      await within(5000, 'write after restart', () => primary`insert into kept values (43)`);
      await primary.end();
    } finally {
      await set.stop();
      await rm(baseDir, { recursive: true, force: true });
    }
  });
});

describe('wallet serve --embedded-clusters 2 --replicas 1', () => {
  it('starts the set, migrates and serves every cluster, replicates, lets an operator command use it, and stops every node on SIGTERM', async () => {
    const dataDir = await mkdtemp(join(testDataRoot(), `wallet-clusters-${process.pid}-serve-`));
    await chmod(dataDir, 0o755);
    const basePort = await freePortRange(4); // the set counts up from EMBEDDED_PG_PORT
    const child = spawn(process.execPath, ['bin/wallet.js', 'serve', '--embedded-clusters', '2', '--replicas', '1'], {
      env: { ...process.env, DATABASE_URL: '', WALLET_TOPOLOGY: '', CI: '', WALLET_DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(basePort), PORT: '0', LOG_LEVEL: 'warn', PASSWORD_HASH_LOG2_COST: '10', DB_DURABILITY: 'sync-replica', CACHE_WARM_INTERVAL_MS: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((ok) => child.on('exit', (code) => ok(code)));
    try {
      await eventually(async () => /listening on http/.test(out) || child.exitCode !== null, 90_000, 'the banner');
      const url = /listening on (http:\/\/\S+)/.exec(out)?.[1];
      expect(url, out).toBeDefined();
      const email = `clusters-${Date.now()}@example.com`;
      const res = await fetch(`${url}/v1/users`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password: 'a long enough password', name: 'Set' }) });
      expect(res.status).toBe(201);
      let metrics = '';
      await eventually(async () => (metrics = await (await fetch(`${url}/metrics`)).text()).includes('db_primary_up{cluster="eu-west"}'), 5000, 'the first health checks');
      expect(metrics).toMatch(/db_primary_up\{cluster="us-east"\} 1/);
      expect(metrics).toMatch(/db_primary_up\{cluster="eu-west"\} 1/);
      expect(metrics).toMatch(/db_sync_replica_missing\{cluster="us-east"\} 0/);
      // an operator command beside the server uses the running set (it does not start another)
      const migrated = execFileSync(process.execPath, ['bin/wallet.js', 'migrate'], { env: { ...process.env, DATABASE_URL: '', WALLET_TOPOLOGY: '', WALLET_DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(basePort), EMBEDDED_CLUSTERS: '2', LOG_LEVEL: 'warn' } }).toString();
      expect(migrated).toBe('us-east: up to date\neu-west: up to date\n');
      // every cluster migrated; the user is on exactly one cluster, and reaches its replica
      const replicas = [0, 1].map((i) => postgres(`postgres://postgres@127.0.0.1:${basePort + i * 2 + 1}/wallet`, { max: 1, onnotice: () => undefined }));
      try {
        for (const replica of replicas) {
          const [m] = await within(5000, 'migrations', () => replica<{ n: number }[]>`select count(*)::int as n from schema_migrations`);
          expect(m!.n).toBeGreaterThan(0);
        }
        const copies = async () => (await Promise.all(replicas.map((r) => within(5000, 'user', () => r`select 1 from users where email = ${email}`)))).map((rows) => rows.length);
        await eventually(async () => (await copies()).reduce((a, b) => a + b) > 0, 5000, 'the user on a replica');
        expect((await copies()).sort()).toEqual([0, 1]);
      } finally {
        await Promise.all(replicas.map((r) => r.end({ timeout: 1 })));
      }
    } finally {
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      const left = execFileSync('ps', ['-eo', 'args']).toString().split('\n').filter((l) => l.includes(dataDir));
      expect(left).toEqual([]);
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
