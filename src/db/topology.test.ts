import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTopologyFile, validateTopology } from './topology.js';
import { regionalTopology, createTestDatabase } from '../test-support/platform.js';
import { loadConfig } from '../config/index.js';
import { startServer } from '../server.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'wallet-topology-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cluster = (name: string, shards: [number, number], primary = 'postgres://postgres@127.0.0.1:5432/x') => ({ name, region: 'us-east', shards, primary });

describe('topology validation', () => {
  it('lays out the four plan regions over all 1,000 shards', () => {
    const t = regionalTopology(['postgres://h1/a', 'postgres://h2/b', 'postgres://h3/c', 'postgres://h4/d']);
    expect(t.clusters.map((c) => [c.name, c.shards])).toEqual([
      ['us-east', [0, 249]],
      ['us-west', [250, 499]],
      ['eu-west', [500, 749]],
      ['apac', [750, 999]],
    ]);
  });

  it.each([
    ['a shard in two clusters', [cluster('a', [0, 500]), cluster('b', [500, 999])], /shard 500 belongs to both a and b/],
    ['a shard in none', [cluster('a', [0, 499]), cluster('b', [501, 999])], /shard 500 belongs to no cluster/],
    ['a reversed range', [cluster('a', [999, 0])], /cluster a has shard range 999-0/],
    ['a duplicate name', [cluster('a', [0, 499]), cluster('a', [500, 999])], /cluster names must be unique/],
    ['a URL that is not PostgreSQL', [cluster('a', [0, 999], 'mysql://h/db')], /primary/],
  ])('refuses %s, naming it', (_what, clusters, message) => {
    expect(() => validateTopology({ clusters }, 'test')).toThrow(message);
  });

  it('names the file when it is not JSON', () => {
    const file = join(dir, 'broken.json');
    writeFileSync(file, '{ clusters: ');
    expect(() => readTopologyFile(file)).toThrow(/WALLET_TOPOLOGY: cannot read .*broken\.json as JSON/);
  });
});

describe('start-up with an unreachable cluster', () => {
  it('fails naming the cluster that does not answer', async () => {
    const db = await createTestDatabase();
    try {
      // us-east answers; apac points at a port nobody listens on
      const t = regionalTopology([db.url, db.url, db.url, 'postgres://postgres@127.0.0.1:9/wallet']);
      const file = join(dir, 'topology.json');
      writeFileSync(file, JSON.stringify(t));
      const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', WALLET_TOPOLOGY: file, WALLET_ROLES: 'api', PORT: '0', DB_STARTUP_TIMEOUT_MS: '2000' });
      await expect(startServer(config, ['api'])).rejects.toThrow(/database cluster apac did not answer within 2000 ms/);
    } finally {
      await db.drop();
    }
  });
});
