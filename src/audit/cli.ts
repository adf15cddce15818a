/** `wallet audit verify`: every cluster's chain, its head (to keep as an anchor), and what is wrong. */
import { InvalidArgumentError, type Command } from 'commander';
import type { Platform } from '../platform.js';
import type { AuditHead } from './chain.js';
import { VERIFY_PAGE_MAX, formatAnchor, parseAnchor, verifyAuditClusters, type ClusterVerifyResult } from './verify.js';

export interface AuditCommandDeps {
  /** runs fn with a platform on the configured database, then closes it (cli/ops.ts) */
  withPlatform<T>(fn: (p: Platform) => Promise<T>): Promise<T>;
  /** the exit code of a verify that finds anything (the same as reconcile's) */
  exitViolations: number;
}

function anchorOption(raw: string, previous: Map<string, AuditHead> = new Map()): Map<string, AuditHead> {
  const a = parseAnchor(raw);
  if (!a) throw new InvalidArgumentError('an anchor is <cluster>:<seq>:<sha256 hex>, as `wallet audit verify` prints it');
  if (previous.has(a.cluster)) throw new InvalidArgumentError(`two anchors for cluster ${a.cluster}`);
  return new Map(previous).set(a.cluster, a.head);
}

function pageOption(raw: string): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > VERIFY_PAGE_MAX) throw new InvalidArgumentError(`--page-size must be an integer from 1 to ${VERIFY_PAGE_MAX}`);
  return n;
}

export function registerAuditCommands(program: Command, deps: AuditCommandDeps): void {
  const audit = program.command('audit').description('the hash-chained audit log');
  audit
    .command('verify')
    .description(`recompute every cluster's audit chain (read-only); exits ${deps.exitViolations} on an edited, deleted or reordered record`)
    .option('--anchor <cluster:seq:hash>', 'a head printed by an earlier verify and kept elsewhere: finds deleted newest records and a rewritten chain (repeat per cluster)', anchorOption)
    .option('--page-size <n>', 'records read per query', pageOption, 5_000)
    .option('--json', 'print the result as JSON')
    .action(async (opts: { anchor?: Map<string, AuditHead>; pageSize: number; json?: boolean }) => {
      const report = await deps.withPlatform(async (p) => {
        const unknown = [...(opts.anchor?.keys() ?? [])].filter((name) => !p.db.clusters.some((c) => c.name === name));
        if (unknown.length) throw new InvalidArgumentError(`--anchor names no cluster of this topology: ${unknown.join(', ')}`);
        return verifyAuditClusters(p.db, { pageSize: opts.pageSize, anchors: opts.anchor });
      });
      process.stdout.write(opts.json ? `${JSON.stringify(report, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n` : formatAuditReport(report, opts.anchor));
      if (!report.ok) process.exitCode = deps.exitViolations;
    });
}

export function formatAuditReport(r: { ok: boolean; clusters: ClusterVerifyResult[] }, anchors?: ReadonlyMap<string, AuditHead>): string {
  const out: string[] = [];
  for (const c of r.clusters) {
    const anchored = anchors?.get(c.cluster);
    out.push(`cluster ${c.cluster}: ${c.checked.toLocaleString('en-US')} records checked in ${c.durationMs} ms${anchored ? `, against anchor at seq ${anchored.seq}` : ''}`);
    out.push(`  head ${c.head ? formatAnchor(c.cluster, c.head) : '(empty chain)'}`);
    for (const f of c.findings) out.push(`  ${f.problem} at seq ${f.seq}: ${f.detail}`);
    if (c.findingsTotal > c.findings.length) out.push(`  ... and ${(c.findingsTotal - c.findings.length).toLocaleString('en-US')} more`);
  }
  out.push('');
  if (r.ok) out.push('audit: OK. Keep the heads above outside this database and pass them as --anchor next time: only an anchor shows that the newest records were not deleted.');
  else out.push(`audit: VIOLATIONS on ${r.clusters.filter((c) => !c.ok).map((c) => c.cluster).join(', ')}`);
  return out.join('\n') + '\n';
}
