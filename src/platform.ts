/**
 * The platform's dependencies, built once from the configuration and handed to every service:
 * no singletons, no service locator. Tests build the same object against a test database.
 */
import type { Config } from './config/index.js';
import { createDb, type Db } from './db/index.js';
import { createRecentWrites, type RecentWrites } from './db/consistency.js';
import { readTopologyFile, singleClusterTopology, validateTopology, type Topology } from './db/topology.js';
import { createLedgerEngine, type LedgerEngine } from './ledger/engine.js';
import { createSystemAccounts, type SystemAccounts } from './ledger/accounts.js';
import { createMetrics, type Metrics } from './observability/metrics.js';
import { createLogger, type Logger } from './observability/logger.js';
import { createTokens, type Tokens } from './auth/tokens.js';
import { createVault, parseKeyRing, type Vault } from './vault/index.js';
import { createNetworkSimulator, withTimeout, type PaymentNetwork } from './network/index.js';
import { createInFlight, type InFlight } from './http/idempotency.js';
import { cacheKey, createCache, type Cache } from './cache/index.js';
import { reviseRecent } from './history/service.js';
import { createBackbone } from './events/index.js';
import { createFraud, type Fraud } from './fraud/index.js';
import type { FraudClient } from './fraud/client.js';
import type { Bus, JobQueue } from './events/types.js';

export interface Platform {
  readonly config: Config;
  readonly db: Db;
  readonly engine: LedgerEngine;
  readonly systemAccounts: SystemAccounts;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly tokens: Tokens;
  readonly vault: Vault;
  readonly network: PaymentNetwork;
  readonly inFlight: InFlight;
  readonly cache: Cache;
  /** the last write position of the users this process wrote for (read-your-writes on replicas) */
  readonly consistency: RecentWrites;
  /** the event bus the relay publishes to and consumers subscribe on */
  readonly bus: Bus;
  /** priority work queues (high, medium, low) drained by the workers role */
  readonly jobs: JobQueue;
  /** fraud decisions for the money services (in process, or the fraud role's when FRAUD_URL is set) */
  readonly fraud: FraudClient;
  /** the scoring itself, what the fraud role serves */
  readonly fraudScoring: Fraud;
  /** resolves when the cache has connected and subscribed to invalidations (at most ~2 s) */
  ready(): Promise<void>;
  close(): Promise<void>;
}

export interface PlatformOverrides {
  /** the database every shard uses when there is no topology file (embedded or DATABASE_URL) */
  databaseUrl?: string;
  topology?: Topology;
  log?: Logger;
  network?: PaymentNetwork;
}

export function resolveTopology(config: Config, databaseUrl?: string): Topology {
  if (config.topologyFile) return readTopologyFile(config.topologyFile);
  const url = databaseUrl ?? config.databaseUrl;
  if (!url) throw new Error('DATABASE_URL: no database (set DATABASE_URL, WALLET_TOPOLOGY, or start the embedded PostgreSQL)');
  return validateTopology(singleClusterTopology(url));
}

export function createPlatform(config: Config, overrides: PlatformOverrides = {}): Platform {
  const topology = overrides.topology ?? resolveTopology(config, overrides.databaseUrl);
  const log = overrides.log ?? createLogger(config.logLevel);
  const metrics = createMetrics();
  const db = createDb(topology, {
    poolMax: config.dbPoolMax,
    replicaPoolMax: config.dbReplicaPoolMax,
    statementTimeoutMs: config.dbStatementTimeoutMs,
    replicaMaxLagMs: config.replicaMaxLagMs,
    replicaPollMs: config.replicaPollMs,
    shardMapPollMs: config.shardMapPollMs,
    metrics: metrics.db,
  });
  const consistency = createRecentWrites(config.consistencyRecentUsers);
  const cache = createCache(config, metrics.cache);
  const { bus, jobs } = createBackbone(config, log, metrics.events);
  const backboneStarted = Promise.all([bus.start(), jobs.start()]);
  // ready() reports a failure; a platform that never calls it (the CLI's one-shot commands, which
  // need no bus) must not be ended by it as an unhandled rejection
  backboneStarted.catch(() => undefined);
  const fraud = createFraud(config, { db, log, registry: metrics.registry });
  const cacheStarted = cache.start().catch((err) => log.warn({ err }, 'cache start failed; serving from the database'));
  const engine = createLedgerEngine(
    db,
    {
      batchMaxSize: config.ledgerBatchMaxSize,
      batchWindowMs: config.ledgerBatchWindowMs,
      queueMax: config.ledgerQueueMax,
      concurrentBatches: config.ledgerConcurrentBatches,
      retries: config.ledgerBatchRetries,
      batchTimeoutMs: config.ledgerBatchTimeoutMs,
      fenceWaitMs: config.shardFenceWaitMs,
      // write-through before the callers are answered: their next read sees their own write
      onCommitted: async (effects) => {
        if (effects.position) consistency.note(new Set(effects.wallets.map((w) => w.userId)), effects.position.cluster, effects.position.lsn);
        await Promise.all([cache.putVersioned(effects.wallets.map((w) => ({ key: cacheKey.balance(w.id), value: w }))), reviseRecent({ cache }, effects)]);
      },
    },
    metrics,
  );
  return {
    config,
    db,
    engine,
    systemAccounts: createSystemAccounts(config.ledgerSystemSubAccounts),
    metrics,
    log,
    tokens: createTokens(config),
    vault: createVault(parseKeyRing(config.vaultKeks, config.vaultActiveKek)),
    network: withTimeout(overrides.network ?? createNetworkSimulator(), config.networkTimeoutMs),
    inFlight: createInFlight(config.idempotencyInFlightMax),
    cache,
    consistency,
    bus,
    jobs,
    fraud: fraud.client,
    fraudScoring: fraud,
    ready: async () => {
      // the routing of moved shards before the first request (a stale route is refused by the
      // move's fence, but reads would see the old cluster until the first poll)
      const shardMap = db.refreshShardMap().catch((err) => log.warn({ err }, 'reading the shard map failed; routing by the topology until a poll succeeds'));
      await Promise.all([cacheStarted, backboneStarted, shardMap]);
    },
    async close() {
      await engine.stop();
      await cache.close();
      await Promise.allSettled([bus.close(), jobs.close(), fraud.close()]);
      await db.close();
    },
  };
}
