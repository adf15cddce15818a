/**
 * `wallet fraud train`: logistic regression on toFeatures(raw), no dependencies.
 *   - features standardised with the training split's mean and standard deviation (stored in the
 *     artifact, so serving applies the same transform);
 *   - class weighting: each class carries half the loss, so the few fraud rows are not drowned out;
 *     the bias is then shifted back by ln(legitimate / fraud rows) (the prior correction), so
 *     predict() is again an estimate of the probability of fraud at the training data's base rate,
 *     as FraudModel promises, and thresholds read as probabilities;
 *   - mini-batch gradient descent with momentum and a decaying step, L2 on the weights (not the
 *     bias); the batches are shuffled with the seed, so a seed gives the same weights.
 * Thresholds are chosen on the training split: review where F1 is highest, decline at the lowest
 * score where precision reaches DECLINE_PRECISION (declining a good customer costs more than a review).
 */
import { FEATURE_NAMES, toFeatures, type RawSignals } from '../types.js';
import type { ModelArtifact, ModelThresholds } from './logistic.js';
import { createRng, shuffle } from './random.js';

export interface TrainingRow {
  raw: RawSignals;
  label: 0 | 1;
}

export interface TrainOptions {
  seed: number;
  epochs?: number;
  l2?: number;
  learningRate?: number;
  batchSize?: number;
  version?: string;
  /** defaults to now; fixed in tests */
  trainedAt?: Date;
  /** recorded in the artifact as given (what the model was trained on) */
  dataset?: Record<string, unknown>;
}

export const TRAIN_DEFAULTS = { epochs: 40, l2: 1e-4, learningRate: 0.05, batchSize: 256 } as const;
export const TRAIN_LIMITS = { maxEpochs: 1000, maxRows: 5_000_000 } as const;
export const DECLINE_PRECISION = 0.9;

const D = FEATURE_NAMES.length;

/** Row-major feature matrix (n × D) and labels. */
function featureMatrix(rows: readonly TrainingRow[]): { x: Float64Array; y: Uint8Array } {
  const x = new Float64Array(rows.length * D);
  const y = new Uint8Array(rows.length);
  for (let r = 0; r < rows.length; r++) {
    toFeatures(rows[r].raw, x.subarray(r * D, (r + 1) * D));
    y[r] = rows[r].label;
  }
  return { x, y };
}

/** Standardises x in place; returns the mean and std (std 1 for a constant feature). */
function standardise(x: Float64Array, n: number): { mean: number[]; std: number[] } {
  const mean = new Array<number>(D).fill(0);
  const std = new Array<number>(D).fill(0);
  for (let r = 0; r < n; r++) for (let j = 0; j < D; j++) mean[j] += x[r * D + j] / n;
  for (let r = 0; r < n; r++) for (let j = 0; j < D; j++) std[j] += (x[r * D + j] - mean[j]) ** 2 / n;
  for (let j = 0; j < D; j++) std[j] = std[j] > 1e-12 ? Math.sqrt(std[j]) : 1;
  for (let r = 0; r < n; r++) for (let j = 0; j < D; j++) x[r * D + j] = (x[r * D + j] - mean[j]) / std[j];
  return { mean, std };
}

const sigmoid = (s: number) => 1 / (1 + Math.exp(-s));

/** Class-weighted mean log loss plus the L2 term: what the descent minimises (reported in the artifact). */
function loss(x: Float64Array, y: Uint8Array, sampleWeight: Float64Array, w: Float64Array, b: number, l2: number): number {
  let total = 0;
  for (let r = 0; r < y.length; r++) {
    let s = b;
    for (let j = 0; j < D; j++) s += w[j] * x[r * D + j];
    const p = Math.min(1 - 1e-12, Math.max(1e-12, sigmoid(s)));
    total -= sampleWeight[r] * (y[r] ? Math.log(p) : Math.log(1 - p));
  }
  let reg = 0;
  for (let j = 0; j < D; j++) reg += w[j] * w[j];
  return total / y.length + (l2 / 2) * reg;
}

export function train(rows: readonly TrainingRow[], opts: TrainOptions): ModelArtifact {
  const epochs = opts.epochs ?? TRAIN_DEFAULTS.epochs;
  const l2 = opts.l2 ?? TRAIN_DEFAULTS.l2;
  const learningRate = opts.learningRate ?? TRAIN_DEFAULTS.learningRate;
  const batchSize = opts.batchSize ?? TRAIN_DEFAULTS.batchSize;
  if (!Number.isInteger(epochs) || epochs < 1 || epochs > TRAIN_LIMITS.maxEpochs) throw new RangeError(`epochs must be an integer from 1 to ${TRAIN_LIMITS.maxEpochs}`);
  if (!(l2 >= 0) || !(learningRate > 0) || !(Number.isInteger(batchSize) && batchSize >= 1)) throw new RangeError('l2 ≥ 0, learningRate > 0 and an integer batchSize ≥ 1 are required');
  if (rows.length > TRAIN_LIMITS.maxRows) throw new RangeError(`at most ${TRAIN_LIMITS.maxRows} training rows`);
  const positives = rows.reduce((s, r) => s + r.label, 0);
  if (positives === 0 || positives === rows.length) throw new RangeError('training needs both fraud and legitimate rows');

  const n = rows.length;
  const { x, y } = featureMatrix(rows);
  const { mean, std } = standardise(x, n);
  // each class carries half the total weight
  const sampleWeight = Float64Array.from(y, (label) => (label ? n / (2 * positives) : n / (2 * (n - positives))));
  const { w, b } = descend(x, y, sampleWeight, { seed: opts.seed, epochs, l2, learningRate, batchSize });
  const bias = b - Math.log((n - positives) / positives); // the prior correction (see the header)

  const scores = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    let s = bias;
    for (let j = 0; j < D; j++) s += w[j] * x[r * D + j];
    scores[r] = sigmoid(s);
  }
  const trainedAt = opts.trainedAt ?? new Date();
  return {
    version: opts.version ?? `lr-${trainedAt.toISOString().slice(0, 10)}`,
    kind: 'logistic-regression',
    features: [...FEATURE_NAMES],
    mean,
    std,
    weights: Array.from(w),
    bias,
    thresholds: chooseThresholds(scores, y),
    trainedAt: trainedAt.toISOString(),
    seed: opts.seed,
    training: { rows: n, fraud: positives, epochs, l2, learningRate, batchSize, weightedLoss: loss(x, y, sampleWeight, w, b, l2) },
    dataset: opts.dataset,
  };
}

/** Mini-batch gradient descent with momentum on the class-weighted log loss; batches shuffled by the seed. */
function descend(x: Float64Array, y: Uint8Array, sampleWeight: Float64Array, o: { seed: number; epochs: number; l2: number; learningRate: number; batchSize: number }): { w: Float64Array; b: number } {
  const n = y.length;
  const w = new Float64Array(D);
  let b = 0;
  const vw = new Float64Array(D);
  let vb = 0;
  const grad = new Float64Array(D);
  const order = Array.from({ length: n }, (_, i) => i);
  const rng = createRng(o.seed);
  const momentum = 0.9;
  for (let epoch = 0; epoch < o.epochs; epoch++) {
    shuffle(rng, order);
    const step = o.learningRate / (1 + epoch / 10);
    for (let start = 0; start < n; start += o.batchSize) {
      const end = Math.min(n, start + o.batchSize);
      grad.fill(0);
      let gb = 0;
      for (let k = start; k < end; k++) {
        const r = order[k];
        let s = b;
        for (let j = 0; j < D; j++) s += w[j] * x[r * D + j];
        const err = sampleWeight[r] * (sigmoid(s) - y[r]);
        for (let j = 0; j < D; j++) grad[j] += err * x[r * D + j];
        gb += err;
      }
      const m = end - start;
      for (let j = 0; j < D; j++) {
        vw[j] = momentum * vw[j] - step * (grad[j] / m + o.l2 * w[j]);
        w[j] += vw[j];
      }
      vb = momentum * vb - step * (gb / m);
      b += vb;
    }
  }
  return { w, b };
}

/** Review: the score with the best F1 on the training split; decline: the lowest with precision ≥ DECLINE_PRECISION. */
export function chooseThresholds(scores: ArrayLike<number>, labels: ArrayLike<number>): ModelThresholds {
  const idx = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[b] - scores[a]);
  let positives = 0;
  for (let i = 0; i < labels.length; i++) positives += labels[i];
  let tp = 0;
  let fp = 0;
  let bestF1 = -1;
  let review = 1;
  let decline = 1;
  for (let k = 0; k < idx.length; k++) {
    if (labels[idx[k]]) tp++;
    else fp++;
    // a threshold sits between distinct scores: flag everything ≥ this score
    if (k + 1 < idx.length && scores[idx[k + 1]] === scores[idx[k]]) continue;
    const precision = tp / (tp + fp);
    const recall = positives ? tp / positives : 0;
    const f1 = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
    if (f1 > bestF1) (bestF1 = f1), (review = scores[idx[k]]);
    if (precision >= DECLINE_PRECISION && tp >= 5) decline = scores[idx[k]];
  }
  return { review, decline: Math.max(review, decline) };
}
