/** What the orchestrator and the generator processes exchange (over IPC), and the report's parts. */
import type { SerializedHistogram } from './histogram.js';

export const OPS = ['transfer', 'balance', 'history', 'authorize', 'capture'] as const;
export type Op = (typeof OPS)[number];

/** weights of the request mix; `payment` is an authorization followed by its capture */
export interface Mix {
  transfer: number;
  balance: number;
  history: number;
  payment: number;
}

export interface Phase {
  name: string;
  seconds: number;
  /** requests per second, all operations together; 0: closed loop (as fast as answers come) */
  rate: number;
  /** counted in the totals (a warm-up is not) */
  measured: boolean;
}

export interface BenchUser {
  id: string;
  shard: number;
  token: string;
}

export interface GeneratorPlan {
  index: number;
  targets: { host: string; port: number }[];
  connections: number;
  pipelining: number;
  phases: Phase[];
  mix: Mix;
  persons: BenchUser[];
  merchants: BenchUser[];
  /** the first `hotAccounts` persons are hot; `hotShare` of transfers has one of them as a party */
  hotAccounts: number;
  hotShare: number;
  /** share of transfers whose parties are on different logical shards */
  crossShardShare: number;
  amountMax: number;
  currency: string;
  /** prefix of every Idempotency-Key, unique to the run and generator */
  keyPrefix: string;
  timeoutMs: number;
  /** open loop: requests due while every connection is busy wait here, up to this many */
  maxBacklog: number;
}

/** outcome key → count; the key is the status, with the problem code for errors ("422 insufficient_funds") */
export type Outcomes = Record<string, number>;

export interface OpSecond {
  outcomes: Outcomes;
  histogram: SerializedHistogram;
}

export interface Snapshot {
  type: 'second';
  generator: number;
  /** seconds since the load started (1 = the first second) */
  second: number;
  phase: string;
  ops: Partial<Record<Op, OpSecond>>;
  backlog: number;
  /** this generator's CPU over the second, in cores */
  cpuCores: number;
}

/** generator 0 says when the measured window opens and closes, so CPU is sampled at those moments */
export interface PhaseEvent {
  type: 'phase';
  generator: number;
  name: string;
  measured: boolean;
  event: 'start' | 'end';
}

export interface OpTotals {
  outcomes: Outcomes;
  histogram: SerializedHistogram;
  /** answers that never came: socket closed or timed out (outcome unknown) */
  lost: number;
  /** open loop: due but never sent (the backlog was full or the run ended) */
  unsent: number;
}

export interface GeneratorResult {
  type: 'done';
  generator: number;
  /** per phase name, per operation */
  phases: Record<string, Partial<Record<Op, OpTotals>>>;
  /** every answer of the whole run (warm-up and drain included), for the correctness check */
  allOutcomes: Record<Op, Outcomes>;
  lostAll: Record<Op, number>;
  cpuSeconds: number;
  wallSeconds: number;
  /** cross-shard share of the transfers actually sent */
  crossShardSent: number;
  transfersSent: number;
}
