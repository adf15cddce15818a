/**
 * RawSignals for a time-ordered stream of money requests, computed exactly as types.ts defines
 * them. The simulator feeds it its events; tests feed it crafted sequences. It plays the part that
 * the velocity store and the context loader play when serving, so training sees what serving sees.
 */
import type { FraudKind, RawSignals } from '../types.js';

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

export interface TrackedRequest {
  userId: string;
  kind: FraudKind;
  amountMinor: number;
  at: number;
  accountCreatedAt: number;
  counterpartyId?: string;
  cardCountry?: string;
  ipCountry?: string;
}

/** Timestamps and values kept in arrival order; entries older than the window are dropped from the front. */
class Window {
  private at: number[] = [];
  private value: number[] = [];
  private tag: string[] = [];
  private head = 0;

  constructor(private readonly spanMs: number) {}

  add(at: number, value: number, tag = ''): void {
    this.at.push(at);
    this.value.push(value);
    this.tag.push(tag);
  }

  /** drops entries at or before now - span (a window holds (now - span, now]) */
  prune(now: number): void {
    while (this.head < this.at.length && this.at[this.head] <= now - this.spanMs) this.head++;
    if (this.head > 1024 && this.head * 2 > this.at.length) {
      this.at = this.at.slice(this.head);
      this.value = this.value.slice(this.head);
      this.tag = this.tag.slice(this.head);
      this.head = 0;
    }
  }

  /** count and sum of entries newer than now - spanMs (spanMs ≤ the window's span) */
  since(now: number, spanMs: number): { count: number; sum: number } {
    let count = 0;
    let sum = 0;
    for (let i = this.at.length - 1; i >= this.head && this.at[i] > now - spanMs; i--) {
      count++;
      sum += this.value[i];
    }
    return { count, sum };
  }

  last(): number | null {
    return this.at.length > this.head ? this.at[this.at.length - 1] : null;
  }

  distinctTags(): Set<string> {
    return new Set(this.tag.slice(this.head));
  }
}

interface UserState {
  requests: Window; // 24 h of money requests
  topups: Window; // 24 h of completed top-ups
  counterparties: Set<string>;
  credentialChangedAt: number | null;
  lastRequestAt: number | null;
  // Welford's running mean and variance of the user's past amounts
  n: number;
  mean: number;
  m2: number;
}

export interface SignalTracker {
  /** a password or payment-method change */
  credentialChanged(userId: string, at: number): void;
  /** signals for this request (which then joins the history); requests must come in time order */
  observe(req: TrackedRequest): RawSignals;
}

export function createSignalTracker(): SignalTracker {
  const users = new Map<string, UserState>();
  const counterpartySenders = new Map<string, Window>(); // 1 h of (at, sender)
  let lastAt = -Infinity;

  const userState = (userId: string): UserState => {
    let s = users.get(userId);
    if (!s) {
      s = { requests: new Window(DAY_MS), topups: new Window(DAY_MS), counterparties: new Set(), credentialChangedAt: null, lastRequestAt: null, n: 0, mean: 0, m2: 0 };
      users.set(userId, s);
    }
    return s;
  };

  return {
    credentialChanged(userId, at) {
      userState(userId).credentialChangedAt = at;
    },
    observe(req) {
      if (req.at < lastAt) throw new RangeError(`requests must come in time order (${req.at} after ${lastAt})`);
      lastAt = req.at;
      const s = userState(req.userId);
      const now = req.at;
      s.requests.prune(now);
      s.topups.prune(now);
      s.requests.add(now, req.amountMinor); // the windows include the current request
      const w1m = s.requests.since(now, MINUTE_MS);
      const w1h = s.requests.since(now, HOUR_MS);
      const w24h = s.requests.since(now, DAY_MS);
      const lastTopup = s.topups.last(); // the current top-up has not completed: not counted
      const outgoing = req.kind !== 'topup' && req.counterpartyId !== undefined;

      let senders = 0;
      if (outgoing) {
        let w = counterpartySenders.get(req.counterpartyId!);
        if (!w) counterpartySenders.set(req.counterpartyId!, (w = new Window(HOUR_MS)));
        w.prune(now);
        w.add(now, 0, req.userId);
        senders = w.distinctTags().size;
      }

      const signals: RawSignals = {
        count1m: w1m.count,
        count1h: w1h.count,
        count24h: w24h.count,
        value1m: w1m.sum,
        value1h: w1h.sum,
        value24h: w24h.sum,
        newCounterparty: outgoing && !s.counterparties.has(req.counterpartyId!),
        msSinceCredentialChange: s.credentialChangedAt === null ? null : now - s.credentialChangedAt,
        firstAfterCredentialChange: s.credentialChangedAt !== null && (s.lastRequestAt === null || s.lastRequestAt < s.credentialChangedAt),
        historyCount: s.n,
        historyMean: s.n > 0 ? s.mean : 0,
        historyStd: s.n > 1 ? Math.sqrt(s.m2 / s.n) : 0, // population standard deviation
        accountAgeMs: Math.max(0, now - req.accountCreatedAt),
        countryMismatch: req.cardCountry !== undefined && req.ipCountry !== undefined && req.cardCountry !== req.ipCountry,
        msSinceTopup: lastTopup === null ? null : now - lastTopup,
        topupValue1h: s.topups.since(now, HOUR_MS).sum,
        counterpartyDistinctSenders1h: senders,
        amount: req.amountMinor,
        kind: req.kind,
      };

      if (outgoing) s.counterparties.add(req.counterpartyId!);
      if (req.kind === 'topup') s.topups.add(now, req.amountMinor);
      s.lastRequestAt = now;
      s.n++;
      const delta = req.amountMinor - s.mean;
      s.mean += delta / s.n;
      s.m2 += delta * (req.amountMinor - s.mean);
      return signals;
    },
  };
}
