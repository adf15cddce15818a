/** Operator commands: migrate, reconcile, seed, vault rotate-kek. */
import type { Command } from 'commander';
import { loadConfig } from '../config/index.js';
import { resolveDatabase } from '../db/resolve.js';
import { migrate } from '../db/migrate.js';
import { createPlatform, type Platform } from '../platform.js';
import { createLogger } from '../observability/logger.js';

/** Runs fn with a platform on the configured database (embedded started if needed), then closes. */
export async function withPlatform<T>(fn: (p: Platform) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const database = await resolveDatabase(config);
  const platform = createPlatform(config, { databaseUrl: database.url, log: createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel) });
  try {
    return await fn(platform);
  } finally {
    await platform.close();
    await database.stop();
  }
}

export function registerOpsCommands(program: Command): void {
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
}
