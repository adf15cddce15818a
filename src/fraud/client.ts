/**
 * What the money services call: `check(req)` never throws and never waits past the scoring
 * budget. The scorer runs in this process (the default) or in the fraud role's process
 * (FRAUD_URL: the same scorer behind POST /internal/fraud/score, see remote.ts). When the
 * scorer is late, down or failing, the fail policy of the rules file decides (approve below an
 * amount, review or decline above it), and the fallback is counted (fraud_fallbacks_total; the
 * FraudScoringFallback alert fires on it).
 */
import client from 'prom-client';
import type { Logger } from '../observability/logger.js';
import type { FraudDecision, FraudRequest } from './types.js';

export interface FailPolicy {
  budgetMs: number;
  /** below this amount (minor units), approve */
  approveBelowMinor: bigint;
  /** at or above it */
  above: 'review' | 'decline';
  rulesVersion: string;
}

/** A scorer, local or remote. */
export interface Scorer {
  score(req: FraudRequest): Promise<FraudDecision>;
  /** after the money moved (history, counterparties, top-ups) */
  completed(req: FraudRequest): Promise<void>;
  policy(): FailPolicy;
  close?(): Promise<void>;
}

export interface FraudClient {
  check(req: FraudRequest): Promise<FraudDecision & { latencyMs: number }>;
  /** fire and forget: never delays or fails the caller */
  completed(req: FraudRequest): void;
  close(): Promise<void>;
}

export interface FraudMetrics {
  decision(outcome: string, reasons: readonly string[], seconds: number): void;
  fallback(reason: string): void;
}

export function fraudMetrics(registry: client.Registry): FraudMetrics {
  const get = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
  const decisions = get('fraud_decisions_total', () => new client.Counter({ name: 'fraud_decisions_total', help: 'Fraud decisions by outcome', labelNames: ['outcome'], registers: [registry] }));
  const reasons = get('fraud_reasons_total', () => new client.Counter({ name: 'fraud_reasons_total', help: 'Reason codes of review and decline decisions', labelNames: ['outcome', 'reason'], registers: [registry] }));
  const latency = get('fraud_scoring_duration_seconds', () => new client.Histogram({ name: 'fraud_scoring_duration_seconds', help: 'Time to a fraud decision, as the money service waited for it', buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05], registers: [registry] }));
  const fallbacks = get('fraud_fallbacks_total', () => new client.Counter({ name: 'fraud_fallbacks_total', help: 'Decisions taken by the fail policy (timeout, unavailable, error)', labelNames: ['reason'], registers: [registry] }));
  return {
    decision(outcome, rs, seconds) {
      decisions.inc({ outcome });
      latency.observe(seconds);
      if (outcome !== 'approve') for (const r of rs) reasons.inc({ outcome, reason: r.startsWith('model:') ? 'model' : r });
    },
    fallback: (reason) => fallbacks.inc({ reason }),
  };
}

class Late extends Error {}
/** one instance for every late check: an Error per timeout (with its captured stack) was garbage exactly when the process was already behind */
const LATE = new Late('fraud scoring over its budget');

export function createFraudClient(scorer: Scorer, deps: { log: Logger; metrics: FraudMetrics }): FraudClient {
  const fallback = (req: FraudRequest, why: 'timeout' | 'unavailable' | 'error'): FraudDecision => {
    const policy = scorer.policy();
    const outcome = req.amountMinor < policy.approveBelowMinor ? 'approve' : policy.above;
    deps.metrics.fallback(why);
    return { outcome, score: 0, reasons: [`fallback_${why}`], rulesVersion: policy.rulesVersion, modelVersion: 'none', fallback: why };
  };
  return {
    async check(req) {
      const started = performance.now();
      const { budgetMs } = scorer.policy();
      let timer: ReturnType<typeof setTimeout> | undefined;
      let decision: FraudDecision;
      try {
        decision = await Promise.race([
          scorer.score(req),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(LATE), budgetMs);
          }),
        ]);
      } catch (err) {
        const why = err === LATE ? 'timeout' : (err as { code?: string }).code === 'ECONNREFUSED' || (err as Error).name === 'FraudUnavailable' ? 'unavailable' : 'error';
        if (why !== 'timeout') deps.log.warn({ err, requestId: req.requestId }, 'fraud scoring failed; the fail policy decides');
        decision = fallback(req, why);
      } finally {
        clearTimeout(timer);
      }
      const seconds = (performance.now() - started) / 1000;
      deps.metrics.decision(decision.outcome, decision.reasons, seconds);
      return { ...decision, latencyMs: seconds * 1000 };
    },
    completed(req) {
      scorer.completed(req).catch((err) => deps.log.warn({ err, requestId: req.requestId }, 'fraud: recording a completed request failed'));
    },
    async close() {
      await scorer.close?.();
    },
  };
}
