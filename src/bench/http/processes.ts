/**
 * Child processes of the benchmark: the platform's API processes (`wallet serve`, several of
 * them so both cores serve HTTP; they share one PostgreSQL, each with its own port, and the
 * generator spreads its connections over them as a load balancer would) and the generator
 * processes. Both run from the sources through tsx when this module is TypeScript, from the
 * compiled files otherwise.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const fromSources = import.meta.url.endsWith('.ts');
const tsxArgs = fromSources ? ['--import', 'tsx'] : [];

/** bin/wallet.js, found upwards from this file (src/bench/http or dist/src/bench/http) */
export function walletBin(): string {
  let dir = here;
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'bin', 'wallet.js');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error('bench: bin/wallet.js not found above src/bench/http');
}

export interface ApiProcess {
  child: ChildProcess;
  /** undefined for a process without the api role */
  url?: string;
  stop(): Promise<void>;
}

/** Starts `wallet serve --roles <roles>` with this environment on a free port and resolves once it listens (or, without `api`, runs). */
export function startApiProcess(roles: string, env: Record<string, string | undefined>, timeoutMs = 90_000): Promise<ApiProcess> {
  // BENCH_API_NODE_ARGS: extra node flags for the API processes, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"
  const extra = (process.env.BENCH_API_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  const child = spawn(process.execPath, ['--max-semi-space-size=64', ...extra, walletBin(), 'serve', '--roles', roles], {
    env: { ...env, PORT: '0', HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-4000)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`wallet serve did not listen within ${timeoutMs} ms: ${err || out}`));
    }, timeoutMs);
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`wallet serve --roles ${roles} exited (${code}) while starting: ${err.slice(-2000) || out.slice(-2000)}`));
    };
    child.once('exit', onExit);
    child.stdout!.on('data', (c: Buffer) => {
      out = (out + c.toString()).slice(-4000);
      const m = /listening on (http:\/\/[^\s]+)|running roles: /.exec(out);
      if (!m) return;
      clearTimeout(timer);
      child.removeListener('exit', onExit);
      resolve({
        child,
        url: m[1],
        stop: () =>
          new Promise<void>((ok) => {
            if (child.exitCode !== null || child.signalCode !== null) return ok();
            const force = setTimeout(() => child.kill('SIGKILL'), 20_000);
            child.once('exit', () => {
              clearTimeout(force);
              ok();
            });
            child.kill('SIGTERM');
          }),
      });
      out = '';
    });
  });
}

export function forkGenerator(): ChildProcess {
  const entry = join(here, `generator-process.${fromSources ? 'ts' : 'js'}`);
  return fork(entry, [], { execArgv: [...tsxArgs, '--max-semi-space-size=32'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
}
