/** The `wallet` command. */
import { Command, Option } from 'commander';
import { ConfigError, loadConfig, ROLES, type Role } from '../config/index.js';
import { startServer } from '../server.js';
import { registerOpsCommands } from './ops.js';
import { registerShardCommands } from './shards.js';
import { registerMailCommand } from '../notify/mail-cli.js';
import { registerFraudCommands } from '../fraud/model/cli.js';
import { registerBenchCommand } from '../bench/http/cli.js';

const program = new Command('wallet').description('The wallet platform: API, ledger and operations').showHelpAfterError();

program
  .command('serve')
  .description('run the platform roles (default: all, in this process)')
  .addOption(new Option('--roles <roles>', `comma-separated roles: ${ROLES.join(', ')}`))
  .addOption(new Option('--embedded-clusters <n>', 'run an embedded set of n PostgreSQL clusters (the plan\'s regions) instead of one (EMBEDDED_CLUSTERS)'))
  .addOption(new Option('--replicas <n>', 'streaming replicas per embedded cluster (EMBEDDED_REPLICAS, default 1)'))
  .action(async (opts: { roles?: string; embeddedClusters?: string; replicas?: string }) => {
    const config = loadConfig(process.env, {
      ...(opts.roles ? { roles: opts.roles.split(',').map((r) => r.trim()) } : {}),
      ...(opts.embeddedClusters !== undefined ? { embeddedClusters: opts.embeddedClusters } : {}),
      ...(opts.replicas !== undefined ? { embeddedReplicas: opts.replicas } : {}),
    });
    // A signal while starting (an embedded cluster set takes seconds) exits at once: the exit hook
    // of db/embedded.ts asks every PostgreSQL this process started for a fast shutdown.
    const abortStart = (signal: NodeJS.Signals) => {
      process.stderr.write(`\n${signal} while starting: stopping\n`);
      process.exit(130);
    };
    process.once('SIGINT', abortStart);
    process.once('SIGTERM', abortStart);
    const server = await startServer(config, config.roles as Role[]);
    process.removeListener('SIGINT', abortStart);
    process.removeListener('SIGTERM', abortStart);
    if (server.url) {
      process.stdout.write(`\nwallet platform listening on ${server.url}\n  API:  ${server.url}/v1\n  docs: ${server.url}/docs\n  roles: ${config.roles.join(', ')}\n\n`);
    } else {
      process.stdout.write(`wallet platform running roles: ${config.roles.join(', ')}\n  health and metrics: ${server.operationsUrl}/healthz, /readyz, /metrics\n`);
    }
    let stopping = false;
    const shutdown = (signal: string) => {
      if (stopping) return;
      stopping = true;
      process.stdout.write(`\n${signal}: stopping (finishing requests in flight)...\n`);
      server.stop().then(
        () => process.exit(0),
        (err) => {
          process.stderr.write(`shutdown failed: ${(err as Error).message}\n`);
          process.exit(1);
        },
      );
    };
    process.on('SIGINT', () => shutdown('SIGINT'));
    process.on('SIGTERM', () => shutdown('SIGTERM'));
  });

registerOpsCommands(program);
registerShardCommands(program);
registerMailCommand(program);
registerFraudCommands(program);
registerBenchCommand(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof ConfigError) process.stderr.write(`configuration error: ${err.message}\n`);
  else process.stderr.write(`wallet: ${(err as Error).message ?? String(err)}\n`);
  process.exit(1);
});
