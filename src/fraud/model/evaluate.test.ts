import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FEATURE_NAMES, type FraudModel } from '../types.js';
import { bestRecallAtPrecision, confusionOf, evaluate, metricsOf, rocAuc, rocCurve, toFraudRequest } from './evaluate.js';
import type { SimulatedRow } from './simulate.js';

/** the definition: over all (fraud, legitimate) pairs, 1 when fraud scores higher, ½ on a tie */
function pairwiseAuc(scores: number[], labels: number[]): number {
  let sum = 0;
  let pairs = 0;
  for (let i = 0; i < scores.length; i++) {
    if (!labels[i]) continue;
    for (let j = 0; j < scores.length; j++) {
      if (labels[j]) continue;
      pairs++;
      sum += scores[i] > scores[j] ? 1 : scores[i] === scores[j] ? 0.5 : 0;
    }
  }
  return sum / pairs;
}

describe('ROC AUC', () => {
  it('is 1 for a perfect ranking, 0 for a reversed one', () => {
    expect(rocAuc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])).toBe(1);
    expect(rocAuc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1])).toBe(0);
  });

  it('matches a hand-computed case', () => {
    // pairs (fraud, legit): 0.35>0.1 ✓, 0.35<0.4 ✗, 0.8>0.1 ✓, 0.8>0.4 ✓ → 3/4
    expect(rocAuc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])).toBe(0.75);
  });

  it('counts ties as one half', () => {
    expect(rocAuc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1])).toBe(0.5);
    // fraud 0.5 vs legit 0.2 → 1, vs legit 0.5 → ½; fraud 0.9 beats both → 3.5 / 4
    expect(rocAuc([0.2, 0.5, 0.5, 0.9], [0, 1, 0, 1])).toBe(0.875);
  });

  it('is NaN without both classes', () => {
    expect(rocAuc([0.1, 0.2], [1, 1])).toBeNaN();
    expect(rocAuc([0.1, 0.2], [0, 0])).toBeNaN();
  });

  it('equals the pairwise definition on any scores, ties included', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 6 }), fc.boolean()), { minLength: 2, maxLength: 40 }), (pairs) => {
        const scores = pairs.map(([s]) => s / 6);
        const labels = pairs.map(([, l]) => (l ? 1 : 0));
        if (!labels.includes(1) || !labels.includes(0)) return;
        expect(rocAuc(scores, labels)).toBeCloseTo(pairwiseAuc(scores, labels), 12);
      }),
    );
  });

  it('draws a curve from (0,0) to (1,1) with one point per distinct score', () => {
    const curve = rocCurve([0.2, 0.5, 0.5, 0.9], [0, 1, 0, 1]);
    expect(curve.fpr).toEqual([0, 0, 0.5, 1]);
    expect(curve.tpr).toEqual([0, 0.5, 1, 1]);
    expect(curve.thresholds).toEqual([Infinity, 0.9, 0.5, 0.2]);
  });
});

describe('operating-point metrics', () => {
  it('computes the confusion matrix, precision, recall, F1 and false-positive rate', () => {
    const c = confusionOf([true, true, false, false, true], [1, 0, 1, 0, 1]);
    expect(c).toEqual({ tp: 2, fp: 1, tn: 1, fn: 1 });
    const m = metricsOf(c);
    expect(m.precision).toBeCloseTo(2 / 3);
    expect(m.recall).toBeCloseTo(2 / 3);
    expect(m.f1).toBeCloseTo(2 / 3);
    expect(m.fpr).toBe(0.5);
    expect(metricsOf({ tp: 0, fp: 0, tn: 5, fn: 3 })).toMatchObject({ precision: 0, recall: 0, f1: 0 });
  });

  it('finds the best recall at a minimum precision', () => {
    // descending: 0.9 F, 0.8 L, 0.7 F, 0.6 F, 0.1 L → precision 1, ½, ⅔, ¾, ⅗
    const scores = [0.9, 0.8, 0.7, 0.6, 0.1];
    const labels = [1, 0, 1, 1, 0];
    expect(bestRecallAtPrecision(scores, labels, 0.7)).toEqual({ threshold: 0.6, precision: 0.75, recall: 1 });
    expect(bestRecallAtPrecision(scores, labels, 0.99)).toEqual({ threshold: 0.9, precision: 1, recall: 1 / 3 });
  });
});

describe('evaluate()', () => {
  const row = (amount: number, label: 0 | 1, i: number): SimulatedRow => ({
    id: `r${i}`,
    userId: `u${i}`,
    at: Date.UTC(2025, 0, 6) + i,
    counterpartyId: 'm1',
    ipCountry: 'DE',
    currency: 'EUR',
    label,
    behaviour: label ? 'velocity_burst' : 'merchant',
    split: 'heldout',
    raw: {
      count1m: 1, count1h: 1, count24h: 1, value1m: amount, value1h: amount, value24h: amount, newCounterparty: false,
      msSinceCredentialChange: null, firstAfterCredentialChange: false, historyCount: 0, historyMean: 0, historyStd: 0,
      accountAgeMs: 86_400_000, countryMismatch: false, msSinceTopup: null, topupValue1h: 0, counterpartyDistinctSenders1h: 1, amount, kind: 'payment',
    },
  });
  // a "model" that scores by amount alone
  const LOG_AMOUNT = FEATURE_NAMES.indexOf('log_amount');
  const byAmount: FraudModel = { version: 'stub', predict: (f) => f[LOG_AMOUNT] / 10, explain: () => [] };

  it('scores the model at its threshold and the rules baseline on the same rows', () => {
    const rows = [row(100, 0, 1), row(5000, 0, 2), row(90_000, 1, 3), row(200_000, 1, 4), row(300, 1, 5)];
    const flagAbove1000 = (_req: unknown, raw: { amount: number }) => raw.amount > 1000;
    const e = evaluate(byAmount, rows, flagAbove1000, { threshold: Math.log10(1 + 50_000) / 10, rulesVersion: 'r-test' });
    expect(e.confusion).toEqual({ tp: 2, fp: 0, tn: 2, fn: 1 });
    expect(e.rocAuc).toBeCloseTo(5 / 6); // 300 (fraud) loses only to 5000 (legitimate)
    expect(e.rules).toMatchObject({ confusion: { tp: 2, fp: 1, tn: 1, fn: 1 }, version: 'r-test' });
    expect(e.rules!.rocAuc).toBeCloseTo(((2 / 3) + (1 / 2)) / 2); // one operating point: (TPR + TNR) / 2
    // at precision ≥ ⅔ the model can go down to 300 and catch all three: ¾ precision
    expect(e.atRulesPrecision).toMatchObject({ recall: 1, precision: 0.75 });
  });

  it('hands the rules the request the row stands for', () => {
    const r = row(1234, 0, 7);
    expect(toFraudRequest(r)).toEqual({ requestId: 'r7', kind: 'payment', userId: 'u7', amountMinor: 1234n, currency: 'EUR', counterpartyId: 'm1', cardCountry: undefined, ipCountry: 'DE', at: new Date(r.at) });
  });
});
