/**
 * Fraud rules for the benchmarks. A benchmark's synthetic users send dozens of transfers a
 * minute to strangers, which the default rules rightly hold for review (velocity, fan-in, new
 * counterparty): a held transfer writes a review, an alert and a pending hold instead of a
 * posted transfer, so the benchmark would measure a different workload. These rules hold nothing;
 * the model and the rules still run on every request.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const BENCH_FRAUD_RULES = {
  version: 'bench-permissive',
  thresholds: {},
  model: { review: 1, decline: 1 },
  allow: { users: [] },
  deny: { users: [], counterparties: [], countries: [] },
  policy: { budgetMs: 1000, onFailure: { approveBelowMinor: 100_000_000, above: 'review' } },
};

/** writes the rules to `dir` and returns the file's path, for FRAUD_RULES_FILE */
export function writeBenchFraudRules(dir: string): string {
  const file = join(dir, 'bench-fraud-rules.json');
  mkdirSync(dir, { recursive: true });
  writeFileSync(file, JSON.stringify(BENCH_FRAUD_RULES, null, 2));
  return file;
}
