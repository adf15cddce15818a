/** Operator commands: migrate, reconcile, seed, vault rotate-kek, audit verify. */
import { InvalidArgumentError, type Command } from 'commander';
import { createTokens } from '../auth/tokens.js';
import { OPERATOR_ROLE } from '../fraud/routes.js';
import { parseId } from '../shared/ids.js';
import cliProgress from 'cli-progress';
import { loadConfig } from '../config/index.js';
import { resolveDatabase } from '../db/resolve.js';
import { migrate } from '../db/migrate.js';
import { createPlatform, type Platform } from '../platform.js';
import { createLogger } from '../observability/logger.js';
import { formatReport, reconcile } from '../ledger/reconcile.js';
import { CURRENCIES } from '../shared/currencies.js';
import { seedUsers, SEED_MAX_USERS } from './seed.js';
import { registerAuditCommands } from '../audit/cli.js';
import { recordKekRotation } from '../audit/security.js';

/** `wallet reconcile` exits with this when it finds a violation (1 stays "the command failed"). */
export const EXIT_VIOLATIONS = 2;

/** Runs fn with a platform on the configured database (embedded started if needed), then closes. */
export async function withPlatform<T>(fn: (p: Platform) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const database = await resolveDatabase(config);
  const platform = createPlatform(config, { databaseUrl: database.url, topology: database.topology, log: createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel) });
  try {
    return await fn(platform);
  } finally {
    await platform.close();
    await database.stop();
  }
}

function intOption(name: string, min: number, max: number) {
  return (raw: string): number => {
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
    return n;
  };
}

function minorOption(raw: string): bigint {
  if (!/^\d{1,18}$/.test(raw)) throw new InvalidArgumentError('must be a non-negative integer amount in minor units');
  return BigInt(raw);
}

function currencyOption(raw: string): string {
  const c = raw.toUpperCase();
  if (!CURRENCIES.includes(c)) throw new InvalidArgumentError(`${raw} is not an ISO 4217 currency code`);
  return c;
}

const plural = (n: number, noun: string) => `${n} ${noun}${n === 1 ? '' : 's'}`;

/** A progress bar on stderr (silent when stderr is not a terminal), so stdout stays the result. */
function progressBar(label: string) {
  return new cliProgress.SingleBar({ format: `${label} [{bar}] {percentage}% | {value}/{total} | ETA {eta_formatted}`, hideCursor: true, clearOnComplete: false }, cliProgress.Presets.shades_classic);
}

export function registerOpsCommands(program: Command): void {
  program
    .command('operator-token')
    .description('print an access token with the operator role (fraud review queue) for a user id; uses JWT_SECRET')
    .requiredOption('--user <id>', 'the operator\'s user id (usr_…)')
    .option('--ttl <seconds>', 'lifetime', (v) => Number(v))
    .action((opts: { user: string; ttl?: number }) => {
      if (!parseId(opts.user, 'usr')) throw new Error(`--user: ${opts.user} is not a user id`);
      const config = loadConfig(process.env, opts.ttl ? { jwtTtlSeconds: opts.ttl } : {});
      process.stdout.write(`${createTokens(config).issue(opts.user, [OPERATOR_ROLE]).accessToken}\n`);
    });

  program
    .command('migrate')
    .description('apply database migrations on every cluster and create the partitions ahead')
    .action(async () => {
      await withPlatform(async (p) => {
        for (const c of p.db.clusters) {
          const applied = await migrate(c.sql, { partitionsAheadMonths: p.config.partitionsAheadMonths });
          process.stdout.write(`${c.name}: ${applied.length ? `applied ${applied.join(', ')}` : 'up to date'}\n`);
        }
      });
    });

  program
    .command('reconcile')
    .description(`check the ledger invariants on every cluster (read-only); exits ${EXIT_VIOLATIONS} on any violation`)
    .option('--json', 'print the report as JSON')
    .action(async (opts: { json?: boolean }) => {
      const report = await withPlatform((p) => reconcile(p.db));
      process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
      if (!report.ok) process.exitCode = EXIT_VIOLATIONS;
    });

  program
    .command('seed')
    .description('create demo users, each with a wallet funded through the ledger (not for production)')
    .requiredOption('--users <n>', 'how many users', intOption('--users', 1, SEED_MAX_USERS))
    .option('--currency <code>', 'wallet currency', currencyOption, 'USD')
    .option('--balance <minor>', 'opening balance of each wallet, minor units', minorOption, 100_000n)
    .option('--password <password>', 'the demo password every seeded user shares')
    .action(async (opts: { users: number; currency: string; balance: bigint; password?: string }) => {
      await withPlatform(async (p) => {
        // a fresh clone may seed before it ever served: the schema must exist (idempotent, locked)
        for (const c of p.db.clusters) await migrate(c.sql, { partitionsAheadMonths: p.config.partitionsAheadMonths });
        const bar = progressBar('seeding users');
        bar.start(opts.users, 0);
        let result;
        try {
          result = await seedUsers(p, { users: opts.users, currency: opts.currency, balanceMinor: opts.balance, password: opts.password, onProgress: (done) => bar.update(done) });
        } finally {
          bar.stop();
        }
        process.stdout.write(
          `seeded ${plural(result.users, 'user')} (${plural(result.persons, 'person')}, ${plural(result.merchants, 'merchant')}), ${plural(result.funded, 'wallet')} funded with ${opts.balance} minor units of ${opts.currency}, in ${(result.durationMs / 1000).toFixed(1)} s\n` +
            `every seeded user signs in with the password "${result.password}"; for example:\n` +
            result.demo.map((u) => `  ${u.kind.padEnd(8)} ${u.email}  ${result.password}  (${u.id})\n`).join(''),
        );
      });
    });

  const vault = program.command('vault').description('card vault operations');
  vault
    .command('rotate-kek')
    .description('re-wrap every card data key under the active KEK (VAULT_ACTIVE_KEK); keep the old KEK in VAULT_KEKS until this has run')
    .action(async () => {
      await withPlatform(async (p) => {
        const bar = progressBar('re-wrapping data keys');
        let started = false;
        try {
          const { rewrapped, activeKek } = await p.vault.rotateKek(p.db, (done, total) => {
            if (!started) bar.start(total, 0);
            started = true;
            bar.update(done);
          });
          if (started) bar.stop();
          await recordKekRotation(p.db, { activeKek, rewrapped });
          process.stdout.write(rewrapped === 0 ? `every data key is already under KEK ${activeKek}; nothing to re-wrap\n` : `re-wrapped ${plural(rewrapped, 'data key')} under KEK ${activeKek}\n`);
        } catch (err) {
          if (started) bar.stop();
          throw err;
        }
      });
    });

  registerAuditCommands(program, { withPlatform, exitViolations: EXIT_VIOLATIONS });
}
