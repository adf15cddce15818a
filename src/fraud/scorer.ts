/**
 * The fraud scorer: velocity (Redis or memory) and the user's context (PostgreSQL, cached) are
 * fetched in parallel, turned into RawSignals, then the pure part runs: features, rules, model.
 * The decision is the stricter of the rules' outcome and the model's thresholds, except that
 * the allow list approves whatever the model says (a deny list still wins over it).
 *
 * The time budget and the fail policy belong to the caller (it knows whether the fraud role is
 * local or remote); fallbackDecision() applies the policy from the rules file.
 */
import type { Logger } from '../observability/logger.js';
import { applyRules, stricter, type Rules, type RulesStore } from './rules.js';
import type { ContextLoader, UserContext } from './context.js';
import type { VelocitySignals, VelocityStore } from './velocity.js';
import { FEATURE_NAMES, toFeatures, type FeatureVector, type FraudDecision, type FraudModel, type FraudOutcome, type FraudRequest, type RawSignals } from './types.js';

/** A request to score: the card used, when there is one, gives the card country from the context. */
export type ScoreRequest = FraudRequest & { paymentMethodId?: string };

export interface FraudScorerMetrics {
  /** one per scored request, with the time from call to decision */
  decision(decision: FraudDecision, seconds: number): void;
}

export interface FraudScorerDeps {
  velocity: VelocityStore;
  context: ContextLoader;
  rules: RulesStore;
  model: FraudModel;
  /** nothing is logged per request (the caller logs decisions with its request id); kept for the caller's wiring */
  log?: Pick<Logger, 'warn'>;
  metrics?: FraudScorerMetrics;
}

export interface FraudScorer {
  score(req: ScoreRequest): Promise<FraudDecision>;
  /** after the money moved (completed, or approved from review): updates history and counterparties */
  completed(req: FraudRequest): Promise<void>;
}

/** model reasons: the features that raised a flagged score most */
const MODEL_REASONS_TOP = 3;

/** Velocity and context → the contract's RawSignals. Pure. */
export function toRawSignals(req: FraudRequest, v: VelocitySignals, ctx: UserContext, cardCountry: string | undefined = req.cardCountry): RawSignals {
  const now = req.at.getTime();
  const changed = ctx.credentialChangedAtMs;
  return {
    count1m: v.count1m,
    count1h: v.count1h,
    count24h: v.count24h,
    value1m: v.value1m,
    value1h: v.value1h,
    value24h: v.value24h,
    newCounterparty: v.newCounterparty,
    msSinceCredentialChange: changed === null ? null : Math.max(0, now - changed),
    // no money request observed between the change and this one
    firstAfterCredentialChange: changed !== null && (v.previousRequestAtMs === null || v.previousRequestAtMs < changed),
    historyCount: v.historyCount,
    historyMean: v.historyMean,
    historyStd: v.historyStd,
    accountAgeMs: Math.max(0, now - ctx.createdAtMs),
    countryMismatch: cardCountry !== undefined && req.ipCountry !== undefined && cardCountry !== req.ipCountry,
    msSinceTopup: v.msSinceTopup,
    topupValue1h: v.topupValue1h,
    counterpartyDistinctSenders1h: v.counterpartyDistinctSenders1h,
    amount: v.amount,
    kind: v.kind,
  };
}

const modelOutcome = (rules: Rules, score: number): FraudOutcome => (score >= rules.model.decline ? 'decline' : score >= rules.model.review ? 'review' : 'approve');

/**
 * The pure part of scoring: features, rules, model, combination. `features` is scratch space
 * the caller may reuse between calls (nothing keeps it).
 */
export function decide(rules: Rules, model: FraudModel, req: FraudRequest, raw: RawSignals, features: FeatureVector = new Float64Array(FEATURE_NAMES.length)): FraudDecision {
  toFeatures(raw, features);
  const score = model.predict(features);
  // a NaN or out-of-range score would silently approve: a broken model must fail loudly (the fail policy then decides)
  if (!(score >= 0 && score <= 1)) throw new Error(`fraud model ${model.version} returned ${score}`);
  const ruled = applyRules(rules, req, raw);
  const reasons = ruled.reasons;
  let outcome = ruled.outcome;
  const allowed = outcome === 'approve' && reasons.length === 1 && reasons[0] === 'allow_user';
  const byModel = modelOutcome(rules, score);
  if (!allowed && byModel !== 'approve') {
    outcome = stricter(outcome, byModel);
    reasons.push('model_high');
    for (const e of model.explain(features, MODEL_REASONS_TOP)) if (e.contribution > 0) reasons.push(`model:${e.feature}`);
  }
  return { outcome, score, reasons, rulesVersion: rules.version, modelVersion: model.version };
}

/**
 * The fail policy (rules.policy.onFailure) when no score arrived in time or scoring failed:
 * approve below the amount, else the configured outcome.
 */
export function fallbackDecision(rules: Rules, req: FraudRequest, fallback: NonNullable<FraudDecision['fallback']>, modelVersion = 'none'): FraudDecision {
  const p = rules.policy.onFailure;
  const outcome: FraudOutcome = req.amountMinor < BigInt(p.approveBelowMinor) ? 'approve' : p.above;
  return { outcome, score: 0, reasons: [`fallback_${fallback}`], rulesVersion: rules.version, modelVersion, fallback };
}

export function createFraudScorer(deps: FraudScorerDeps): FraudScorer {
  // decide() runs synchronously between awaits, so one scratch vector serves every request
  const scratch = new Float64Array(FEATURE_NAMES.length);
  return {
    async score(req) {
      const started = performance.now();
      const [v, ctx] = await Promise.all([deps.velocity.observe(req), deps.context.load(req.userId, req.paymentMethodId)]);
      let scored: FraudRequest = req;
      if (req.cardCountry === undefined && req.paymentMethodId !== undefined) {
        const country = ctx.cardCountries.get(req.paymentMethodId);
        // the deny list's countries apply to the card found here too
        if (country) scored = { ...req, cardCountry: country };
      }
      const decision = decide(deps.rules.current(), deps.model, scored, toRawSignals(scored, v, ctx), scratch);
      deps.metrics?.decision(decision, (performance.now() - started) / 1000);
      return decision;
    },
    completed: (req) => deps.velocity.completed(req),
  };
}
