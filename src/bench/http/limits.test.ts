import { describe, expect, it } from 'vitest';
import { batchesBetween, parseLedgerBatches, verdictOf } from './limits.js';

const exposition = (count: number, size: number, seconds: number) => `# HELP ledger_batch_size Commands per committed ledger batch
# TYPE ledger_batch_size histogram
ledger_batch_size_bucket{le="1"} 3
ledger_batch_size_sum ${size}
ledger_batch_size_count ${count}
# TYPE ledger_batch_duration_seconds histogram
ledger_batch_duration_seconds_bucket{le="0.001"} 0
ledger_batch_duration_seconds_sum ${seconds}
ledger_batch_duration_seconds_count ${count}
`;

describe('what limited a benchmark run', () => {
  it('reads the ledger batch counters from a Prometheus exposition, and nothing from one without them', () => {
    expect(parseLedgerBatches(exposition(10, 250, 0.4))).toEqual({ count: 10, sizeSum: 250, secondsSum: 0.4 });
    expect(parseLedgerBatches('http_requests_total{route="/x"} 5\n')).toBeUndefined();
  });

  it('sums the batches of every process between two readings, skipping a process that gave none', () => {
    const start = [parseLedgerBatches(exposition(10, 250, 0.4)), parseLedgerBatches(exposition(0, 0, 0)), undefined];
    const end = [parseLedgerBatches(exposition(30, 1250, 1.4)), parseLedgerBatches(exposition(20, 1000, 1)), parseLedgerBatches(exposition(99, 99, 99))];
    // 20 + 20 batches, 1,000 + 1,000 commands, 1 s + 1 s
    expect(batchesBetween(start, end)).toEqual({ count: 40, meanSize: 50, meanMs: 50 });
    expect(batchesBetween(start, start)).toBeUndefined();
  });

  it('names a saturated event loop, with its time on a core and waiting for one', () => {
    const v = verdictOf({ eventLoops: [{ pid: 7, onCore: 0.3, waitingForCore: 0 }, { pid: 8, onCore: 0.79, waitingForCore: 0.19 }], machineCores: 1.9, cores: 2, openLoop: false, connections: 240 });
    expect(v).toMatch(/^the API event loop \(process 8\): on a core 79 % of the window; it waited for a core 19 %/);
  });

  it('names the machine when no loop is saturated but the cores are', () => {
    expect(verdictOf({ eventLoops: [{ pid: 7, onCore: 0.6, waitingForCore: 0.05 }], machineCores: 1.85, cores: 2, openLoop: false, connections: 240 })).toMatch(/^the machine's CPU: 1\.85 of 2 cores/);
  });

  it('says an open-loop run that saturated nothing was limited by the offered rate, a closed-loop one by latency', () => {
    const idle = { eventLoops: [{ pid: 7, onCore: 0.2, waitingForCore: 0 }], machineCores: 0.5, cores: 2, connections: 64 };
    expect(verdictOf({ ...idle, openLoop: true })).toMatch(/^not CPU: the offered rate/);
    expect(verdictOf({ ...idle, openLoop: false })).toMatch(/^not CPU: requests in flight ÷ latency \(closed loop, 64 connections\)/);
  });
});
