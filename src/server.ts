/**
 * Starts the roles this process runs. `api` listens; `maintenance` runs housekeeping; `relay`,
 * `notify` and `workers` run the event backbone (events/roles.ts); `fraud` scores in the api's
 * process when both run together (the default), and listens on FRAUD_PORT for api processes
 * (FRAUD_URL) when it runs without `api`. `gateway` arrives with its issue.
 */
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import { listenHost, publicBaseUrl, type Config, type Role } from './config/index.js';
import { resolveDatabase } from './db/resolve.js';
import { migrate } from './db/migrate.js';
import { createPlatform, resolveTopology, type Platform } from './platform.js';
import { failoverManagerFor, type FailoverManager } from './db/failover.js';
import { ensureExternalDurability } from './db/durability.js';
import { buildApp } from './app.js';
import { coreTasks, startMaintenance } from './maintenance/index.js';
import { paymentTasks } from './payments/expiry.js';
import { createLogger } from './observability/logger.js';
import { createWarmer, settleWithin, type Warming } from './cache/warming.js';
import { eventTasks, startEventRoles, type EventRoles } from './events/roles.js';
import { startFraudServer } from './fraud/remote.js';
import { operationsRoutes } from './observability/routes.js';

export interface RunningServer {
  platform: Platform;
  app?: FastifyInstance;
  url?: string;
  /** a process without the api role: where its /healthz, /readyz and /metrics answer */
  operationsUrl?: string;
  stop(): Promise<void>;
}

export async function startServer(config: Config, roles: readonly Role[] = config.roles): Promise<RunningServer> {
  const log = createLogger(config.logLevel);
  const database = await resolveDatabase(config, (m) => log.info(m));
  let platform: Platform | undefined;
  let warming: Warming | undefined;
  let events: EventRoles | undefined;
  let fraudServer: { app: FastifyInstance; url: string } | undefined;
  let failover: FailoverManager | undefined;
  let ops: FastifyInstance | undefined;
  try {
    const topology = database.topology ?? resolveTopology(config, database.url);
    platform = createPlatform(config, { topology, log });
    await platform.ready();
    // every cluster must answer at start: a typo in the topology fails here, naming the cluster,
    // not later as one region's users' 503s
    const down = await platform.db.unreachable(config.dbStartupTimeoutMs);
    if (down.length) throw new Error(`database cluster${down.length > 1 ? 's' : ''} ${down.join(', ')} did not answer within ${config.dbStartupTimeoutMs} ms (check the topology's URLs and that the primaries run)`);
    // an embedded cluster set wrote its durability at start; other clusters are checked (or set)
    if (!database.clusterSet) await ensureExternalDurability(platform.db.clusters, { durability: config.dbDurability, apply: config.dbDurabilityApply, log });
    for (const c of platform.db.clusters) {
      const applied = await migrate(c.sql, { partitionsAheadMonths: config.partitionsAheadMonths });
      if (applied.length) log.info({ cluster: c.name, applied }, 'migrations applied');
    }
    const unsupported = roles.filter((r) => r === 'gateway');
    if (unsupported.length) log.info({ roles: unsupported }, 'these roles have no work in this version yet');

    events = startEventRoles(platform, roles);
    if (roles.includes('fraud') && !roles.includes('api')) {
      fraudServer = await startFraudServer(platform.fraudScoring.localScorer(), config, log);
      log.info({ url: fraudServer.url }, 'fraud role listening');
    }
    // beside the maintenance rounds, not in them: a dead primary cannot grant their advisory lock
    if (roles.includes('maintenance')) {
      failover = failoverManagerFor(config, topology, { managed: database.clusterSet?.clusters, log, metrics: platform.metrics.failover });
      failover?.start();
    }
    const maintenance = roles.includes('maintenance') ? startMaintenance(platform, [...coreTasks(platform), ...paymentTasks(platform), ...eventTasks(platform)]) : undefined;
    let app: FastifyInstance | undefined;
    let url: string | undefined;
    if (roles.includes('api')) {
      // The first warming round runs while the app is built; listening waits for it at most
      // CACHE_WARM_READY_MAX_MS in all (then it goes on in the background). Nothing to warm
      // with neither L1 nor Redis.
      const warmStarted = performance.now();
      if (config.cacheWarmIntervalMs > 0 && (config.redisUrl || config.cacheL1MaxBytes > 0)) warming = createWarmer(platform).start();
      app = await buildApp(platform);
      if (warming) await settleWithin(warming.firstRound, Math.max(0, config.cacheWarmReadyMaxMs - (performance.now() - warmStarted)));
      await app.listen({ port: config.port, host: listenHost(config) });
      const port = (app.server.address() as { port: number }).port;
      url = publicBaseUrl(config, port);
    }
    // A process without the API (relay, notify, workers, maintenance, fraud on their own) still
    // answers its probes and Prometheus on PORT: /healthz, /readyz, /metrics. Its alerts
    // (relay lag, queue depth, dead letters) are its metrics.
    let operationsUrl: string | undefined;
    if (!app) {
      const opsServer = Fastify({ loggerInstance: log, logController: new LogController({ disableRequestLogging: true }) });
      ops = opsServer as unknown as FastifyInstance;
      await opsServer.register(operationsRoutes(platform));
      await opsServer.listen({ port: config.port, host: listenHost(config) });
      // its own address, not PUBLIC_BASE_URL (the API's, behind the load balancer)
      operationsUrl = `http://${config.host ?? '127.0.0.1'}:${(opsServer.server.address() as { port: number }).port}`;
    }
    const p = platform;
    const ev = events;
    const fraud = fraudServer;
    const fo = failover;
    return {
      platform: p,
      app,
      url,
      operationsUrl,
      async stop() {
        await fo?.stop(); // first: nodes stopping on purpose are no failure to act on
        await app?.close(); // stop accepting, finish requests in flight
        await ops?.close();
        await fraud?.app.close();
        await ev.stop(); // the relay stops between batches, consumers finish what they hold
        await warming?.stop();
        await maintenance?.stop();
        await p.close(); // drains the ledger queue, closes pools
        await database.stop();
      },
    };
  } catch (err) {
    await failover?.stop();
    await ops?.close().catch(() => undefined);
    await fraudServer?.app.close().catch(() => undefined);
    await events?.stop().catch(() => undefined);
    await warming?.stop();
    await platform?.close().catch(() => undefined);
    await database.stop();
    throw err;
  }
}
