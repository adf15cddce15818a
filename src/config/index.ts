/**
 * One validated, frozen configuration object. Every setting has an environment variable (the
 * names are part of the product's interface, see README) and may also come from the JSON file
 * named by WALLET_CONFIG (environment wins over the file). Invalid values stop the process with
 * an error naming the variable; production refuses the development secrets.
 */
import { readFileSync } from 'node:fs';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value, ValuePointer } from '@sinclair/typebox/value';

export const ROLES = ['api', 'relay', 'fraud', 'notify', 'workers', 'maintenance', 'gateway'] as const;
export type Role = (typeof ROLES)[number];

/** Development-only secrets: fine on a laptop, refused when NODE_ENV=production. */
export const DEV_SECRETS = {
  jwtSecret: 'dev-only-jwt-secret-change-me-0123456789abcdef',
  receiptSigningKey: 'dev-only-receipt-signing-key-change-me-0123456789',
  // 32 bytes, base64: the key-encryption key of the card vault.
  vaultKeks: 'dev1:ZGV2LW9ubHktdmF1bHQta2VrLTMyLWJ5dGVzLWxvbmc=',
} as const;

const Int = (min: number, max: number, dflt: number) => Type.Integer({ minimum: min, maximum: max, default: dflt });

/** key → [environment variable, schema]. */
const settings = {
  nodeEnv: ['NODE_ENV', Type.Union([Type.Literal('development'), Type.Literal('production'), Type.Literal('test')], { default: 'development' })],
  logLevel: ['LOG_LEVEL', Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)), { default: 'info' })],
  port: ['PORT', Int(0, 65535, 8080)],
  host: ['HOST', Type.Optional(Type.String({ minLength: 1 }))],
  publicBaseUrl: ['PUBLIC_BASE_URL', Type.Optional(Type.String({ pattern: '^https?://' }))],
  databaseUrl: ['DATABASE_URL', Type.Optional(Type.String({ pattern: '^postgres(ql)?://' }))],
  topologyFile: ['WALLET_TOPOLOGY', Type.Optional(Type.String({ minLength: 1 }))],
  dataDir: ['WALLET_DATA_DIR', Type.String({ minLength: 1, default: './.data' })],
  embeddedPgPort: ['EMBEDDED_PG_PORT', Int(1024, 32767, 15432)],
  // an embedded cluster set (src/db/cluster-set.ts) instead of the single embedded PostgreSQL:
  // clusters laid out by the plan's regions, replicas streaming; node ports from EMBEDDED_PG_PORT up
  embeddedClusters: ['EMBEDDED_CLUSTERS', Int(0, 64, 0)],
  embeddedReplicas: ['EMBEDDED_REPLICAS', Int(0, 8, 1)],
  // when a commit is acknowledged (src/db/durability.ts): on the primary, or also on a replica
  dbDurability: ['DB_DURABILITY', Type.Union([Type.Literal('local'), Type.Literal('sync-replica')], { default: 'local' })],
  // external clusters: set synchronous_standby_names with ALTER SYSTEM at start (not under Patroni/CloudNativePG)
  dbDurabilityApply: ['DB_DURABILITY_APPLY', Type.Boolean({ default: false })],
  // failover (src/db/failover.ts): unset = promote where this process runs the nodes (embedded
  // cluster set), follow (detect; the operator promotes) otherwise; off = no health checks
  failoverMode: ['FAILOVER_MODE', Type.Optional(Type.Union([Type.Literal('promote'), Type.Literal('follow'), Type.Literal('off')]))],
  failoverCheckIntervalMs: ['FAILOVER_CHECK_INTERVAL_MS', Int(50, 600_000, 10_000)],
  failoverCheckTimeoutMs: ['FAILOVER_CHECK_TIMEOUT_MS', Int(50, 60_000, 2000)],
  failoverFailures: ['FAILOVER_FAILURES', Int(1, 100, 3)],
  redisUrl: ['REDIS_URL', Type.Optional(Type.String({ pattern: '^rediss?://' }))],
  redisCluster: ['REDIS_CLUSTER', Type.Boolean({ default: false })],
  cacheL1MaxBytes: ['CACHE_L1_MAX_BYTES', Int(0, 64 * 1024 ** 3, 64 * 1024 ** 2)],
  cacheL1TtlSeconds: ['CACHE_L1_TTL_SECONDS', Int(1, 3600, 60)],
  cacheBalanceTtlSeconds: ['CACHE_BALANCE_TTL_SECONDS', Int(300, 3600, 300)],
  cacheL2TtlSeconds: ['CACHE_L2_TTL_SECONDS', Int(300, 3600, 1800)],
  // wall-clock, so it includes event-loop delay: 50 ms opened the breaker on a merely busy 2-core process (bench:cache)
  cacheRedisTimeoutMs: ['CACHE_REDIS_TIMEOUT_MS', Int(1, 5000, 250)],
  cacheBreakerFailures: ['CACHE_BREAKER_FAILURES', Int(1, 1000, 5)],
  cacheBreakerCooldownMs: ['CACHE_BREAKER_COOLDOWN_MS', Int(100, 600_000, 5000)],
  cacheDirtyKeysMax: ['CACHE_DIRTY_KEYS_MAX', Int(1, 10_000_000, 100_000)],
  cacheWarmIntervalMs: ['CACHE_WARM_INTERVAL_MS', Int(0, 86_400_000, 300_000)],
  cacheWarmShare: ['CACHE_WARM_SHARE_PERCENT', Int(0, 100, 10)],
  cacheWarmMaxUsers: ['CACHE_WARM_MAX_USERS', Int(0, 10_000_000, 20_000)],
  cacheWarmBudgetMs: ['CACHE_WARM_BUDGET_MS', Int(0, 600_000, 5000)],
  cacheWarmReadyMaxMs: ['CACHE_WARM_READY_MAX_MS', Int(0, 600_000, 1000)],
  natsUrl: ['NATS_URL', Type.Optional(Type.String({ pattern: '^nats://' }))],
  roles: ['WALLET_ROLES', Type.Array(Type.Union(ROLES.map((r) => Type.Literal(r))), { minItems: 1, default: [...ROLES] })],
  dbPoolMax: ['DB_POOL_MAX', Int(1, 1000, 20)],
  dbStatementTimeoutMs: ['DB_STATEMENT_TIMEOUT_MS', Int(100, 600_000, 15_000)],
  dbReplicaPoolMax: ['DB_REPLICA_POOL_MAX', Int(1, 1000, 20)],
  // balance and history reads use a replica only while it is at most this far behind its primary
  replicaMaxLagMs: ['REPLICA_MAX_LAG_MS', Int(0, 600_000, 500)],
  replicaPollMs: ['REPLICA_POLL_MS', Int(10, 60_000, 200)],
  // shard moves (src/db/shard-move.ts): how often every process re-reads the routing overrides
  // (0: only when a write meets a moved shard's fence), and how long the ledger holds a command
  // that met a fence before answering 503 (the move's final step lasts well under a second)
  shardMapPollMs: ['SHARD_MAP_POLL_MS', Int(0, 60_000, 1000)],
  shardFenceWaitMs: ['SHARD_FENCE_WAIT_MS', Int(100, 600_000, 30_000)],
  // users whose last write position this process remembers (read-your-writes without the header)
  consistencyRecentUsers: ['CONSISTENCY_RECENT_USERS', Int(1, 10_000_000, 100_000)],

  passwordHashLog2Cost: ['PASSWORD_HASH_LOG2_COST', Int(10, 20, 15)],
  jwtSecret: ['JWT_SECRET', Type.String({ minLength: 32, default: DEV_SECRETS.jwtSecret })],
  jwtIssuer: ['JWT_ISSUER', Type.String({ minLength: 1, default: 'wallet-platform' })],
  jwtAudience: ['JWT_AUDIENCE', Type.String({ minLength: 1, default: 'wallet-api' })],
  jwtTtlSeconds: ['JWT_TTL_SECONDS', Int(60, 86_400, 3600)],
  receiptSigningKey: ['RECEIPT_SIGNING_KEY', Type.String({ minLength: 32, default: DEV_SECRETS.receiptSigningKey })],
  receiptUrlTtlSeconds: ['RECEIPT_URL_TTL_SECONDS', Int(60, 30 * 86_400, 7 * 86_400)],
  vaultKeks: ['VAULT_KEKS', Type.String({ pattern: '^[A-Za-z0-9_-]+:[A-Za-z0-9+/=]+(,[A-Za-z0-9_-]+:[A-Za-z0-9+/=]+)*$', default: DEV_SECRETS.vaultKeks })],
  vaultActiveKek: ['VAULT_ACTIVE_KEK', Type.Optional(Type.String({ minLength: 1 }))],

  bodyLimitBytes: ['BODY_LIMIT_BYTES', Int(1024, 1_048_576, 16_384)],
  // load shedding and admission (src/http/shedding.ts), per process: reads (GET /v1/...) are
  // limited and shed first; money-moving requests wait for admission, refused only when the queue is full
  httpReadsPerSecond: ['HTTP_READS_PER_SECOND', Int(0, 10_000_000, 4000)],
  httpReadsBurst: ['HTTP_READS_BURST', Int(1, 10_000_000, 4000)],
  httpShedReadsAtInFlight: ['HTTP_SHED_READS_AT_IN_FLIGHT', Int(1, 1_000_000, 256)],
  httpMoneyConcurrency: ['HTTP_MONEY_CONCURRENCY', Int(1, 1_000_000, 256)],
  httpMoneyQueueMax: ['HTTP_MONEY_QUEUE_MAX', Int(0, 10_000_000, 4096)],
  maxAmountMinor: ['MAX_AMOUNT_MINOR', Int(1, Number.MAX_SAFE_INTEGER, 100_000_000)],
  // cards a user may hold at once (removed ones do not count)
  paymentMethodsMax: ['PAYMENT_METHODS_MAX', Int(1, 1000, 20)],
  idempotencyTtlHours: ['IDEMPOTENCY_TTL_HOURS', Int(24, 24 * 30, 48)],
  idempotencyInFlightMax: ['IDEMPOTENCY_IN_FLIGHT_MAX', Int(100, 10_000_000, 100_000)],
  holdExpiryMinutes: ['HOLD_EXPIRY_MINUTES', Int(1, 60 * 24 * 30, 7 * 24 * 60)],
  networkTimeoutMs: ['NETWORK_TIMEOUT_MS', Int(10, 60_000, 3000)],

  ledgerBatchMaxSize: ['LEDGER_BATCH_MAX_SIZE', Int(1, 10_000, 500)],
  ledgerBatchWindowMs: ['LEDGER_BATCH_WINDOW_MS', Int(0, 1000, 2)],
  ledgerQueueMax: ['LEDGER_QUEUE_MAX', Int(1, 1_000_000, 20_000)],
  ledgerConcurrentBatches: ['LEDGER_CONCURRENT_BATCHES', Int(1, 64, 2)],
  ledgerBatchRetries: ['LEDGER_BATCH_RETRIES', Int(0, 20, 5)],
  ledgerBatchTimeoutMs: ['LEDGER_BATCH_TIMEOUT_MS', Int(100, 600_000, 10_000)],
  dbStartupTimeoutMs: ['DB_STARTUP_TIMEOUT_MS', Int(100, 600_000, 10_000)],
  // a background database step (relay, audit append) past this is a stuck connection: the pool is replaced
  dbStepTimeoutMs: ['DB_STEP_TIMEOUT_MS', Int(100, 600_000, 15_000)],
  ledgerSystemSubAccounts: ['LEDGER_SYSTEM_SUB_ACCOUNTS', Int(1, 256, 16)],

  loginMaxFailuresPerAccount: ['LOGIN_MAX_FAILURES_PER_ACCOUNT', Int(1, 1000, 10)],
  loginMaxFailuresPerIp: ['LOGIN_MAX_FAILURES_PER_IP', Int(1, 100_000, 100)],
  loginWindowSeconds: ['LOGIN_WINDOW_SECONDS', Int(60, 86_400, 900)],

  maintenanceIntervalMs: ['MAINTENANCE_INTERVAL_MS', Int(100, 3_600_000, 60_000)],
  // event backbone (issue 5): NATS_URL set → JetStream, else the in-process bus
  busNamespace: ['BUS_NAMESPACE', Type.String({ pattern: '^[a-z0-9_-]{0,32}$', default: '' })],
  natsStreamReplicas: ['NATS_STREAM_REPLICAS', Int(1, 5, 1)],
  busMaxDeliver: ['BUS_MAX_DELIVER', Int(1, 100, 5)],
  busDedupWindowMs: ['BUS_DEDUP_WINDOW_MS', Int(1000, 86_400_000, 120_000)],
  busMaxAgeDays: ['BUS_MAX_AGE_DAYS', Int(1, 365, 7)],
  // in-process bus: a handler attempt not finished by then is redelivered (JetStream's ack_wait)
  busAckWaitMs: ['BUS_ACK_WAIT_MS', Int(100, 600_000, 30_000)],
  // in-process job queue (no NATS_URL): jobs held at most, over all priorities (an email job is 1-2 KB)
  jobsMemoryMax: ['JOBS_MEMORY_MAX', Int(1000, 10_000_000, 1_000_000)],
  relayBatchSize: ['RELAY_BATCH_SIZE', Int(1, 10_000, 1000)],
  relayPollMs: ['RELAY_POLL_MS', Int(1, 60_000, 20)],
  relayLanes: ['RELAY_LANES', Int(1, 1000, 16)],
  // lanes published at once by one relay; each holds a connection while the bus acknowledges
  relayConcurrency: ['RELAY_CONCURRENCY', Int(1, 64, 4)],
  outboxRetentionHours: ['OUTBOX_RETENTION_HOURS', Int(1, 24 * 90, 24)],
  inboxRetentionDays: ['INBOX_RETENTION_DAYS', Int(1, 90, 8)],
  workersMin: ['WORKERS_MIN', Int(1, 10_000, 2)],
  workersMax: ['WORKERS_MAX', Int(1, 10_000, 200)],
  workersPerThousand: ['WORKERS_PER_THOUSAND', Int(1, 1000, 10)],
  workersScaleDownBelow: ['WORKERS_SCALE_DOWN_BELOW', Int(0, 1_000_000, 100)],
  workersScaleIntervalMs: ['WORKERS_SCALE_INTERVAL_MS', Int(100, 600_000, 5000)],
  // notifications
  webhookTimeoutMs: ['WEBHOOK_TIMEOUT_MS', Int(100, 60_000, 5000)],
  webhookRetryHours: ['WEBHOOK_RETRY_HOURS', Int(1, 24 * 7, 24)],
  webhookRetryBaseMs: ['WEBHOOK_RETRY_BASE_MS', Int(1, 3_600_000, 10_000)],
  webhookRetryMaxDelayMs: ['WEBHOOK_RETRY_MAX_DELAY_MS', Int(1, 86_400_000, 3_600_000)],
  webhookMaxPerUser: ['WEBHOOK_MAX_PER_USER', Int(1, 1000, 20)],
  // unset: http:// endpoints allowed except in production (https only there)
  webhookAllowHttp: ['WEBHOOK_ALLOW_HTTP', Type.Optional(Type.Boolean())],
  // fraud scoring (issue 7)
  fraudUrl: ['FRAUD_URL', Type.Optional(Type.String({ pattern: '^https?://' }))],
  fraudRulesFile: ['FRAUD_RULES_FILE', Type.Optional(Type.String({ minLength: 1 }))],
  fraudModelFile: ['FRAUD_MODEL_FILE', Type.Optional(Type.String({ minLength: 1 }))],
  fraudRulesPollMs: ['FRAUD_RULES_POLL_MS', Int(100, 3_600_000, 2000)],
  fraudClientCountryHeader: ['FRAUD_CLIENT_COUNTRY_HEADER', Type.String({ pattern: '^[a-z0-9-]{1,64}$', default: 'x-client-country' })],
  fraudPort: ['FRAUD_PORT', Int(0, 65535, 8081)],
  fraudBatchMax: ['FRAUD_BATCH_MAX', Int(1, 10_000, 256)],
  smtpUrl: ['SMTP_URL', Type.Optional(Type.String({ pattern: '^smtps?://' }))],
  mailFrom: ['MAIL_FROM', Type.String({ minLength: 3, default: 'Wallet <no-reply@wallet.local>' })],
  mailboxDir: ['MAILBOX_DIR', Type.Optional(Type.String({ minLength: 1 }))],

  partitionsAheadMonths: ['PARTITIONS_AHEAD_MONTHS', Int(1, 36, 3)],
  // history lifecycle (src/db/partitions.ts): a month moves to the archive schema once wholly older than
  // the hot period, and is dropped once wholly older than the warm one. At least 62 days hot: the
  // previous month stays writable and a hold's row (HOLD_EXPIRY_MINUTES <= 30 days) stays updatable.
  partitionsHotDays: ['PARTITIONS_HOT_DAYS', Int(62, 3650, 90)],
  partitionsWarmDays: ['PARTITIONS_WARM_DAYS', Int(365, 36_500, 1826)],
} as const satisfies Record<string, readonly [string, TSchema]>;

type Settings = typeof settings;
const ConfigSchema = Type.Object(
  Object.fromEntries(Object.entries(settings).map(([k, [, s]]) => [k, s])) as { [K in keyof Settings]: Settings[K][1] },
  { additionalProperties: false },
);
export type Config = Readonly<Static<typeof ConfigSchema>>;

/** every environment variable the configuration reads */
export const CONFIG_VARIABLES: readonly string[] = Object.values(settings).map(([name]) => name);

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function parseEnvValue(key: keyof Settings, raw: string): unknown {
  if (key === 'roles') return raw.split(',').map((r) => r.trim()).filter(Boolean);
  if (key === 'redisCluster' || key === 'webhookAllowHttp') return raw === 'true' || raw === '1' ? true : raw === 'false' || raw === '0' ? false : raw;
  return raw;
}

/** Builds the configuration from an environment (process.env by default) and WALLET_CONFIG. */
export function loadConfig(env: Record<string, string | undefined> = process.env, overrides: Partial<Record<keyof Settings, unknown>> = {}): Config {
  const input: Record<string, unknown> = {};
  const file = env.WALLET_CONFIG;
  if (file) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new ConfigError(`WALLET_CONFIG: cannot read ${file} as JSON (${(err as Error).message})`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ConfigError('WALLET_CONFIG: the file must hold a JSON object');
    for (const [k, v] of Object.entries(parsed)) {
      if (!(k in settings)) throw new ConfigError(`WALLET_CONFIG: unknown key "${k}"`);
      input[k] = v;
    }
  }
  for (const [key, [name]] of Object.entries(settings) as [keyof Settings, Settings[keyof Settings]][]) {
    const raw = env[name];
    if (raw !== undefined && raw !== '') input[key] = parseEnvValue(key, raw);
  }
  Object.assign(input, overrides);

  const withDefaults = Value.Default(ConfigSchema, Value.Convert(ConfigSchema, input)) as Record<string, unknown>;
  const firstError = Value.Errors(ConfigSchema, withDefaults).First();
  if (firstError) {
    const key = firstError.path.split('/')[1] as keyof Settings | undefined;
    const name = key && key in settings ? settings[key][0] : firstError.path;
    throw new ConfigError(`${name}: ${firstError.message} (got ${JSON.stringify(ValuePointer.Get(withDefaults, firstError.path))})`);
  }
  const config = withDefaults as Config;
  if (config.nodeEnv === 'production') refuseDevelopmentSecrets(config);
  if (config.partitionsWarmDays <= config.partitionsHotDays) throw new ConfigError(`PARTITIONS_WARM_DAYS: must be longer than PARTITIONS_HOT_DAYS (${config.partitionsHotDays})`);
  return Object.freeze({ ...config, roles: Object.freeze([...config.roles]) }) as Config;
}

function refuseDevelopmentSecrets(config: Config): void {
  const defaults: [keyof typeof DEV_SECRETS, string][] = [
    ['jwtSecret', 'JWT_SECRET'],
    ['receiptSigningKey', 'RECEIPT_SIGNING_KEY'],
    ['vaultKeks', 'VAULT_KEKS'],
  ];
  for (const [key, name] of defaults) {
    if (config[key] === DEV_SECRETS[key]) throw new ConfigError(`${name}: production refuses the development default; set a secret of your own`);
  }
  if (config.vaultKeks.includes(DEV_SECRETS.vaultKeks.split(':')[1]!)) throw new ConfigError('VAULT_KEKS: production refuses the development key');
}

/** Where the API is reachable, for links (receipt URLs) and the start-up banner. */
export function publicBaseUrl(config: Config, listeningPort = config.port): string {
  return config.publicBaseUrl ?? `http://${config.host ?? '127.0.0.1'}:${listeningPort}`;
}

export function listenHost(config: Config): string {
  return config.host ?? (config.nodeEnv === 'production' ? '0.0.0.0' : '127.0.0.1');
}
