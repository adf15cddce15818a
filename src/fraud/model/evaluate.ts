/**
 * `wallet fraud evaluate`: the model against the held-out users, and the rules alone as the baseline.
 *
 * The comparison is between operating points nobody tuned on the held-out set:
 *   - the model flags a request when its score reaches the artifact's review threshold (chosen on
 *     the training split by train.ts);
 *   - the rules flag it when applyRules() says anything but approve (review or decline), as the
 *     shipped rules file stands.
 * Both are scored on precision, recall and F1 of "flagged" against the label. As a second view that
 * does not depend on the model's threshold, `atRulesPrecision` is the model's best recall among its
 * thresholds whose held-out precision is at least the rules' precision (the rules' point against the
 * model's precision–recall curve).
 */
import { applyRules, DEFAULT_RULES, type Rules } from '../rules.js';
import { FEATURE_NAMES, toFeatures, type FraudModel, type FraudRequest, type RawSignals } from '../types.js';
import type { LogisticModel } from './logistic.js';
import type { SimulatedRow } from './simulate.js';

export interface Confusion {
  tp: number;
  fp: number;
  tn: number;
  fn: number;
}

export interface BinaryMetrics {
  precision: number;
  recall: number;
  f1: number;
  /** false-positive rate: legitimate requests flagged */
  fpr: number;
  confusion: Confusion;
}

export interface Evaluation extends BinaryMetrics {
  rows: number;
  fraud: number;
  modelVersion: string;
  /** the model flags scores ≥ threshold */
  threshold: number;
  rocAuc: number;
  /** the ROC curve (for the chart): false- and true-positive rates from the highest threshold down */
  roc: { fpr: number[]; tpr: number[] };
  rules?: BinaryMetrics & { rocAuc: number; version?: string };
  /** the model's best recall at a precision no lower than the rules' (see the header) */
  atRulesPrecision?: { threshold: number; precision: number; recall: number };
}

/** flagged or not, for one request: the baseline the model is compared with */
export type RulesBaseline = (req: FraudRequest, raw: RawSignals) => boolean;

/** The rules alone: a request is flagged unless they approve it. */
export function rulesBaseline(rules: Rules = DEFAULT_RULES): RulesBaseline {
  return (req, raw) => applyRules(rules, req, raw).outcome !== 'approve';
}

/** The request a simulated row stands for, as the API would hand it to scoring. */
export function toFraudRequest(row: SimulatedRow): FraudRequest {
  return {
    requestId: row.id,
    kind: row.raw.kind,
    userId: row.userId,
    amountMinor: BigInt(row.raw.amount),
    currency: row.currency,
    counterpartyId: row.counterpartyId,
    cardCountry: row.cardCountry,
    ipCountry: row.ipCountry,
    at: new Date(row.at),
  };
}

export function confusionOf(flags: ArrayLike<boolean>, labels: ArrayLike<number>): Confusion {
  const c: Confusion = { tp: 0, fp: 0, tn: 0, fn: 0 };
  for (let i = 0; i < labels.length; i++) {
    if (flags[i]) labels[i] ? c.tp++ : c.fp++;
    else labels[i] ? c.fn++ : c.tn++;
  }
  return c;
}

/** Precision is 0 when nothing is flagged (a rule that never fires catches nothing). */
export function metricsOf(c: Confusion): BinaryMetrics {
  const precision = c.tp + c.fp ? c.tp / (c.tp + c.fp) : 0;
  const recall = c.tp + c.fn ? c.tp / (c.tp + c.fn) : 0;
  const f1 = precision + recall ? (2 * precision * recall) / (precision + recall) : 0;
  return { precision, recall, f1, fpr: c.fp + c.tn ? c.fp / (c.fp + c.tn) : 0, confusion: c };
}

/**
 * Exact ROC AUC from ranks (the Mann–Whitney U statistic): the probability that a random fraud
 * row scores above a random legitimate one, ties counting one half (tied scores share their
 * average rank). NaN when either class is absent.
 */
export function rocAuc(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  const n = scores.length;
  if (labels.length !== n) throw new RangeError('rocAuc: scores and labels differ in length');
  const idx = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a] - scores[b]);
  let positives = 0;
  let rankSum = 0;
  for (let i = 0; i < n; ) {
    let j = i;
    while (j + 1 < n && scores[idx[j + 1]] === scores[idx[i]]) j++;
    const averageRank = (i + j) / 2 + 1; // ranks are 1-based
    for (let k = i; k <= j; k++) {
      if (labels[idx[k]]) {
        positives++;
        rankSum += averageRank;
      }
    }
    i = j + 1;
  }
  const negatives = n - positives;
  if (positives === 0 || negatives === 0) return NaN;
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

/** ROC points, one per distinct score (ties move both rates at once), from (0,0) to (1,1). */
export function rocCurve(scores: ArrayLike<number>, labels: ArrayLike<number>): { fpr: number[]; tpr: number[]; thresholds: number[] } {
  const n = scores.length;
  const idx = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b] - scores[a]);
  let positives = 0;
  for (let i = 0; i < n; i++) positives += labels[i] ? 1 : 0;
  const negatives = n - positives;
  const out = { fpr: [0], tpr: [0], thresholds: [Infinity] };
  let tp = 0;
  let fp = 0;
  for (let k = 0; k < n; k++) {
    if (labels[idx[k]]) tp++;
    else fp++;
    if (k + 1 < n && scores[idx[k + 1]] === scores[idx[k]]) continue;
    out.fpr.push(negatives ? fp / negatives : 0);
    out.tpr.push(positives ? tp / positives : 0);
    out.thresholds.push(scores[idx[k]]);
  }
  return out;
}

/** The best recall among thresholds whose precision is at least minPrecision (undefined: none reaches it). */
export function bestRecallAtPrecision(scores: ArrayLike<number>, labels: ArrayLike<number>, minPrecision: number): { threshold: number; precision: number; recall: number } | undefined {
  const { tpr, fpr, thresholds } = rocCurve(scores, labels);
  let positives = 0;
  for (let i = 0; i < labels.length; i++) positives += labels[i] ? 1 : 0;
  const negatives = labels.length - positives;
  let best: { threshold: number; precision: number; recall: number } | undefined;
  for (let k = 1; k < tpr.length; k++) {
    const tp = tpr[k] * positives;
    const fp = fpr[k] * negatives;
    const precision = tp / (tp + fp);
    if (precision >= minPrecision && (!best || tpr[k] > best.recall)) best = { threshold: thresholds[k], precision, recall: tpr[k] };
  }
  return best;
}

export interface EvaluateOptions {
  /** the model's flagging threshold (default: the artifact's review threshold, else 0.5) */
  threshold?: number;
  rulesVersion?: string;
}

export function evaluate(model: FraudModel | LogisticModel, rows: readonly SimulatedRow[], baseline?: RulesBaseline, opts: EvaluateOptions = {}): Evaluation {
  const threshold = opts.threshold ?? ('artifact' in model ? model.artifact.thresholds?.review : undefined) ?? 0.5;
  const scores = new Float64Array(rows.length);
  const labels = new Uint8Array(rows.length);
  const features = new Float64Array(FEATURE_NAMES.length);
  for (let i = 0; i < rows.length; i++) {
    scores[i] = model.predict(toFeatures(rows[i].raw, features));
    labels[i] = rows[i].label;
  }
  const flags = Array.from(scores, (s) => s >= threshold);
  const roc = rocCurve(scores, labels);
  const result: Evaluation = {
    rows: rows.length,
    fraud: labels.reduce((s, l) => s + l, 0),
    modelVersion: model.version,
    threshold,
    ...metricsOf(confusionOf(flags, labels)),
    rocAuc: rocAuc(scores, labels),
    roc: { fpr: roc.fpr, tpr: roc.tpr },
  };
  if (baseline) {
    const ruleFlags = rows.map((r) => baseline(toFraudRequest(r), r.raw));
    const rules = metricsOf(confusionOf(ruleFlags, labels));
    result.rules = { ...rules, rocAuc: rocAuc(Uint8Array.from(ruleFlags, Number), labels), version: opts.rulesVersion };
    result.atRulesPrecision = bestRecallAtPrecision(scores, labels, rules.precision);
  }
  return result;
}
