import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { FEATURE_NAMES, toFeatures } from '../types.js';
import { evaluate, rulesBaseline } from './evaluate.js';
import { createLogisticModel, defaultModel, loadModel, ModelArtifactError, parseModelArtifact, type ModelArtifact } from './logistic.js';
import { simulate, type SimulatedRow } from './simulate.js';

const COMMITTED = fileURLToPath(new URL('./model-v1.json', import.meta.url));

describe('the committed model (model-v1.json)', () => {
  let rows: SimulatedRow[];
  beforeAll(() => {
    // users the model never saw: another seed than the one it was trained on
    rows = simulate({ users: 600, days: 14, seed: 11, fraudShare: 0.08 });
  });

  it('loads from the bundle and from its file, trained on exactly FEATURE_NAMES', async () => {
    const fromFile = await loadModel(COMMITTED);
    const bundled = await loadModel();
    expect(bundled.version).toBe('lr-v1');
    expect(fromFile.artifact).toEqual(bundled.artifact);
    expect(bundled.artifact.features).toEqual([...FEATURE_NAMES]);
    expect(bundled.artifact.thresholds!.review).toBeLessThanOrEqual(bundled.artifact.thresholds!.decline);
  });

  it('scores every simulated request in 0..1 and explains with real feature names', () => {
    const model = defaultModel();
    const f = new Float64Array(FEATURE_NAMES.length);
    let flagged = 0;
    for (const r of rows) {
      const p = model.predict(toFeatures(r.raw, f));
      if (!(p >= 0 && p <= 1)) throw new Error(`score ${p} for ${r.id}`);
      if (p >= model.artifact.thresholds!.review) flagged++;
    }
    expect(flagged).toBeGreaterThan(0);
    const burst = rows.find((r) => r.behaviour === 'card_testing' && r.raw.count1m >= 5)!;
    const reasons = model.explain(toFeatures(burst.raw), 3);
    expect(reasons.length).toBeGreaterThan(0);
    expect(reasons.length).toBeLessThanOrEqual(3);
    for (const r of reasons) expect(FEATURE_NAMES).toContain(r.feature);
    for (let i = 1; i < reasons.length; i++) expect(reasons[i - 1].contribution).toBeGreaterThanOrEqual(reasons[i].contribution);
    expect(reasons.every((r) => r.contribution > 0)).toBe(true);
  });

  it('beats the rules alone on held-out users (F1 at its own threshold, and recall at the rules\' precision)', () => {
    const e = evaluate(defaultModel(), rows.filter((r) => r.split === 'heldout'), rulesBaseline());
    expect(e.rocAuc).toBeGreaterThan(0.93);
    expect(e.f1).toBeGreaterThan(e.rules!.f1);
    expect(e.atRulesPrecision!.recall).toBeGreaterThan(e.rules!.recall);
  });
});

describe('createLogisticModel', () => {
  const artifact = (): ModelArtifact => ({
    version: 'lr-test',
    kind: 'logistic-regression',
    features: [...FEATURE_NAMES],
    mean: FEATURE_NAMES.map((_, i) => i / 10),
    std: FEATURE_NAMES.map((_, i) => 1 + i / 5),
    weights: FEATURE_NAMES.map((_, i) => (i % 3) - 1),
    bias: -0.5,
    trainedAt: '2025-01-01T00:00:00.000Z',
    seed: 1,
  });

  it('predicts the sigmoid of the standardised weighted sum', () => {
    const a = artifact();
    const model = createLogisticModel(a);
    const x = Float64Array.from(FEATURE_NAMES, (_, i) => Math.sin(i));
    let s = a.bias;
    for (let i = 0; i < x.length; i++) s += (a.weights[i] * (x[i] - a.mean[i])) / a.std[i];
    expect(model.predict(x)).toBeCloseTo(1 / (1 + Math.exp(-s)), 12);
    const explained = model.explain(x, FEATURE_NAMES.length);
    const contributions = FEATURE_NAMES.map((_, i) => (a.weights[i] * (x[i] - a.mean[i])) / a.std[i]);
    expect(explained.map((e) => e.feature).sort()).toEqual(FEATURE_NAMES.filter((_, i) => contributions[i] > 0).sort());
    for (const e of explained) expect(e.contribution).toBeCloseTo(contributions[FEATURE_NAMES.indexOf(e.feature)], 12);
  });

  it('refuses an artifact trained on other features, or with broken numbers', () => {
    const reordered = { ...artifact(), features: [...FEATURE_NAMES].reverse() };
    expect(() => createLogisticModel(reordered as ModelArtifact)).toThrow(ModelArtifactError);
    const shorter = { ...artifact(), features: FEATURE_NAMES.slice(1) };
    expect(() => parseModelArtifact(shorter)).toThrow(/differ from FEATURE_NAMES/);
    expect(() => parseModelArtifact({ ...artifact(), weights: [...artifact().weights.slice(1), NaN] })).toThrow(/weights/);
    expect(() => parseModelArtifact({ ...artifact(), std: artifact().std.map(() => 0) })).toThrow(/std/);
    expect(() => parseModelArtifact({ ...artifact(), thresholds: { review: 0.9, decline: 0.5 } })).toThrow(/thresholds/);
    expect(() => parseModelArtifact(null)).toThrow(ModelArtifactError);
  });

  it('reports a missing artifact file as a model artifact error', async () => {
    await expect(loadModel('/nonexistent/model.json')).rejects.toThrow(ModelArtifactError);
  });
});
