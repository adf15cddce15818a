/** The benchmark's report: figures per phase and operation, over time and in total; JSON, Markdown and an SVG chart. */
import { Histogram, summarize, type LatencySummary, type SerializedHistogram } from './histogram.js';
import { OPS, type Op, type Outcomes } from './types.js';
import type { PgbenchResult } from './pgbench.js';

/** what an answer means for the benchmark's verdict */
export type OutcomeClass = 'ok' | 'declined' | 'shed' | 'error';

const DECLINES = new Set(['insufficient_funds', 'fraud_declined', 'declined', 'limit_exceeded']);

export function classify(outcome: string): OutcomeClass {
  if (outcome.startsWith('2')) return 'ok';
  const [status, code] = outcome.split(' ');
  if (status === '422' && code && DECLINES.has(code)) return 'declined';
  if (status === '429' || (status === '503' && code === 'unavailable')) return 'shed';
  return 'error';
}

export interface OpFigures {
  /** answers per second, all outcomes */
  answersPerSecond: number;
  /** 2xx answers per second */
  okPerSecond: number;
  ok: number;
  declined: number;
  shed: number;
  errors: number;
  lost: number;
  unsent: number;
  outcomes: Outcomes;
  latency: LatencySummary;
}

export interface OpAccumulator {
  outcomes: Outcomes;
  histogram: Histogram;
  lost: number;
  unsent: number;
}

export const emptyAccumulator = (): OpAccumulator => ({ outcomes: {}, histogram: new Histogram(), lost: 0, unsent: 0 });

export function addOutcomes(into: Outcomes, from: Outcomes): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

export function accumulate(acc: OpAccumulator, t: { outcomes: Outcomes; histogram: SerializedHistogram; lost?: number; unsent?: number }): void {
  addOutcomes(acc.outcomes, t.outcomes);
  acc.histogram.add(new Histogram(t.histogram));
  acc.lost += t.lost ?? 0;
  acc.unsent += t.unsent ?? 0;
}

export function figures(acc: OpAccumulator, seconds: number): OpFigures {
  const by: Record<OutcomeClass, number> = { ok: 0, declined: 0, shed: 0, error: 0 };
  let answers = 0;
  for (const [k, v] of Object.entries(acc.outcomes)) {
    if (k.startsWith('lost')) continue; // counted in `lost`
    by[classify(k)] += v;
    answers += v;
  }
  const perSecond = (n: number) => (seconds > 0 ? Math.round((n / seconds) * 10) / 10 : 0);
  return {
    answersPerSecond: perSecond(answers),
    okPerSecond: perSecond(by.ok),
    ok: by.ok,
    declined: by.declined,
    shed: by.shed,
    errors: by.error + acc.lost,
    lost: acc.lost,
    unsent: acc.unsent,
    outcomes: acc.outcomes,
    latency: summarize(acc.histogram),
  };
}

export interface SecondFigures {
  second: number;
  phase: string;
  ops: Partial<Record<Op, { okPerSecond: number; answers: number; shed: number; errors: number; p50Ms: number; p95Ms: number; p99Ms: number; maxMs: number }>>;
  backlog: number;
  cpuCores: { generator: number; api?: number; postgres?: number; machine?: number };
  platform?: { ledgerQueue?: number; relayBacklog?: number; jobsQueued?: number };
}

export interface HttpBenchReport {
  kind: 'http';
  command: string;
  scenario: 'steady' | 'spike';
  startedAt: string;
  machine: { cores: number; cpu: string; memoryGiB: number; os: string; node: string };
  postgres: { version: string; fsync: string; synchronousCommit: string; sharedBuffers: string; where: string };
  platform: { started: boolean; processes: number; roles: string[]; urls: string[]; settings: Record<string, string | number> };
  load: {
    users: number;
    persons: number;
    merchants: number;
    connections: number;
    pipelining: number;
    generators: number;
    mix: Record<string, number>;
    hotAccounts: number;
    hotShare: number;
    crossShardShare: number;
    crossShardSent: number;
    openLoop: boolean;
    phases: { name: string; seconds: number; rate: number; measured: boolean }[];
  };
  phases: Record<string, { seconds: number; rate: number; ops: Partial<Record<Op, OpFigures>> }>;
  /** the measured phases together */
  total: { seconds: number; ops: Partial<Record<Op, OpFigures>> };
  series: SecondFigures[];
  cpu: { windowSeconds: number; generatorCores: number; apiCores?: number; postgresCores?: number; otherCores?: number; machineCores?: number; generatorShareOfMachine?: number };
  /** what limited the run (src/bench/http/limits.ts) */
  limits: {
    /** each API process's main thread over the measured window: shares of the window on a core and runnable, waiting for one (Linux; empty elsewhere or with --url) */
    eventLoops: { pid: number; onCore: number; waitingForCore: number }[];
    /** ledger batches committed in the window, all API processes together */
    ledgerBatches?: { count: number; meanSize: number; meanMs: number };
    verdict: string;
  };
  pgbench: PgbenchResult;
  /** P2P transfers per second (2xx, measured phases) / pgbench TPC-B tps */
  ratioToPgbench?: number;
  correctness: {
    transfers: { acknowledged: number; unknown: number; inDatabase: number; ok: boolean };
    authorizations: { acknowledged: number; unknown: number; inDatabase: number; ok: boolean };
    captures: { acknowledged: number; unknown: number; inDatabase: number; ok: boolean };
    reconcile: { ok: boolean; findings: { code: string; count: number; description: string }[]; durationMs: number };
    ok: boolean;
  };
  targets: { name: string; target: string; measured: string; met: boolean }[];
  files?: { json: string; markdown: string; svg: string };
}

const n = (x: number | undefined, digits = 0) => (x === undefined || !Number.isFinite(x) ? '–' : x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }));

function outcomeText(o: Outcomes): string {
  return Object.entries(o)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k}: ${n(v)}`)
    .join(', ');
}

export function toMarkdown(r: HttpBenchReport): string {
  const lines: string[] = [];
  lines.push(`# HTTP benchmark — ${r.scenario} (${r.startedAt})`, '', '```', `$ ${r.command}`, '```', '');
  lines.push(`Machine: ${r.machine.cores} cores (${r.machine.cpu}), ${r.machine.memoryGiB} GiB, ${r.machine.os}, Node ${r.machine.node}.`);
  lines.push(`PostgreSQL ${r.postgres.version} (${r.postgres.where}; fsync ${r.postgres.fsync}, synchronous_commit ${r.postgres.synchronousCommit}, shared_buffers ${r.postgres.sharedBuffers}).`);
  lines.push(`Platform: ${r.platform.started ? `${r.platform.processes} process(es) started by the benchmark, roles ${r.platform.roles.map((x) => `\`${x}\``).join(' + ')}` : `running at ${r.platform.urls.join(', ')}`}; ${Object.entries(r.platform.settings).map(([k, v]) => `${k}=${v}`).join(', ')}.`);
  const l = r.load;
  lines.push(
    `Load: ${n(l.users)} users (${n(l.persons)} persons, ${n(l.merchants)} merchants), ${l.generators} generator process(es), ${l.connections} connections × pipelining ${l.pipelining}, ${l.openLoop ? 'open loop (fixed arrival rate; latency from the intended send time)' : 'closed loop (max throughput; latency from the send)'}; mix ${Object.entries(l.mix).map(([k, v]) => `${k} ${v}`).join(', ')}; hot accounts ${l.hotAccounts} in ${Math.round(l.hotShare * 100)} % of transfers; cross-shard pairs ${Math.round(l.crossShardShare * 100)} % asked, ${Math.round(l.crossShardSent * 100)} % sent.`,
    '',
  );
  lines.push('## Targets', '', '| target | goal | measured | met |', '|---|---|---|---|');
  for (const t of r.targets) lines.push(`| ${t.name} | ${t.target} | ${t.measured} | ${t.met ? 'yes' : '**no**'} |`);
  lines.push('');
  const opTable = (ops: Partial<Record<Op, OpFigures>>) => {
    const out = ['| operation | 2xx/s | answers/s | p50 ms | p95 ms | p99 ms | max ms | declined | shed | errors | unsent | outcomes |', '|---|---|---|---|---|---|---|---|---|---|---|---|'];
    for (const op of OPS) {
      const f = ops[op];
      if (!f) continue;
      out.push(`| ${op} | ${n(f.okPerSecond)} | ${n(f.answersPerSecond)} | ${n(f.latency.p50Ms, 1)} | ${n(f.latency.p95Ms, 1)} | ${n(f.latency.p99Ms, 1)} | ${n(f.latency.maxMs, 1)} | ${n(f.declined)} | ${n(f.shed)} | ${n(f.errors)} | ${n(f.unsent)} | ${outcomeText(f.outcomes)} |`);
    }
    return out;
  };
  lines.push(`## Total (measured phases, ${n(r.total.seconds)} s)`, '', ...opTable(r.total.ops), '');
  for (const [name, p] of Object.entries(r.phases)) {
    lines.push(`### Phase \`${name}\` (${n(p.seconds)} s, ${p.rate > 0 ? `${n(p.rate)} requests/s offered` : 'closed loop'})`, '', ...opTable(p.ops), '');
  }
  const queues = Object.keys(r.phases).map((name) => {
    const secs = r.series.filter((x) => x.phase === name && x.platform);
    const max = (f: (p: NonNullable<SecondFigures['platform']>) => number | undefined) => secs.reduce<number | undefined>((m, x) => {
      const v = f(x.platform!);
      return v === undefined ? m : Math.max(m ?? 0, v);
    }, undefined);
    return `| ${name} | ${n(max((p) => p.ledgerQueue))} | ${n(max((p) => p.relayBacklog))} | ${n(max((p) => p.jobsQueued))} |`;
  });
  lines.push('## Deferred work (first API process, sampled each second; maxima)', '', '| phase | ledger queue | outbox not yet relayed | jobs queued |', '|---|---|---|---|', ...queues, '');
  const c = r.cpu;
  lines.push('## CPU (measured window)', '', `${n(c.windowSeconds, 1)} s: generator ${n(c.generatorCores, 2)} cores, platform processes (API and background roles) ${n(c.apiCores, 2)}, PostgreSQL ${n(c.postgresCores, 2)}, everything else on the machine ${n(c.otherCores, 2)}, whole machine ${n(c.machineCores, 2)} of ${r.machine.cores}; the generator's share of the machine's busy CPU: ${c.generatorShareOfMachine === undefined ? '–' : `${n(c.generatorShareOfMachine * 100)} %`}.`, '');
  const lim = r.limits;
  lines.push('## What limited this run', '', `**${lim.verdict}**`, '');
  for (const e of lim.eventLoops) lines.push(`- API process ${e.pid}, event loop (main thread): on a core ${n(e.onCore * 100)} % of the window, waiting for a core ${n(e.waitingForCore * 100)} %.`);
  if (lim.ledgerBatches) lines.push(`- Ledger batches: ${n(lim.ledgerBatches.count)} committed, mean size ${n(lim.ledgerBatches.meanSize, 1)} commands, mean close → commit ${n(lim.ledgerBatches.meanMs, 1)} ms.`);
  lines.push('');
  lines.push('## pgbench TPC-B on the same PostgreSQL', '');
  if (r.pgbench.available) {
    lines.push(`${r.pgbench.version}: scale ${r.pgbench.scale}, ${r.pgbench.clients} clients, ${r.pgbench.threads} threads, ${r.pgbench.seconds} s → **${n(r.pgbench.tps)} tps** (latency average ${n(r.pgbench.latencyAvgMs, 2)} ms).`);
    lines.push(`P2P transfers per second over HTTP / pgbench tps = **${n(r.ratioToPgbench, 2)}**.`, '');
  } else {
    lines.push(`**No pgbench figure: ${r.pgbench.reason}**`, '');
  }
  const k = r.correctness;
  lines.push('## Correctness after the load', '', '| check | acknowledged (2xx) | unknown outcome | in the database | ok |', '|---|---|---|---|---|');
  for (const [name, x] of [['P2P transfers', k.transfers], ['authorizations', k.authorizations], ['captures', k.captures]] as const) lines.push(`| ${name} | ${n(x.acknowledged)} | ${n(x.unknown)} | ${n(x.inDatabase)} | ${x.ok ? 'yes' : '**no**'} |`);
  lines.push('', `\`wallet reconcile\`: ${k.reconcile.ok ? 'OK, no findings' : `**${k.reconcile.findings.length} finding(s)**: ${k.reconcile.findings.map((f) => `${f.code} (${f.count})`).join(', ')}`} (${n(k.reconcile.durationMs)} ms).`, '');
  if (r.files) lines.push(`Chart: [${r.files.svg.split('/').pop()}](${r.files.svg.split('/').pop()})`, '');
  return lines.join('\n');
}

/** throughput per operation and transfer latency percentiles per second, with phases shaded */
export function toSvg(r: HttpBenchReport): string {
  const W = 960;
  const H = 560;
  const left = 70;
  const right = W - 150;
  const top1 = 40;
  const bottom1 = 260;
  const top2 = 310;
  const bottom2 = 520;
  const series = r.series;
  const maxSecond = Math.max(1, ...series.map((s) => s.second));
  const x = (sec: number) => left + ((sec - 0.5) / maxSecond) * (right - left);
  const colors: Record<string, string> = { transfer: '#1f77b4', balance: '#2ca02c', history: '#9467bd', authorize: '#ff7f0e', capture: '#8c564b', shed: '#d62728' };
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${left}" y="20" font-size="14" font-weight="bold">wallet HTTP benchmark, ${r.scenario}: ${esc(r.startedAt)} — ${r.machine.cores} cores, ${esc(r.machine.cpu)}</text>`);
  // phase bands
  let bandStart = 0;
  series.forEach((s, i) => {
    const next = series[i + 1];
    if (!next || next.phase !== s.phase) {
      const x0 = x(bandStart + 0.5);
      const x1 = x(s.second + 0.5);
      const shade = s.phase.includes('spike') ? '#fde0dd' : s.phase === 'warmup' || s.phase === 'drain' ? '#f0f0f0' : '#ffffff';
      for (const [t, b] of [[top1, bottom1], [top2, bottom2]] as const) out.push(`<rect x="${x0.toFixed(1)}" y="${t}" width="${Math.max(0, x1 - x0).toFixed(1)}" height="${b - t}" fill="${shade}"/>`);
      out.push(`<text x="${((x0 + x1) / 2).toFixed(1)}" y="${top1 - 4}" text-anchor="middle" fill="#666">${esc(s.phase)}</text>`);
      bandStart = s.second;
    }
  });
  // panel 1: 2xx per second per operation, and shed answers
  const okOf = (s: SecondFigures, op: Op) => s.ops[op]?.okPerSecond ?? 0;
  const shedOf = (s: SecondFigures) => OPS.reduce((a, op) => a + (s.ops[op]?.shed ?? 0), 0);
  const yMax1 = niceMax(Math.max(1, ...series.flatMap((s) => [...OPS.map((op) => okOf(s, op)), shedOf(s)])));
  const y1 = (v: number) => bottom1 - (v / yMax1) * (bottom1 - top1);
  axis(out, left, right, top1, bottom1, [0, yMax1 / 2, yMax1].map((v) => [y1(v), n(v)]), 'answers/s (2xx)');
  const lines1: [string, (s: SecondFigures) => number][] = [...OPS.filter((op) => series.some((s) => s.ops[op])).map((op) => [op, (s: SecondFigures) => okOf(s, op)] as [string, (s: SecondFigures) => number]), ...(series.some((s) => shedOf(s) > 0) ? [['shed', shedOf] as [string, (s: SecondFigures) => number]] : [])];
  lines1.forEach(([name, f], i) => {
    out.push(polyline(series.map((s) => [x(s.second), y1(f(s))]), colors[name] ?? '#000', name === 'shed' ? '4 3' : undefined));
    legend(out, right + 15, top1 + 10 + i * 16, colors[name] ?? '#000', name === 'shed' ? 'shed (429/503)' : `${name} 2xx/s`);
  });
  // panel 2: transfer latency percentiles, log scale
  const lat = series.filter((s) => s.ops.transfer && s.ops.transfer.answers > 0);
  const maxLat = Math.max(1, ...lat.map((s) => s.ops.transfer!.maxMs));
  const lo = 0.1;
  const hi = 10 ** Math.ceil(Math.log10(maxLat));
  const y2 = (ms: number) => bottom2 - ((Math.log10(Math.max(lo, ms)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (bottom2 - top2);
  const ticks: [number, string][] = [];
  for (let v = lo; v <= hi * 1.001; v *= 10) ticks.push([y2(v), v < 1 ? String(v) : n(v)]);
  axis(out, left, right, top2, bottom2, ticks, 'transfer latency, ms (log)');
  const pcts: [string, string, (s: SecondFigures) => number][] = [
    ['p50', '#2ca02c', (s) => s.ops.transfer!.p50Ms],
    ['p95', '#ff7f0e', (s) => s.ops.transfer!.p95Ms],
    ['p99', '#d62728', (s) => s.ops.transfer!.p99Ms],
    ['max', '#7f7f7f', (s) => s.ops.transfer!.maxMs],
  ];
  pcts.forEach(([name, color, f], i) => {
    out.push(polyline(lat.map((s) => [x(s.second), y2(f(s))]), color, name === 'max' ? '2 2' : undefined));
    legend(out, right + 15, top2 + 10 + i * 16, color, `transfer ${name}`);
  });
  const step = niceMax(maxSecond / 10);
  for (let sec = step; sec <= maxSecond; sec += step) {
    for (const b of [bottom1, bottom2]) out.push(`<line x1="${x(sec + 0.5).toFixed(1)}" y1="${b}" x2="${x(sec + 0.5).toFixed(1)}" y2="${b + 4}" stroke="#333"/>`);
    out.push(`<text x="${x(sec + 0.5).toFixed(1)}" y="${bottom2 + 16}" text-anchor="middle">${sec}</text>`);
  }
  out.push(`<text x="${(left + right) / 2}" y="${H - 8}" text-anchor="middle">seconds since the load started</text>`);
  out.push('</svg>');
  return out.join('\n');
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function niceMax(v: number): number {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function axis(out: string[], left: number, right: number, top: number, bottom: number, ticks: [number, string][], label: string): void {
  out.push(`<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="#333"/><line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="#333"/>`);
  for (const [y, text] of ticks) {
    out.push(`<line x1="${left}" y1="${y.toFixed(1)}" x2="${right}" y2="${y.toFixed(1)}" stroke="#ddd"/><text x="${left - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end">${text}</text>`);
  }
  out.push(`<text x="14" y="${(top + bottom) / 2}" transform="rotate(-90 14 ${(top + bottom) / 2})" text-anchor="middle">${label}</text>`);
}

function polyline(points: [number, number][], color: string, dash?: string): string {
  const pts = points.filter(([, y]) => Number.isFinite(y)).map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(' ');
  return `<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="1.6"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`;
}

function legend(out: string[], x: number, y: number, color: string, text: string): void {
  out.push(`<line x1="${x}" y1="${y}" x2="${x + 18}" y2="${y}" stroke="${color}" stroke-width="2"/><text x="${x + 24}" y="${y + 4}">${esc(text)}</text>`);
}
