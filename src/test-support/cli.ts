/** The `wallet` CLI as an operator runs it: a process of its own, configured only by `env`. */
import { spawn } from 'node:child_process';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Nothing inherited that names a database, a bus or secrets; fails after 90 s. */
export function runWalletCli(args: string[], env: Record<string, string>): Promise<CliResult> {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(DATABASE_URL|TEST_DATABASE_URL|WALLET_|VAULT_|REDIS_URL|NATS_URL|PORT|LOG_LEVEL|NODE_ENV)/.test(k)));
  const child = spawn(process.execPath, ['bin/wallet.js', ...args], { env: { ...inherited, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`wallet ${args.join(' ')} did not finish in 90 s: ${stdout}${stderr}`));
    }, 90_000);
    child.on('error', fail);
    child.on('exit', (code) => {
      clearTimeout(timer);
      ok({ code, stdout, stderr });
    });
  });
}
