/**
 * What limited a run, measured rather than guessed: each API process's event loop (its main
 * thread's time on a core and waiting for one), the machine's CPU, and the ledger's batches
 * (size and close → commit time, from the platform's /metrics), turned into one plain sentence.
 */
import type { HttpBenchReport } from './report.js';

/** a loop on a core or waiting for one this much of the window is saturated */
export const SATURATED = 0.9;
/** waiting for a core this much of the window is worth naming */
const WAITED = 0.1;

export interface LedgerBatchCounters {
  count: number;
  sizeSum: number;
  secondsSum: number;
}

/** the ledger batch counters summed over the exposition (every cluster's engine in the process) */
export function parseLedgerBatches(exposition: string): LedgerBatchCounters | undefined {
  const value = (name: string) => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, 'm').exec(exposition);
    return m ? Number(m[1]) : undefined;
  };
  const count = value('ledger_batch_size_count');
  const sizeSum = value('ledger_batch_size_sum');
  const secondsSum = value('ledger_batch_duration_seconds_sum');
  return count === undefined || sizeSum === undefined || secondsSum === undefined ? undefined : { count, sizeSum, secondsSum };
}

export async function scrapeLedgerBatches(metricsUrl: string): Promise<LedgerBatchCounters | undefined> {
  try {
    const res = await fetch(metricsUrl, { signal: AbortSignal.timeout(2_000) });
    return parseLedgerBatches(await res.text());
  } catch {
    return undefined;
  }
}

/** the batches committed between two readings of every process's counters */
export function batchesBetween(start: (LedgerBatchCounters | undefined)[], end: (LedgerBatchCounters | undefined)[]): HttpBenchReport['limits']['ledgerBatches'] {
  let count = 0;
  let size = 0;
  let seconds = 0;
  end.forEach((e, i) => {
    const s = start[i];
    if (!e || !s) return;
    count += e.count - s.count;
    size += e.sizeSum - s.sizeSum;
    seconds += e.secondsSum - s.secondsSum;
  });
  if (count <= 0) return undefined;
  return { count, meanSize: Math.round((size / count) * 10) / 10, meanMs: Math.round((seconds / count) * 10_000) / 10 };
}

const pct = (x: number) => `${Math.round(x * 100)} %`;

/** one sentence: which resource was the ceiling of this run, with the figures that show it (machineCores as the report rounds it) */
export function verdictOf(x: { eventLoops: HttpBenchReport['limits']['eventLoops']; machineCores?: number; cores: number; openLoop: boolean; connections: number }): string {
  const busiest = [...x.eventLoops].sort((a, b) => b.onCore + b.waitingForCore - (a.onCore + a.waitingForCore))[0];
  if (busiest && busiest.onCore + busiest.waitingForCore >= SATURATED) {
    const waited = busiest.waitingForCore >= WAITED ? `; it waited for a core ${pct(busiest.waitingForCore)} of the time, the cores being busy with PostgreSQL and the rest` : '';
    return `the API event loop (process ${busiest.pid}): on a core ${pct(busiest.onCore)} of the window${waited}. One thread's work per request is the ceiling: less work per request, or more API processes where there are cores for them, moves it.`;
  }
  if (x.machineCores !== undefined && x.machineCores >= SATURATED * x.cores) {
    return `the machine's CPU: ${x.machineCores} of ${x.cores} cores busy, no event loop saturated.`;
  }
  if (x.openLoop) return 'not CPU: the offered rate (open loop); neither an event loop nor the machine was busy 90 % of the window.';
  return `not CPU: requests in flight ÷ latency (closed loop, ${x.connections} connections); neither an event loop nor the machine was busy 90 % of the window, so the answers waited on something else (the database's commits, locks, round trips).`;
}
