/**
 * The bank test of the sharding issue: four real clusters (the plan's regions), each a primary
 * with a real streaming replica, thousands of users, many clients moving money between them
 * (same-cluster and cross-cluster pairs) for BANK_TEST_SECONDS (30 by default; longer with the
 * variable), then every invariant: money conserved, no negative balance, every acknowledged
 * transfer exactly once on both sides, reconcile clean on every cluster and across them.
 *
 * The second run kills (SIGKILL) one region's primary in the middle with sync-replica
 * durability: the failover manager promotes its replica, no acknowledged transfer is lost, and
 * that region's users are served again within 30 s.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { startTestClusters, type TestClusters } from '../test-support/clusters.js';
import { PERMISSIVE_FRAUD_RULES } from '../test-support/platform.js';
import { checkBank, moneyInWallets, runBank, seedBank, type BankUser } from '../test-support/bank.js';
import { loadConfig } from '../config/index.js';
import { createPlatform, type Platform } from '../platform.js';
import { buildApp } from '../app.js';
import { createLogger } from '../observability/logger.js';
import { startEventRoles, type EventRoles } from '../events/roles.js';
import { createFailoverManager, failoverTargets, type FailoverManager } from './failover.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SECONDS = Number(process.env.BANK_TEST_SECONDS ?? 30);
const USERS = 2_000;
// enough to keep both clusters and the engine busy; more only loads the neighbouring test files on 2 cores
const CLIENTS = 8;
const START_BALANCE = 10_000n;

interface Bank {
  clusters: TestClusters;
  platform: Platform;
  app: FastifyInstance;
  roles: EventRoles;
  users: BankUser[];
  initial: bigint;
  mailbox: string;
  /** what the platform logged for its 500s ("unhandled error", first 20): a 500 seen once in CI came with no cause */
  unhandled: string[];
  close(): Promise<void>;
}

async function openBank(durability: 'local' | 'sync-replica'): Promise<Bank> {
  const clusters = await startTestClusters({ clusters: 4, replicas: 1, durability, poolMax: 8 });
  const mailbox = mkdtempSync(join(tmpdir(), 'wallet-bank-mail-'));
  const config = loadConfig({
    NODE_ENV: 'test', LOG_LEVEL: 'silent', PASSWORD_HASH_LOG2_COST: '10', FRAUD_RULES_FILE: PERMISSIVE_FRAUD_RULES, MAILBOX_DIR: mailbox,
    DB_POOL_MAX: '8', DB_REPLICA_POOL_MAX: '4', LEDGER_BATCH_WINDOW_MS: '2', LEDGER_BATCH_TIMEOUT_MS: '3000', RELAY_POLL_MS: '20',
  });
  const unhandled: string[] = [];
  const log = createLogger('error', {
    write(line: string) {
      if (process.env.BANK_TEST_LOG === 'error') process.stderr.write(line);
      if (unhandled.length < 20 && line.includes('"unhandled error"')) unhandled.push(line);
    },
  });
  const platform = createPlatform(config, { topology: clusters.topology, log });
  await platform.ready();
  const app = await buildApp(platform);
  const roles = startEventRoles(platform, ['relay', 'notify', 'workers']);
  const users = await seedBank(platform, USERS, START_BALANCE);
  const initial = await moneyInWallets(platform);
  return {
    clusters, platform, app, roles, users, initial, mailbox, unhandled,
    async close() {
      await roles.stop();
      await app.close();
      await platform.close();
      await clusters.close();
      rmSync(mailbox, { recursive: true, force: true });
    },
  };
}

describe('the bank test on four clusters with replicas', () => {
  let bank: Bank;
  beforeAll(async () => {
    bank = await openBank('local');
  }, 120_000);
  afterAll(async () => {
    await bank?.close();
  });

  it(`moves money between thousands of users for ${SECONDS} s and every invariant holds`, async () => {
    expect(bank.users.length).toBeGreaterThan(1_900);
    expect(bank.initial).toBe(BigInt(USERS) * START_BALANCE);
    const stats = await runBank({ app: bank.app, platform: bank.platform, users: bank.users, seconds: SECONDS, clients: CLIENTS });
    expect(stats.statuses.get(500) ?? 0, `500 answers; the platform logged:\n${bank.unhandled.join('')}`).toBe(0);
    expect([...stats.statuses.keys()].filter((s) => s !== 201 && s !== 422)).toEqual([]);
    expect(stats.crossCluster).toBeGreaterThan(100);
    expect(stats.sameCluster).toBeGreaterThan(20);
    await checkBank(bank.platform, stats, bank.initial);
  }, (SECONDS + 120) * 1000);
});

describe('the bank test with a primary killed mid-run (sync-replica)', () => {
  let bank: Bank;
  let failover: FailoverManager;
  beforeAll(async () => {
    bank = await openBank('sync-replica');
    failover = createFailoverManager(failoverTargets(bank.clusters.topology, bank.clusters.clusters), {
      mode: 'promote', durability: 'sync-replica', checkIntervalMs: 500, checkTimeoutMs: 1000, failures: 3, log: createLogger('silent'),
    });
    failover.start();
  }, 120_000);
  afterAll(async () => {
    await failover?.stop();
    await bank?.close();
  });

  it('loses no acknowledged transfer and serves the region again within 30 s', async () => {
    const victim = bank.clusters.cluster('us-west');
    const regionUsers = bank.users.filter((u) => bank.platform.db.forShard(u.shard).name === 'us-west');
    let killedAt = 0;
    let backAt = 0;
    const killSecond = Math.max(3, Math.floor(SECONDS / 3));
    // one key for every probe: a 503'd probe that committed after all replays, not duplicates
    const probeKey = `probe-${Date.now()}`;
    const probe = async () => {
      // a transfer between two of the region's users: served again?
      const [a, b] = [regionUsers[0]!, regionUsers[1]!];
      const res = await bank.app.inject({ method: 'POST', url: '/v1/transfers', headers: { ...a.auth, 'idempotency-key': probeKey }, payload: { to: b.id, amount: 1, currency: 'USD' } });
      return res.statusCode === 201 ? res.json().id as string : undefined;
    };
    const probes: string[] = [];
    const stats = await runBank({
      app: bank.app, platform: bank.platform, users: bank.users, seconds: SECONDS, clients: CLIENTS,
      onSecond: async (s) => {
        if (s === killSecond && !killedAt) {
          victim.primary().kill('SIGKILL');
          killedAt = Date.now();
        } else if (killedAt && !backAt) {
          const id = await probe();
          if (id) {
            probes.push(id);
            backAt = Date.now();
          }
        }
      },
    });
    while (killedAt && !backAt && Date.now() - killedAt < 60_000) {
      const id = await probe();
      if (id) {
        probes.push(id);
        backAt = Date.now();
      } else await new Promise((r) => setTimeout(r, 250));
    }
    expect(killedAt).toBeGreaterThan(0);
    expect(backAt - killedAt).toBeLessThan(30_000);
    expect(failover.status().find((c) => c.name === 'us-west')?.failovers).toBe(1);
    expect(stats.statuses.get(500) ?? 0, `500 answers; the platform logged:\n${bank.unhandled.join('')}`).toBe(0);
    expect([...stats.statuses.keys()].filter((s) => s !== 201 && s !== 422)).toEqual([]);
    for (const id of probes) stats.acknowledged.set(id, { from: regionUsers[0]!.id, to: regionUsers[1]!.id, amount: 1n });
    await checkBank(bank.platform, stats, bank.initial, 90_000);
  }, (SECONDS + 180) * 1000);
});
