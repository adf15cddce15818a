/**
 * The HTTP benchmark harness, run for a few seconds so it does not rot: the whole path (fresh
 * database, pgbench, seeding, a real `wallet serve` child process, a generator process, the
 * correctness check, the report files). No timing is asserted: only the report's shape and
 * what must hold on any machine (every acknowledged movement is in the database, reconcile is
 * clean, a spike sheds reads and not payments).
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { Connection, type InFlightRequest } from './connection.js';
import { Histogram, bucketHigh, bucketOf } from './histogram.js';
import { parsePgbench } from './pgbench.js';
import { classify } from './report.js';
import { DEFAULT_OPTIONS, phasesOf, runHttpBench } from './run.js';

describe('wallet bench (HTTP): a short spike run end to end', () => {
  const database = `wallet_t_bench_${randomBytes(4).toString('hex')}`;
  const outDir = mkdtempSync(join(tmpdir(), 'wallet-bench-'));
  afterAll(async () => {
    const admin = postgres(inject('pgAdminUrl'), { max: 1, onnotice: () => undefined });
    await admin.unsafe(`drop database if exists ${database} with (force)`);
    await admin.end({ timeout: 2 });
    rmSync(outDir, { recursive: true, force: true });
  });

  it('reports every phase and operation, finds every acknowledged movement in the database, reconciles clean, and sheds reads, not payments, in the spike', async () => {
    const logs: string[] = [];
    const report = await runHttpBench({
      ...DEFAULT_OPTIONS,
      scenario: 'spike',
      database,
      users: 300,
      warmupSeconds: 1,
      seconds: 1,
      spikeSeconds: 2,
      spikeFactor: 4,
      rate: 100,
      connections: 32,
      processes: 1,
      background: 'none',
      pgbenchSeconds: 1,
      pgbenchScale: 1,
      pgbenchClients: 2,
      outDir,
      progress: false,
      command: 'wallet bench --scenario spike (test)',
      // one read a second: a spike offering 60 reads a second sheds some however slow the machine
      env: { ...process.env, DATABASE_URL: inject('pgAdminUrl'), HTTP_READS_PER_SECOND: '1', HTTP_READS_BURST: '1', LOG_LEVEL: 'warn', PASSWORD_HASH_LOG2_COST: '10' },
      log: (m) => logs.push(m),
    });

    expect(Object.keys(report.phases)).toEqual(['warmup', 'before', 'spike', 'after']);
    expect(report.load.openLoop).toBe(true);
    expect(report.load.persons + report.load.merchants).toBe(300);
    const transfer = report.total.ops.transfer!;
    expect(transfer.ok).toBeGreaterThan(0);
    for (const v of [transfer.latency.p50Ms, transfer.latency.p95Ms, transfer.latency.p99Ms, transfer.latency.maxMs]) expect(Number.isFinite(v)).toBe(true);
    expect(transfer.latency.p50Ms).toBeLessThanOrEqual(transfer.latency.p99Ms);
    expect(transfer.latency.p99Ms).toBeLessThanOrEqual(transfer.latency.maxMs);
    expect(report.series.length).toBeGreaterThanOrEqual(3);
    expect(report.series.some((s) => (s.ops.transfer?.okPerSecond ?? 0) > 0)).toBe(true);

    // correctness: what the API acknowledged is exactly what the database holds
    const k = report.correctness;
    // answers after the last phase count in it, so warm-up + measured phases = every answer
    expect(k.transfers.acknowledged).toBe(transfer.ok + (report.phases.warmup!.ops.transfer?.ok ?? 0));
    expect(k.transfers.inDatabase).toBeGreaterThanOrEqual(k.transfers.acknowledged);
    expect(k.transfers.inDatabase).toBeLessThanOrEqual(k.transfers.acknowledged + k.transfers.unknown);
    expect(k.authorizations.ok && k.captures.ok).toBe(true);
    expect(k.reconcile).toMatchObject({ ok: true, findings: [] });
    expect(k.ok).toBe(true);

    // the spike: reads shed (429/503), money still moving, no other errors
    const spike = report.phases.spike!.ops;
    expect((spike.balance?.shed ?? 0) + (spike.history?.shed ?? 0)).toBeGreaterThan(0);
    expect(spike.transfer!.ok).toBeGreaterThan(0);
    expect(spike.transfer!.shed + spike.transfer!.errors).toBe(0);
    expect(Object.keys(spike.balance?.outcomes ?? {}).every((o) => ['200', '429 rate_limited', '503 unavailable'].includes(o))).toBe(true);

    // pgbench: a figure, or a plain reason why not (the ratio belongs to the steady scenario)
    if (report.pgbench.available) {
      expect(report.pgbench.tps).toBeGreaterThan(0);
      expect(report.ratioToPgbench).toBeUndefined();
    } else {
      expect(report.pgbench.reason).toMatch(/pgbench/);
    }
    expect(report.cpu.generatorCores).toBeGreaterThan(0);
    // what limited the run: the API process's event loop was watched, the ledger's batches counted
    if (process.platform === 'linux') {
      expect(report.limits.eventLoops).toHaveLength(1);
      const loop = report.limits.eventLoops[0]!;
      expect(loop.onCore).toBeGreaterThan(0);
      expect(loop.onCore + loop.waitingForCore).toBeLessThanOrEqual(1.05);
    }
    expect(report.limits.ledgerBatches!.count).toBeGreaterThan(0);
    expect(report.limits.ledgerBatches!.meanSize).toBeGreaterThanOrEqual(1);
    expect(report.limits.verdict.length).toBeGreaterThan(0);
    expect(report.targets.map((t) => t.name)).toContain('transfer latency p99');

    // the files
    expect(report.files).toBeDefined();
    for (const f of Object.values(report.files!)) expect(existsSync(f)).toBe(true);
    expect(JSON.parse(readFileSync(report.files!.json, 'utf8')).correctness.ok).toBe(true);
    const md = readFileSync(report.files!.markdown, 'utf8');
    expect(md).toContain('## Correctness after the load');
    expect(md).toContain('Machine: ');
    expect(md).toContain('## What limited this run');
    const svg = readFileSync(report.files!.svg, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('transfer p99');
  }, 180_000);
});

describe('load generator parts', () => {
  it('parses pipelined responses framed by Content-Length and by chunks, decoding bodies only when asked or on errors', async () => {
    let n = 0;
    const server: Server = createServer((req, res) => {
      const i = n++;
      if (i % 3 === 0) res.writeHead(201, { 'content-type': 'application/json', 'content-length': 14 }).end('{"id":"pay_1"}');
      else if (i % 3 === 1) {
        res.writeHead(422, { 'content-type': 'application/problem+json' });
        res.write('{"code":');
        res.end('"insufficient_funds"}');
      } else res.writeHead(204).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const answers: { status: number; body?: string }[] = [];
    try {
      await new Promise<void>((resolve, reject) => {
        const conn = new Connection<InFlightRequest>('127.0.0.1', port, {
          ready: (c) => {
            if (answers.length) return;
            for (let i = 0; i < 6; i++) c.send(`GET /${i} HTTP/1.1\r\nhost: x\r\n\r\n`, { startedAt: performance.now(), wantBody: i === 0 });
          },
          response: (_req, status, body, c) => {
            answers.push({ status, body });
            if (answers.length === 6) {
              c.stop();
              resolve();
            }
          },
          failed: (reqs, reason) => reject(new Error(`${reqs.length} lost: ${reason}`)),
        });
        conn.open();
      });
    } finally {
      server.close();
    }
    expect(answers.map((a) => a.status)).toEqual([201, 422, 204, 201, 422, 204]);
    expect(answers[0]!.body).toBe('{"id":"pay_1"}');
    expect(answers[1]!.body).toBe('{"code":"insufficient_funds"}');
    expect(answers[3]!.body).toBeUndefined(); // a success nobody asked to read
    expect(answers[2]!.body).toBeUndefined();
  });

  it('keeps latency percentiles within 1.6 % and never below the true value', () => {
    const h = new Histogram();
    for (let us = 1; us <= 100_000; us++) h.record(us);
    for (const p of [50, 95, 99, 99.9]) {
      const truth = (p / 100) * 100_000;
      const got = h.percentileUs(p);
      expect(got).toBeGreaterThanOrEqual(truth);
      expect(got / truth).toBeLessThan(1.016);
    }
    expect(h.maxUs).toBe(100_000);
    for (const v of [0, 1, 63, 64, 65, 1000, 123_456, 2 ** 30]) expect(bucketHigh(bucketOf(v))).toBeGreaterThanOrEqual(v);
    const merged = new Histogram(h.serialize());
    merged.add(h);
    expect(merged.total).toBe(200_000);
    expect(merged.percentileUs(50)).toBe(h.percentileUs(50));
  });

  it('reads tps and latency from pgbench output', () => {
    const out = 'latency average = 9.701 ms\ninitial connection time = 12.3 ms\ntps = 4123.456789 (without initial connection time)\nnumber of transactions actually processed: 41234\nnumber of failed transactions: 0 (0.000%)\n';
    expect(parsePgbench(out)).toEqual({ tps: 4123.456789, latencyAvgMs: 9.701, transactions: 41234, failed: 0 });
    expect(() => parsePgbench('connection refused')).toThrow(/no tps/);
  });

  it('classifies answers: business declines and shed answers are not errors', () => {
    expect(classify('201')).toBe('ok');
    expect(classify('422 insufficient_funds')).toBe('declined');
    expect(classify('422 fraud_declined')).toBe('declined');
    expect(classify('429 rate_limited')).toBe('shed');
    expect(classify('503 unavailable')).toBe('shed');
    expect(classify('422 idempotency_key_reused')).toBe('error');
    expect(classify('500 internal')).toBe('error');
    expect(classify('lost (timeout)')).toBe('error');
  });

  it('builds the spike as 10x the steady rate between two steady phases', () => {
    expect(phasesOf({ scenario: 'spike', seconds: 5, warmupSeconds: 2, rate: 300, spikeSeconds: 60, spikeFactor: 10 })).toEqual([
      { name: 'warmup', seconds: 2, rate: 300, measured: false },
      { name: 'before', seconds: 5, rate: 300, measured: true },
      { name: 'spike', seconds: 60, rate: 3000, measured: true },
      { name: 'after', seconds: 5, rate: 300, measured: true },
    ]);
    expect(() => phasesOf({ scenario: 'spike', seconds: 5, warmupSeconds: 0, rate: 0, spikeSeconds: 60, spikeFactor: 10 })).toThrow(/open-loop/);
  });
});
