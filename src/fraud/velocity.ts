/**
 * Velocity state for fraud scoring: per-user sliding windows of money requests (1 min, 1 h,
 * 24 h: count and value), completed-history statistics, the counterparties a user has paid,
 * recent completed top-ups, and per-counterparty fan-in (distinct senders in the last hour).
 *
 * Two implementations with the same semantics (one test suite runs against both):
 *   - Redis: one Lua script per call, so each call is atomic however many API processes call at
 *     once; every key has a TTL, so idle users cost nothing.
 *   - memory: the embedded default (a single process), bounded by a total entry count.
 *
 * Time is the request's own `at` (the API node's clock). A user's windows end at the latest
 * request time seen for that user, so a request that arrives late (clock skew between nodes) is
 * counted where it belongs and never moves the windows backwards.
 *
 * Idempotency: a request is identified by `<amountMinor>|<requestId>` (a request id always
 * carries the same amount: the API refuses an idempotency key reused with another body), so a
 * retried observe() or completed() is not counted twice.
 */
import { Redis, type Cluster } from 'ioredis';
import type { FraudRequest, RawSignals } from './types.js';

/** What the velocity store knows about a request; the context loader supplies the rest of RawSignals. */
export type VelocitySignals = Omit<RawSignals, 'msSinceCredentialChange' | 'firstAfterCredentialChange' | 'accountAgeMs' | 'countryMismatch'> & {
  /** time (ms) of the user's previous money request (observed before this one, up to historyTtlMs ago); null: none */
  previousRequestAtMs: number | null;
};

export interface VelocityStore {
  /** Records the request in the user's windows and the counterparty's fan-in; returns the signals, this request included. */
  observe(req: FraudRequest): Promise<VelocitySignals>;
  /** After the money moved: the user's history statistics, counterparties paid, top-ups. */
  completed(req: FraudRequest): Promise<void>;
  close(): Promise<void>;
}

/** Bounds of the per-user and per-counterparty state; the defaults are the stated limits. */
export interface VelocityLimits {
  /** requests kept per user (24 h); beyond it the oldest are dropped and the counts saturate */
  maxEventsPerUser: number;
  /** distinct senders kept per counterparty (1 h); fan-in saturates there */
  maxFanInSenders: number;
  /** counterparties remembered per user (most recently paid kept) */
  maxCounterpartiesPerUser: number;
  /** history statistics, counterparties and the last request time live this long after the user's last request */
  historyTtlMs: number;
}

export const DEFAULT_VELOCITY_LIMITS: Readonly<VelocityLimits> = Object.freeze({
  maxEventsPerUser: 2_000, // far above any threshold: a user past it is declined long before
  maxFanInSenders: 10_000,
  maxCounterpartiesPerUser: 1_000,
  historyTtlMs: 90 * 86_400_000,
});

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
const WINDOWS_MS = [MINUTE_MS, HOUR_MS, DAY_MS] as const;
/** window keys outlive their content by a minute: the last event leaves the 24 h window before its key expires */
const WINDOW_TTL_MS = DAY_MS + MINUTE_MS;
const FAN_IN_TTL_MS = HOUR_MS + MINUTE_MS;

const MAX_SAFE_AMOUNT = BigInt(Number.MAX_SAFE_INTEGER);

/** the request's identity in every set; the amount prefix lets the scripts sum without a lookup */
function memberOf(req: FraudRequest): string {
  // velocity values are Numbers (and parsed from this member in Lua): they must be exact
  if (req.amountMinor <= 0n || req.amountMinor > MAX_SAFE_AMOUNT) throw new RangeError(`fraud velocity: amount out of range: ${req.amountMinor}`);
  return `${req.amountMinor}|${req.requestId}`;
}
const isOutgoing = (req: FraudRequest) => req.kind !== 'topup' && req.counterpartyId !== undefined;
const stdOf = (n: number, m2: number) => (n > 0 ? Math.sqrt(Math.max(0, m2) / n) : 0);

// ------------------------------------------------------------------------------------------
// Redis
// ------------------------------------------------------------------------------------------

const LUA_COMMON = `
local DAY = 86400000
local function fmt(x) return string.format('%.0f', x) end
local function amountOf(m) return tonumber(string.match(m, '^(%d+)|')) end
-- drops the lowest-scored members beyond max; returns the dropped (member, score) pairs
local function cap(key, max)
  local n = redis.call('ZCARD', key)
  if n <= max then return {} end
  local drop = redis.call('ZRANGE', key, 0, n - max - 1, 'WITHSCORES')
  redis.call('ZREMRANGEBYRANK', key, 0, n - max - 1)
  return drop
end
local function fanIn(key, now, sender, max, ttl)
  redis.call('ZADD', key, 'GT', now, sender)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now - 3600000))
  local n = redis.call('ZCARD', key)
  if n > max then
    redis.call('ZREMRANGEBYRANK', key, 0, n - max - 1)
    n = max
  end
  redis.call('PEXPIRE', key, ttl)
  return n
end
`;

/**
 * KEYS: ev (zset: member amount|requestId, score ms), h (hash: window end t, running sums s1..s3
 *       and counts c1..c3, last request, history stats), tp (zset: completed top-ups), cp (zset:
 *       counterparties paid), [fi] (zset: senders to the counterparty; absent when fan-in runs
 *       on its own slot)
 * ARGV: now, member, amount, requestId, counterparty ('' none), sender (user id), maxEvents,
 *       windowTtlMs, historyTtlMs, maxFanIn, fanInTtlMs
 * Window counts and sums are kept running: when the window end moves, exactly the events that
 * left each window are subtracted, so a call costs O(log n + events that expired), never a scan
 * of 24 h. Top-ups are read whole: completed top-ups in 24 h are few (and capped).
 */
const OBSERVE = `${LUA_COMMON}
local now = tonumber(ARGV[1])
local member, amount, rid, cp = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local W = {60000, 3600000, DAY}
local h = redis.call('HMGET', KEYS[2], 't', 's1', 's2', 's3', 'c1', 'c2', 'c3', 'last', 'lastId', 'lastPrev', 'n', 'mean', 'm2')
local size = redis.call('ZCARD', KEYS[1])
local t, sums, counts = now, {0, 0, 0}, {0, 0, 0}
-- the window state outlives the requests (the hash has the history TTL): no requests, no windows
if size > 0 and h[1] then
  t = tonumber(h[1])
  sums = {tonumber(h[2]), tonumber(h[3]), tonumber(h[4])}
  counts = {tonumber(h[5]), tonumber(h[6]), tonumber(h[7])}
end
if now > t then
  for i = 1, 3 do
    local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. fmt(t - W[i]), fmt(now - W[i]))
    for _, m in ipairs(gone) do sums[i] = sums[i] - amountOf(m) end
    counts[i] = counts[i] - #gone
  end
  t = now
  size = size - redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(t - DAY))
end
local added = 0
if now > t - DAY then
  added = redis.call('ZADD', KEYS[1], 'NX', now, member)
  if added == 1 then
    size = size + 1
    for i = 1, 3 do
      if now > t - W[i] then
        sums[i] = sums[i] + amount
        counts[i] = counts[i] + 1
      end
    end
    local max = tonumber(ARGV[7])
    if size > max then
      local drop = redis.call('ZRANGE', KEYS[1], 0, size - max - 1, 'WITHSCORES')
      redis.call('ZREMRANGEBYRANK', KEYS[1], 0, size - max - 1)
      for j = 1, #drop, 2 do
        local s = tonumber(drop[j + 1])
        for i = 1, 3 do
          if s > t - W[i] then
            sums[i] = sums[i] - amountOf(drop[j])
            counts[i] = counts[i] - 1
          end
        end
      end
    end
    redis.call('PEXPIRE', KEYS[1], ARGV[8])
  end
end

local last = tonumber(h[8])
local prev = last
local state = {'t', fmt(t), 's1', fmt(sums[1]), 's2', fmt(sums[2]), 's3', fmt(sums[3]), 'c1', counts[1], 'c2', counts[2], 'c3', counts[3]}
if added == 1 then
  if not last or now >= last then
    for _, x in ipairs({'last', fmt(now), 'lastId', rid, 'lastPrev', last and fmt(last) or ''}) do state[#state + 1] = x end
  end
elseif h[9] == rid then
  prev = tonumber(h[10])
end
redis.call('HSET', KEYS[2], unpack(state))
redis.call('PEXPIRE', KEYS[2], ARGV[9])

local isNew = 0
if cp ~= '' and not redis.call('ZSCORE', KEYS[4], cp) then isNew = 1 end
local sinceTopup, topupValue = false, 0
local topups = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. fmt(now - DAY), '+inf', 'WITHSCORES')
for j = 1, #topups, 2 do
  local s = tonumber(topups[j + 1])
  if s > now - 3600000 then topupValue = topupValue + amountOf(topups[j]) end
  if not sinceTopup or now - s < sinceTopup then sinceTopup = now - s end
end
if sinceTopup then sinceTopup = math.max(0, sinceTopup) end
local senders = 0
if cp ~= '' and KEYS[5] then senders = fanIn(KEYS[5], now, ARGV[6], tonumber(ARGV[10]), ARGV[11]) end
return {counts[1], counts[2], counts[3], fmt(sums[1]), fmt(sums[2]), fmt(sums[3]), isNew, h[11] or '0', h[12] or '0', h[13] or '0', sinceTopup, fmt(topupValue), senders, prev and fmt(prev) or false}
`;

/** KEYS: fi. ARGV: now, sender, maxFanIn, fanInTtlMs. For a Redis Cluster, where fi is on another slot. */
const FAN_IN = `${LUA_COMMON}
return fanIn(KEYS[1], tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4])
`;

/**
 * KEYS: h, tp, cp, cd (zset: completed request members, the dedupe of completed())
 * ARGV: now, member, amount, kind, counterparty ('' none), maxEvents, windowTtlMs, historyTtlMs, maxCounterparties
 * History statistics are Welford's running mean and M2, stored with 17 significant digits so
 * they round-trip exactly (the memory store does the same arithmetic and gets the same bits).
 */
const COMPLETED = `${LUA_COMMON}
local now = tonumber(ARGV[1])
if redis.call('ZADD', KEYS[4], 'NX', now, ARGV[2]) == 0 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', fmt(now - DAY))
cap(KEYS[4], tonumber(ARGV[6]))
redis.call('PEXPIRE', KEYS[4], ARGV[7])
local h = redis.call('HMGET', KEYS[1], 'n', 'mean', 'm2')
local n = (tonumber(h[1]) or 0) + 1
local mean = tonumber(h[2]) or 0
local m2 = tonumber(h[3]) or 0
local x = tonumber(ARGV[3])
local d = x - mean
mean = mean + d / n
m2 = m2 + d * (x - mean)
redis.call('HSET', KEYS[1], 'n', fmt(n), 'mean', string.format('%.17g', mean), 'm2', string.format('%.17g', m2))
redis.call('PEXPIRE', KEYS[1], ARGV[8])
if ARGV[4] == 'topup' then
  redis.call('ZADD', KEYS[2], now, ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now - DAY))
  cap(KEYS[2], tonumber(ARGV[6]))
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
elseif ARGV[5] ~= '' then
  redis.call('ZADD', KEYS[3], 'GT', now, ARGV[5])
  cap(KEYS[3], tonumber(ARGV[9]))
  redis.call('PEXPIRE', KEYS[3], ARGV[8])
end
return 1
`;

type ScriptCall = (...args: (string | number)[]) => Promise<unknown>;

export interface RedisVelocityOptions {
  /** a connected ioredis client or Cluster; the store does not close it */
  redis: Redis | Cluster;
  /** key prefix (default 'fraud:'); tests use their own */
  prefix?: string;
  limits?: Partial<VelocityLimits>;
  /** fan-in in its own script call (default: when the client is a Cluster, whose slots differ) */
  splitFanIn?: boolean;
}

/**
 * Key layout (a user's keys share the hash tag {u:<id>}, so one script touches one slot):
 *   <prefix>{u:<user>}:ev   zset  requests of the last 24 h       TTL 24 h + 1 min
 *   <prefix>{u:<user>}:tp   zset  completed top-ups (24 h)        TTL 24 h + 1 min
 *   <prefix>{u:<user>}:cd   zset  completed requests (dedupe)     TTL 24 h + 1 min
 *   <prefix>{u:<user>}:h    hash  window end, running sums and    TTL historyTtlMs
 *                                 counts, last request, history
 *                                 stats (Welford n, mean, M2)
 *   <prefix>{u:<user>}:cp   zset  counterparties paid             TTL historyTtlMs
 *   <prefix>{c:<id>}:fi     zset  senders to a counterparty (1 h) TTL 1 h + 1 min
 * With a Cluster the fan-in key is on another slot, so it gets its own script call (both go
 * out in the same pipeline); on a single node one script does it all.
 */
export function createRedisVelocityStore(opts: RedisVelocityOptions): VelocityStore {
  const redis = opts.redis;
  const prefix = opts.prefix ?? 'fraud:';
  const limits = { ...DEFAULT_VELOCITY_LIMITS, ...opts.limits };
  const split = opts.splitFanIn ?? redis.isCluster;
  for (const [name, lua] of [['fraudObserve', OBSERVE], ['fraudFanIn', FAN_IN], ['fraudCompleted', COMPLETED]] as const) {
    if (!(name in redis)) redis.defineCommand(name, { lua });
  }
  const script = (name: string): ScriptCall => (redis as unknown as Record<string, ScriptCall>)[name]!.bind(redis);
  const observeScript = script('fraudObserve');
  const fanInScript = script('fraudFanIn');
  const completedScript = script('fraudCompleted');
  const userKey = (userId: string, suffix: string) => `${prefix}{u:${userId}}:${suffix}`;
  const fanInKey = (counterpartyId: string) => `${prefix}{c:${counterpartyId}}:fi`;

  return {
    async observe(req) {
      const now = req.at.getTime();
      const cp = isOutgoing(req) ? req.counterpartyId! : '';
      const keys = [userKey(req.userId, 'ev'), userKey(req.userId, 'h'), userKey(req.userId, 'tp'), userKey(req.userId, 'cp')];
      const inline = cp !== '' && !split;
      if (inline) keys.push(fanInKey(cp));
      const args = [now, memberOf(req), req.amountMinor.toString(), req.requestId, cp, req.userId, limits.maxEventsPerUser, WINDOW_TTL_MS, limits.historyTtlMs, limits.maxFanInSenders, FAN_IN_TTL_MS];
      const [r, separateFanIn] = await Promise.all([
        observeScript(keys.length, ...keys, ...args) as Promise<(string | number | null)[]>,
        cp !== '' && split ? (fanInScript(1, fanInKey(cp), now, req.userId, limits.maxFanInSenders, FAN_IN_TTL_MS) as Promise<number>) : undefined,
      ]);
      const historyCount = Number(r[7]);
      return {
        count1m: Number(r[0]),
        count1h: Number(r[1]),
        count24h: Number(r[2]),
        value1m: Number(r[3]),
        value1h: Number(r[4]),
        value24h: Number(r[5]),
        newCounterparty: r[6] === 1,
        historyCount,
        historyMean: Number(r[8]),
        historyStd: stdOf(historyCount, Number(r[9])),
        msSinceTopup: r[10] === null ? null : Number(r[10]),
        topupValue1h: Number(r[11]),
        counterpartyDistinctSenders1h: inline ? Number(r[12]) : Number(separateFanIn ?? 0),
        previousRequestAtMs: r[13] === null ? null : Number(r[13]),
        amount: Number(req.amountMinor),
        kind: req.kind,
      };
    },

    async completed(req) {
      const keys = [userKey(req.userId, 'h'), userKey(req.userId, 'tp'), userKey(req.userId, 'cp'), userKey(req.userId, 'cd')];
      const cp = isOutgoing(req) ? req.counterpartyId! : '';
      await completedScript(keys.length, ...keys, req.at.getTime(), memberOf(req), req.amountMinor.toString(), req.kind, cp, limits.maxEventsPerUser, WINDOW_TTL_MS, limits.historyTtlMs, limits.maxCounterpartiesPerUser);
    },

    close: async () => undefined,
  };
}

/** A client for the velocity store: fails fast while disconnected (the scorer's fail policy decides), pipelines concurrent calls. */
export function connectVelocityRedis(url: string): Redis {
  const client = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 1000,
    enableAutoPipelining: true,
    retryStrategy: (times) => Math.min(100 * times, 2000),
  });
  // failures reach the scorer through its commands (the fail policy decides); without a listener
  // ioredis writes "[ioredis] Unhandled error event" to stderr at every reconnect attempt
  client.on('error', () => undefined);
  return client;
}

// ------------------------------------------------------------------------------------------
// Memory
// ------------------------------------------------------------------------------------------

interface Timed {
  t: number;
  member: string;
}
interface Event extends Timed {
  amount: number;
}

interface UserState {
  /** window end: the latest request time seen */
  maxT: number;
  /** sorted by (t, member), as a Redis zset orders them */
  events: Event[];
  eventMembers: Set<string>;
  last: number | null;
  lastId: string | null;
  lastPrev: number | null;
  n: number;
  mean: number;
  m2: number;
  topups: Event[];
  completed: Timed[];
  completedMembers: Set<string>;
  /** counterparty → last time paid */
  counterparties: Map<string, number>;
}

/** a counterparty's distinct senders (sender → last time) and a lower bound of those times */
interface FanIn {
  senders: Map<string, number>;
  oldest: number;
}

const byRank = (a: Timed, b: Timed) => a.t - b.t || (a.member < b.member ? -1 : a.member > b.member ? 1 : 0);

function insertSorted<T extends Timed>(list: T[], item: T): void {
  let i = list.length;
  while (i > 0 && byRank(list[i - 1]!, item) > 0) i--;
  list.splice(i, 0, item);
}

/** removes items with t <= bound from the front; returns them */
function trimUpTo<T extends Timed>(list: T[], bound: number): T[] {
  let i = 0;
  while (i < list.length && list[i]!.t <= bound) i++;
  return i ? list.splice(0, i) : [];
}

/** Counts every entry of every user and counterparty: the in-process store's memory bound. */
class BoundedLru<V> {
  private readonly map = new Map<string, V>();
  private total = 0;
  constructor(
    private readonly maxEntries: number,
    private readonly sizeOf: (v: V) => number,
  ) {}
  /** the value, most recently used now; created when absent */
  touch(key: string, create: () => V): V {
    let v = this.map.get(key);
    if (v === undefined) {
      v = create();
      this.total += this.sizeOf(v);
    } else this.map.delete(key);
    this.map.set(key, v);
    return v;
  }
  /** after changing a value: account for its new size and evict the least recently used beyond the bound */
  resized(key: string, before: number, after: number): void {
    this.total += after - before;
    if (this.total <= this.maxEntries) return;
    for (const [k, v] of this.map) {
      if (this.total <= this.maxEntries || k === key) break;
      this.map.delete(k);
      this.total -= this.sizeOf(v);
    }
  }
  get entries(): number {
    return this.total;
  }
}

export interface MemoryVelocityOptions {
  limits?: Partial<VelocityLimits>;
  /**
   * Entries kept over all users and counterparties (a request, a top-up, a completed request,
   * a counterparty or a fan-in sender is one entry, about 100-200 bytes): 1,000,000 ≈ 200 MB
   * at worst. Least recently active users are forgotten first.
   */
  maxEntries?: number;
}

export const MEMORY_VELOCITY_MAX_ENTRIES = 1_000_000;

/**
 * The in-process store for the embedded default (one process: no other process shares the
 * windows). Same semantics as Redis, history TTL aside: here a user's state lives until the
 * entry bound evicts it.
 */
export function createMemoryVelocityStore(opts: MemoryVelocityOptions = {}): VelocityStore {
  const limits = { ...DEFAULT_VELOCITY_LIMITS, ...opts.limits };
  const maxEntries = opts.maxEntries ?? MEMORY_VELOCITY_MAX_ENTRIES;
  const userSize = (s: UserState) => 1 + s.events.length + s.topups.length + s.completed.length + s.counterparties.size;
  const users = new BoundedLru<UserState>(maxEntries, userSize);
  const fanIns = new BoundedLru<FanIn>(maxEntries, (f) => 1 + f.senders.size);
  const newUser = (): UserState => ({
    maxT: 0, events: [], eventMembers: new Set(), last: null, lastId: null, lastPrev: null,
    n: 0, mean: 0, m2: 0, topups: [], completed: [], completedMembers: new Set(), counterparties: new Map(),
  });

  function recordEvent(s: UserState, now: number, member: string, amount: number): boolean {
    if (s.events.length === 0) s.maxT = now;
    if (now > s.maxT) {
      s.maxT = now;
      for (const e of trimUpTo(s.events, now - DAY_MS)) s.eventMembers.delete(e.member);
    }
    if (!(now > s.maxT - DAY_MS) || s.eventMembers.has(member)) return false;
    insertSorted(s.events, { t: now, member, amount });
    s.eventMembers.add(member);
    if (s.events.length > limits.maxEventsPerUser) {
      for (const e of s.events.splice(0, s.events.length - limits.maxEventsPerUser)) s.eventMembers.delete(e.member);
    }
    return true;
  }

  function recordFanIn(counterpartyId: string, sender: string, now: number): number {
    const key = counterpartyId;
    const f = fanIns.touch(key, () => ({ senders: new Map(), oldest: Infinity }));
    const { senders } = f;
    const before = 1 + senders.size;
    const had = senders.get(sender);
    if (had === undefined || now > had) {
      senders.set(sender, now);
      if (now < f.oldest) f.oldest = now;
    }
    // Scanned only when something may have left the hour: a popular recipient has up to
    // maxFanInSenders (10,000) senders, and every payment to it scanned them all.
    const bound = now - HOUR_MS;
    if (f.oldest <= bound) {
      let oldest = Infinity;
      for (const [k, t] of senders) {
        if (t <= bound) senders.delete(k);
        else if (t < oldest) oldest = t;
      }
      f.oldest = oldest;
    }
    const excess = senders.size - limits.maxFanInSenders;
    if (excess === 1) {
      // the usual case at the bound: one new sender, the lowest-ranked one leaves (no sort)
      let lowT = Infinity;
      let lowMember = '';
      for (const [member, t] of senders) {
        if (t < lowT || (t === lowT && member < lowMember)) {
          lowT = t;
          lowMember = member;
        }
      }
      senders.delete(lowMember);
    } else if (excess > 1) {
      const ranked = [...senders].map(([member, t]) => ({ member, t })).sort(byRank);
      for (const e of ranked.slice(0, excess)) senders.delete(e.member);
    }
    fanIns.resized(key, before, 1 + senders.size);
    return senders.size;
  }

  return {
    async observe(req) {
      const now = req.at.getTime();
      const amount = Number(req.amountMinor);
      const s = users.touch(req.userId, newUser);
      const before = userSize(s);
      const added = recordEvent(s, now, memberOf(req), amount);
      const counts = [0, 0, 0];
      const sums = [0, 0, 0];
      for (let i = s.events.length - 1; i >= 0; i--) {
        const e = s.events[i]!;
        for (let w = 0; w < 3; w++) {
          if (e.t > s.maxT - WINDOWS_MS[w]!) {
            counts[w]!++;
            sums[w]! += e.amount;
          }
        }
      }
      let prev = s.last;
      if (added) {
        if (s.last === null || now >= s.last) {
          s.lastPrev = s.last;
          s.last = now;
          s.lastId = req.requestId;
        }
      } else if (s.lastId === req.requestId) prev = s.lastPrev;

      const cp = isOutgoing(req) ? req.counterpartyId! : undefined;
      let latestTopup: number | null = null;
      let topupValue1h = 0;
      for (const tp of s.topups) {
        if (tp.t > now - DAY_MS && (latestTopup === null || tp.t > latestTopup)) latestTopup = tp.t;
        if (tp.t > now - HOUR_MS) topupValue1h += tp.amount;
      }
      users.resized(req.userId, before, userSize(s));
      return {
        count1m: counts[0]!,
        count1h: counts[1]!,
        count24h: counts[2]!,
        value1m: sums[0]!,
        value1h: sums[1]!,
        value24h: sums[2]!,
        newCounterparty: cp !== undefined && !s.counterparties.has(cp),
        historyCount: s.n,
        historyMean: s.mean,
        historyStd: stdOf(s.n, s.m2),
        msSinceTopup: latestTopup === null ? null : Math.max(0, now - latestTopup),
        topupValue1h,
        counterpartyDistinctSenders1h: cp !== undefined ? recordFanIn(cp, req.userId, now) : 0,
        previousRequestAtMs: prev,
        amount,
        kind: req.kind,
      };
    },

    async completed(req) {
      const now = req.at.getTime();
      const member = memberOf(req);
      const s = users.touch(req.userId, newUser);
      if (s.completedMembers.has(member)) return;
      const before = userSize(s);
      insertSorted(s.completed, { t: now, member });
      s.completedMembers.add(member);
      const dropped = trimUpTo(s.completed, now - DAY_MS);
      if (s.completed.length > limits.maxEventsPerUser) dropped.push(...s.completed.splice(0, s.completed.length - limits.maxEventsPerUser));
      for (const c of dropped) s.completedMembers.delete(c.member);

      // Welford, in the same order of operations as the Lua script
      const x = Number(req.amountMinor);
      s.n += 1;
      const d = x - s.mean;
      s.mean = s.mean + d / s.n;
      s.m2 = s.m2 + d * (x - s.mean);

      if (req.kind === 'topup') {
        insertSorted(s.topups, { t: now, member, amount: x });
        trimUpTo(s.topups, now - DAY_MS);
        if (s.topups.length > limits.maxEventsPerUser) s.topups.splice(0, s.topups.length - limits.maxEventsPerUser);
      } else if (isOutgoing(req)) {
        const had = s.counterparties.get(req.counterpartyId!);
        if (had === undefined || now > had) s.counterparties.set(req.counterpartyId!, now);
        if (s.counterparties.size > limits.maxCounterpartiesPerUser) {
          const ranked = [...s.counterparties].map(([m, t]) => ({ member: m, t })).sort(byRank);
          for (const e of ranked.slice(0, s.counterparties.size - limits.maxCounterpartiesPerUser)) s.counterparties.delete(e.member);
        }
      }
      users.resized(req.userId, before, userSize(s));
    },

    close: async () => undefined,
  };
}
