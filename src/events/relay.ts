/**
 * The relay role: publishes outbox rows to the bus and marks them sent. At-least-once: a row is
 * marked sent in the transaction that locked it, after the bus acknowledged it; a crash between
 * the two republishes it, and the bus (event id = Nats-Msg-Id, inside the dedup window) or the
 * consumers' inboxes drop the duplicate.
 *
 * Several relays may run. Rows are split into lanes by shard range; a relay works a lane under
 * a transaction-scoped advisory lock, so one lane (and so one user, whose events all carry the
 * user's shard) is published by one relay at a time, in outbox order: per-user order holds
 * within a partition. Within a lane, rows are taken FOR UPDATE SKIP LOCKED in seq order.
 *
 * Each cluster has its own loop, so a cluster that is down or slow delays only its own events.
 * Every database step has a deadline (DB_STEP_TIMEOUT_MS): a step past it is a stuck connection,
 * the cluster's primary pool is replaced and the pass fails and is retried (src/db/index.ts,
 * unlessStuck). Waiting for the bus has none: with the in-process bus that wait is the consumers'
 * work, which the bus's own ack wait bounds.
 */
import { unlessStuck, type Cluster } from '../db/index.js';
import type { Platform } from '../platform.js';
import { SHARD_COUNT } from '../shared/ids.js';
import { TOPICS, type BusEvent, type Topic } from './types.js';

const RELAY_LOCK = 72_616_101;
/** how often the backlog gauges are refreshed */
const LAG_EVERY_MS = 2000;

interface OutboxRow {
  seq: bigint;
  event_id: string;
  topic: string;
  partition_key: string;
  shard: number;
  type: string;
  payload: Record<string, unknown>;
  created_at: Date;
}

export interface Relay {
  /** one pass over every lane with work on every cluster; returns events published */
  runOnce(): Promise<number>;
  /** runs passes until stopped, a loop per cluster: at once again after a full batch, else after RELAY_POLL_MS */
  start(): Relay;
  stop(): Promise<void>;
}

/** shard range [lo, hi] of a lane */
export function laneRange(lane: number, lanes: number): [number, number] {
  return [Math.floor((lane * SHARD_COUNT) / lanes), Math.floor(((lane + 1) * SHARD_COUNT) / lanes) - 1];
}

/**
 * The lane whose range holds `shard`: the largest l with floor(l * SHARD_COUNT / lanes) <= shard.
 * Not floor(shard * lanes / SHARD_COUNT): where lanes does not divide SHARD_COUNT that puts a
 * range's first shard in the lane before (16 lanes: shard 812 in lane 12, whose range ends at
 * 811), and a row of that shard was published only when its real lane had other work.
 */
export function laneOf(shard: number, lanes: number): number {
  return Math.floor(((shard + 1) * lanes + SHARD_COUNT - 1) / SHARD_COUNT) - 1;
}

export function toBusEvent(r: OutboxRow): BusEvent | undefined {
  if (!(r.topic in TOPICS)) return undefined;
  return { id: r.event_id, topic: r.topic as Topic, key: r.partition_key, type: r.type, shard: r.shard, at: r.created_at.toISOString(), payload: r.payload };
}

export function createRelay(p: Platform, opts: { onBatch?: (n: number) => void } = {}): Relay {
  const { relayBatchSize: batch, relayLanes: lanes } = p.config;
  const step = <T>(cluster: Cluster, what: string, work: Promise<T>) => unlessStuck(cluster, what, p.config.dbStepTimeoutMs, work);

  const publishLane = async (cluster: Cluster, lane: number): Promise<number> => {
    const [lo, hi] = laneRange(lane, lanes);
    return (await cluster.sql.begin(async (tx) => {
      const [lock] = await step(cluster, 'the relay lane lock', tx<{ ok: boolean }[]>`select pg_try_advisory_xact_lock(${RELAY_LOCK}, ${lane}) as ok`);
      if (!lock?.ok) return 0;
      const rows = await step(cluster, 'the relay read', tx<OutboxRow[]>`select seq, event_id, topic, partition_key, shard, type, payload, created_at from outbox
        where sent_at is null and shard between ${lo} and ${hi} order by seq limit ${batch} for update skip locked`);
      if (!rows.length) return 0;
      const events: BusEvent[] = [];
      const unknown: bigint[] = [];
      for (const r of rows) {
        const e = toBusEvent(r);
        if (e) events.push(e);
        else unknown.push(r.seq);
      }
      if (unknown.length) p.log.error({ seqs: unknown.map(String) }, 'outbox rows name an unknown topic; marked sent without publishing (see their topic column)');
      await p.bus.publish(events);
      await step(cluster, 'the relay mark', tx`update outbox set sent_at = now() where seq = any(${rows.map((r) => String(r.seq))}::bigint[])`);
      const byTopic = new Map<string, number>();
      for (const e of events) byTopic.set(e.topic, (byTopic.get(e.topic) ?? 0) + 1);
      for (const [t, n] of byTopic) p.metrics.events.relayPublished(t, n);
      opts.onBatch?.(rows.length);
      return rows.length;
    })) as number;
  };

  /** lanes with unsent rows, from one cheap look at the head of the unsent index */
  const busyLanes = async (cluster: Cluster): Promise<number[]> => {
    const rows = await step(cluster, 'the relay scan', cluster.sql<{ shard: number }[]>`select distinct shard from (select shard from outbox where sent_at is null order by seq limit ${batch * 4}) s`);
    return [...new Set(rows.map((r) => laneOf(r.shard, lanes)))];
  };

  const runCluster = async (cluster: Cluster): Promise<number> => {
    const busy = await busyLanes(cluster);
    let next = 0;
    let total = 0;
    const worker = async () => {
      while (next < busy.length) total += await publishLane(cluster, busy[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(p.config.relayConcurrency, busy.length) }, worker));
    return total;
  };

  const runOnce = async () => (await Promise.all(p.db.clusters.map(runCluster))).reduce((a, b) => a + b, 0);

  let stopped = false;
  let loops: Promise<void>[] = [];
  const run = async (cluster: Cluster) => {
    let lastLag = 0;
    while (!stopped) {
      let published = 0;
      try {
        published = await runCluster(cluster);
        if (Date.now() - lastLag > LAG_EVERY_MS) {
          lastLag = Date.now();
          await step(cluster, 'the relay lag', measureLag(p, cluster));
        }
      } catch (err) {
        p.log.error({ err, cluster: cluster.name }, 'relay pass failed; retrying');
        await sleep(Math.max(100, p.config.relayPollMs));
      }
      // a full batch means more is waiting: go again at once
      if (!stopped && published < batch) await sleep(p.config.relayPollMs);
    }
  };

  const relay: Relay = {
    runOnce,
    start() {
      loops = p.db.clusters.map(run);
      return relay;
    },
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
  return relay;
}

/** the relay's lag: age of the oldest unsent event and the unsent count */
export async function measureLag(p: Platform, cluster: Cluster): Promise<{ oldestAgeSeconds: number; backlog: number }> {
  const [row] = await cluster.sql<{ age: number | null; backlog: bigint }[]>`
    select extract(epoch from now() - min(created_at))::float8 as age, count(*) as backlog from outbox where sent_at is null`;
  const out = { oldestAgeSeconds: Math.max(0, row?.age ?? 0), backlog: Number(row?.backlog ?? 0n) };
  p.metrics.events.relayLag(cluster.name, out.oldestAgeSeconds, out.backlog);
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
