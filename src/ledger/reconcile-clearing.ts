/**
 * The cross-cluster part of `wallet reconcile` (DESIGN.md invariant 4): over all clusters the
 * clearing accounts net to zero when nothing is in flight. A transfer between clusters is three
 * ledger rows at most (src/transfers/clearing.ts), matched by the transfer's id:
 *   - the debit leg on the sender's cluster: id txn_X, sender's wallet → clearing (posted);
 *   - the credit leg on the recipient's cluster: id txn_X, clearing → recipient's wallet;
 *   - or, instead of the credit, the reversal on the sender's cluster: id rev_X, clearing →
 *     sender's wallet.
 * A shard move (src/db/shard-move.ts) carries each balance the same way, as two legs under one
 * id mov_X: wallet → clearing on the source (a debit leg), clearing → wallet on the target (a
 * credit leg), the source's first.
 * Findings: a credit or reversal without its debit leg (money made), a transfer both credited
 * and reversed, or credited on two clusters (money made twice). A debit leg with neither is in
 * flight: reported, not a finding.
 *
 * Reads are not one snapshot across clusters: credits and reversals are read first, debit legs
 * after, so every credit seen has its debit leg committed before the second read (the credit is
 * applied only after the debit leg's commit). A transfer that settles between the reads is
 * reported in flight, never as a finding. With nothing in flight, the clearing balances must
 * net to zero per currency.
 */
import type { Db, Queryable } from '../db/index.js';
import { EXAMPLES, type Finding } from './reconcile.js';

export interface InFlight {
  currency: string;
  count: number;
  /** minor units, decimal string */
  amount: string;
  /** up to EXAMPLES transfer ids */
  examples: string[];
}

export interface ClearingReport {
  ok: boolean;
  findings: Finding[];
  inFlight: InFlight[];
  /** sum of every cluster's clearing accounts (credits - debits, posted), per currency */
  net: Record<string, string>;
}

interface Leg {
  id: string;
  amount: bigint;
  currency: string;
  cluster: string;
}

async function legs(sql: Queryable, cluster: string, side: 'debit' | 'credit', prefix: 'txn' | 'rev' | 'mov'): Promise<Leg[]> {
  // the clearing account is the credit side of a debit leg and the debit side of a credit or reversal
  const rows = await sql<{ id: string; amount: bigint; currency: string }[]>`
    select l.id, l.amount, l.currency from ledger_transfers l
    join accounts a on a.id = ${side === 'debit' ? sql`l.credit_account_id` : sql`l.debit_account_id`} and a.kind = 'clearing'
    where l.status = 'posted' and l.pending_id is null and l.id like ${prefix + '\\_%'}`;
  // a credit leg applied where its debit leg is (txn_X:credit, src/transfers/clearing.ts) is txn_X's
  return rows.map((r) => ({ id: r.id.split(':')[0]!, amount: r.amount, currency: r.currency.trim(), cluster }));
}

export async function reconcileClearing(db: Db): Promise<ClearingReport> {
  // A transfer between the debit-leg read and the balance read shows as a net without anything
  // in flight: on a live system, read again before calling that a finding.
  let report = await pass(db);
  for (let i = 0; i < 2 && !report.ok && report.findings.every((f) => f.code === 'clearing_not_net_zero'); i++) report = await pass(db);
  return report;
}

async function pass(db: Db): Promise<ClearingReport> {
  const clusters = db.clusters;
  // 1. credits and reversals first (see above), 2. debit legs, 3. balances
  // (a shard move's legs, mov_…, pair like a transfer's: closed on the source, opened on the target)
  const credits = (await Promise.all(clusters.flatMap((c) => [legs(c.sql, c.name, 'credit', 'txn'), legs(c.sql, c.name, 'credit', 'mov')]))).flat();
  const reversals = (await Promise.all(clusters.map((c) => legs(c.sql, c.name, 'credit', 'rev')))).flat();
  const debits = (await Promise.all(clusters.flatMap((c) => [legs(c.sql, c.name, 'debit', 'txn'), legs(c.sql, c.name, 'debit', 'mov')]))).flat();
  // a held transfer approved later is its hold row, set 'posted' by the capture
  const debitById = new Map(debits.map((d) => [d.id, d]));
  const creditsById = new Map<string, Leg[]>();
  for (const c of credits) creditsById.set(c.id, [...(creditsById.get(c.id) ?? []), c]);
  const reversedIds = new Set(reversals.map((r) => `txn_${r.id.slice(4)}`));

  const findings: Finding[] = [];
  const finding = (code: string, description: string, rows: Record<string, unknown>[]) => {
    if (rows.length) findings.push({ code, cluster: '*', description, count: rows.length, examples: rows.slice(0, EXAMPLES) });
  };
  const view = (l: Leg) => ({ id: l.id, cluster: l.cluster, amount: l.amount.toString(), currency: l.currency });

  finding('clearing_credit_without_debit', 'a credit leg with no debit leg on any cluster', credits.filter((c) => !debitById.has(c.id)).map(view));
  finding('clearing_reversal_without_debit', 'a reversal with no debit leg', reversals.filter((r) => !debitById.has(`txn_${r.id.slice(4)}`)).map(view));
  finding('clearing_credited_twice', 'a transfer credited on more than one cluster', [...creditsById.values()].filter((l) => l.length > 1).map((l) => view(l[0]!)));
  finding('clearing_credited_and_reversed', 'a transfer both credited to the recipient and reversed to the sender', credits.filter((c) => reversedIds.has(c.id)).map(view));
  finding(
    'clearing_leg_mismatch',
    'a credit leg whose amount or currency differs from its debit leg',
    credits.filter((c) => {
      const d = debitById.get(c.id);
      return d !== undefined && (d.amount !== c.amount || d.currency !== c.currency);
    }).map(view),
  );

  const open = new Map<string, InFlight & { sum: bigint }>();
  for (const d of debitById.values()) {
    if (creditsById.has(d.id) || reversedIds.has(d.id)) continue;
    const f = open.get(d.currency) ?? { currency: d.currency, count: 0, amount: '0', examples: [], sum: 0n };
    f.count++;
    f.sum += d.amount;
    if (f.examples.length < EXAMPLES) f.examples.push(d.id);
    open.set(d.currency, f);
  }
  const inFlight = [...open.values()].map(({ sum, ...f }) => ({ ...f, amount: sum.toString() }));

  const net = new Map<string, bigint>();
  for (const c of clusters) {
    const rows = await c.sql<{ currency: string; net: bigint }[]>`
      select currency, sum(credits_posted - debits_posted)::bigint as net from accounts where kind = 'clearing' group by currency`;
    for (const r of rows) net.set(r.currency.trim(), (net.get(r.currency.trim()) ?? 0n) + r.net);
  }
  if (!inFlight.length) {
    finding('clearing_not_net_zero', 'with nothing in flight, the clearing accounts of all clusters do not net to zero', [...net].filter(([, v]) => v !== 0n).map(([currency, v]) => ({ currency, net: v.toString() })));
  }
  return { ok: findings.length === 0, findings, inFlight, net: Object.fromEntries([...net].map(([k, v]) => [k, v.toString()])) };
}
