/**
 * A log-linear latency histogram in the manner of HdrHistogram: values in microseconds, exact
 * below 64 µs, then 64 sub-buckets per power of two (at most 1.6 % relative error), up to
 * 2^31 µs (about 36 minutes). Recording is two integer operations and an increment; histograms
 * merge by adding their arrays, so worker processes send them as plain arrays.
 */
const SUB_BITS = 6;
const SUB = 1 << SUB_BITS; // 64
const MAX_EXP = 31;
export const HISTOGRAM_BUCKETS = SUB + (MAX_EXP - SUB_BITS) * SUB;
const MAX_VALUE = 2 ** MAX_EXP - 1;

export function bucketOf(us: number): number {
  const v = us < 0 ? 0 : us > MAX_VALUE ? MAX_VALUE : us | 0;
  if (v < SUB) return v;
  const exp = 31 - Math.clz32(v); // >= SUB_BITS
  return SUB + (exp - SUB_BITS) * SUB + ((v >>> (exp - SUB_BITS)) - SUB);
}

/** the highest value that falls in bucket i (reported percentiles never understate) */
export function bucketHigh(i: number): number {
  if (i < SUB) return i;
  const exp = SUB_BITS + Math.floor((i - SUB) / SUB);
  const mantissa = SUB + ((i - SUB) % SUB);
  const width = 2 ** (exp - SUB_BITS);
  return mantissa * width + width - 1;
}

export class Histogram {
  readonly counts: Float64Array;
  total = 0;
  maxUs = 0;
  sumUs = 0;

  constructor(from?: SerializedHistogram) {
    this.counts = new Float64Array(HISTOGRAM_BUCKETS);
    if (from) {
      this.counts.set(from.counts.slice(0, HISTOGRAM_BUCKETS));
      this.total = from.total;
      this.maxUs = from.maxUs;
      this.sumUs = from.sumUs;
    }
  }

  record(us: number): void {
    this.counts[bucketOf(us)]!++;
    this.total++;
    this.sumUs += us;
    if (us > this.maxUs) this.maxUs = us;
  }

  add(other: Histogram): void {
    for (let i = 0; i < HISTOGRAM_BUCKETS; i++) this.counts[i]! += other.counts[i]!;
    this.total += other.total;
    this.sumUs += other.sumUs;
    if (other.maxUs > this.maxUs) this.maxUs = other.maxUs;
  }

  /** p in [0, 100]; NaN when empty */
  percentileUs(p: number): number {
    if (this.total === 0) return NaN;
    const rank = Math.max(1, Math.ceil((p / 100) * this.total));
    let seen = 0;
    for (let i = 0; i < HISTOGRAM_BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(bucketHigh(i), this.maxUs);
    }
    return this.maxUs;
  }

  reset(): void {
    this.counts.fill(0);
    this.total = 0;
    this.maxUs = 0;
    this.sumUs = 0;
  }

  /** plain data with trailing zero buckets cut (for IPC and JSON) */
  serialize(): SerializedHistogram {
    let end = HISTOGRAM_BUCKETS;
    while (end > 0 && this.counts[end - 1] === 0) end--;
    return { counts: Array.from(this.counts.subarray(0, end)), total: this.total, maxUs: this.maxUs, sumUs: this.sumUs };
  }
}

export interface SerializedHistogram {
  counts: number[];
  total: number;
  maxUs: number;
  sumUs: number;
}

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
}

export function summarize(h: Histogram): LatencySummary {
  const ms = (us: number) => (Number.isFinite(us) ? Math.round(us) / 1000 : NaN);
  return { count: h.total, p50Ms: ms(h.percentileUs(50)), p95Ms: ms(h.percentileUs(95)), p99Ms: ms(h.percentileUs(99)), maxMs: ms(h.maxUs), meanMs: h.total ? Math.round(h.sumUs / h.total) / 1000 : NaN };
}
