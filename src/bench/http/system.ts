/** The machine and who uses its CPU, from /proc (Linux; elsewhere the figures are absent). */
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, release, totalmem, type as osType } from 'node:os';

const TICKS_PER_SECOND = 100; // USER_HZ, 100 on every Linux build that matters here

export function describeMachine(): { cores: number; cpu: string; memoryGiB: number; os: string; node: string } {
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    os: `${osType()} ${release()}`,
    node: process.version,
  };
}

/** busy and total seconds of the whole machine (all cores) */
export function machineCpuSeconds(): { busy: number; total: number } | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3]! + (f[4] ?? 0);
    const total = f.reduce((a, b) => a + b, 0);
    return { busy: (total - idle) / TICKS_PER_SECOND, total: total / TICKS_PER_SECOND };
  } catch {
    return undefined;
  }
}

function statOf(pid: number): { ppid: number; cpuSeconds: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name is in parentheses and may hold spaces: fields start after the last ')'
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), cpuSeconds: (Number(f[11]) + Number(f[12])) / TICKS_PER_SECOND };
  } catch {
    return undefined;
  }
}

/** CPU seconds used so far by these processes and, with `withChildren`, their live children (PostgreSQL backends) */
export function cpuSecondsOf(pids: number[], withChildren = false): number {
  let sum = 0;
  for (const pid of pids) sum += statOf(pid)?.cpuSeconds ?? 0;
  if (withChildren && pids.length) {
    const parents = new Set(pids);
    let entries: string[] = [];
    try {
      entries = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
    } catch {
      return sum;
    }
    for (const d of entries) {
      const s = statOf(Number(d));
      if (s && parents.has(s.ppid)) sum += s.cpuSeconds;
    }
  }
  return sum;
}

/** the postmaster's pid from its data directory (readable when the server is ours) */
export function postmasterPid(dataDirectory: string | undefined): number | undefined {
  if (!dataDirectory) return undefined;
  try {
    const pid = Number(readFileSync(`${dataDirectory}/postmaster.pid`, 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A thread's time on a core and time runnable but waiting for one, in seconds since it started,
 * from /proc/<pid>/task/<tid>/schedstat (nanoseconds; Linux with scheduler statistics). For a
 * Node process the main thread (tid = pid) is the event loop: on a core plus waiting for one
 * near 100 % of a window means the loop, one thread, is what limits the process.
 */
export function threadSchedSeconds(pid: number, tid = pid): { onCore: number; waitingForCore: number } | undefined {
  try {
    const [run, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
    return run === undefined || wait === undefined || !Number.isFinite(run) || !Number.isFinite(wait) ? undefined : { onCore: run / 1e9, waitingForCore: wait / 1e9 };
  } catch {
    return undefined;
  }
}
