/**
 * Fraud scoring's contract (issue 7). A money request becomes a FraudRequest; the velocity store
 * and the context loader turn it into RawSignals; toFeatures() makes the model's FeatureVector;
 * rules and the model give a FraudDecision. The simulator (`wallet fraud simulate`) produces
 * RawSignals from simulated behaviour, so training and serving share toFeatures().
 */

export type FraudKind = 'topup' | 'transfer' | 'payment';
export type FraudOutcome = 'approve' | 'review' | 'decline';

export interface FraudRequest {
  /** unique per money request (the idempotency key's request id); velocity counts it once */
  requestId: string;
  kind: FraudKind;
  userId: string;
  amountMinor: bigint;
  currency: string;
  /** transfer recipient or payment merchant */
  counterpartyId?: string;
  /** the card's BIN country (ISO 3166-1 alpha-2) for top-ups and card payments, when known */
  cardCountry?: string;
  /** the client's country, from the edge (a CDN/gateway header), when known */
  ipCountry?: string;
  /** the card used (top-ups, card payments): the scorer looks up its BIN country */
  paymentMethodId?: string;
  at: Date;
}

/** What the stores know about the request and its user, the current request included. */
export interface RawSignals {
  /** the user's money requests (this one included) in the last 1 min, 1 h, 24 h */
  count1m: number;
  count1h: number;
  count24h: number;
  /** their value in minor units (Number: velocity sums stay far below 2^53) */
  value1m: number;
  value1h: number;
  value24h: number;
  /** the user never sent to this counterparty before (transfers and payments) */
  newCounterparty: boolean;
  /** ms since the last password or payment-method change; null: never changed */
  msSinceCredentialChange: number | null;
  /** no money request since that change (this is the first one after it) */
  firstAfterCredentialChange: boolean;
  /** the user's past amounts (minor units, before this request): count, mean, standard deviation */
  historyCount: number;
  historyMean: number;
  historyStd: number;
  accountAgeMs: number;
  /** card country and client country both known and different */
  countryMismatch: boolean;
  /** ms since the user's last completed top-up; null: none in 24 h */
  msSinceTopup: number | null;
  /** value of top-ups in the last 1 h, minor units */
  topupValue1h: number;
  /** distinct senders to this counterparty in the last 1 h (fan-in), this request included */
  counterpartyDistinctSenders1h: number;
  /** amount of this request, minor units */
  amount: number;
  kind: FraudKind;
}

/** The model's inputs, in a fixed order (the artifact stores the names it was trained on). */
export const FEATURE_NAMES = [
  'log_amount',
  'log_count_1m',
  'log_count_1h',
  'log_count_24h',
  'log_value_1h',
  'log_value_24h',
  'new_counterparty',
  'credential_change_24h',
  'first_after_credential_change',
  'amount_z',
  'no_history',
  'account_age_days_log',
  'country_mismatch',
  'mule_topup_then_out',
  'fan_in_log',
  'is_transfer',
  'is_payment',
] as const;
export type FeatureName = (typeof FEATURE_NAMES)[number];
export type FeatureVector = Float64Array; // FEATURE_NAMES.length entries, in that order

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

/** The one definition of the features, for training and for serving. */
export function toFeatures(r: RawSignals, out: FeatureVector = new Float64Array(FEATURE_NAMES.length)): FeatureVector {
  const z = r.historyCount >= 3 && r.historyStd > 0 ? (r.amount - r.historyMean) / r.historyStd : 0;
  const recentTopup = r.msSinceTopup !== null && r.msSinceTopup <= HOUR_MS;
  out[0] = Math.log10(1 + r.amount);
  out[1] = Math.log1p(r.count1m);
  out[2] = Math.log1p(r.count1h);
  out[3] = Math.log1p(r.count24h);
  out[4] = Math.log10(1 + r.value1h);
  out[5] = Math.log10(1 + r.value24h);
  out[6] = r.newCounterparty ? 1 : 0;
  out[7] = r.msSinceCredentialChange !== null && r.msSinceCredentialChange <= DAY_MS ? 1 : 0;
  out[8] = r.firstAfterCredentialChange ? 1 : 0;
  out[9] = Math.max(-5, Math.min(10, z));
  out[10] = r.historyCount < 3 ? 1 : 0;
  out[11] = Math.log1p(r.accountAgeMs / DAY_MS);
  out[12] = r.countryMismatch ? 1 : 0;
  // a transfer or payment out within an hour of top-ups, taking most of them
  out[13] = r.kind !== 'topup' && recentTopup && r.topupValue1h > 0 && r.amount >= 0.8 * r.topupValue1h ? 1 : 0;
  out[14] = Math.log1p(Math.max(0, r.counterpartyDistinctSenders1h - 1));
  out[15] = r.kind === 'transfer' ? 1 : 0;
  out[16] = r.kind === 'payment' ? 1 : 0;
  return out;
}

/** A trained model: a versioned artifact (src/fraud/model/*.json). */
export interface FraudModel {
  readonly version: string;
  /** probability of fraud, 0..1 */
  predict(features: FeatureVector): number;
  /** the features that raised the score most, for reason codes (name, contribution) */
  explain(features: FeatureVector, top?: number): { feature: FeatureName; contribution: number }[];
}

export interface FraudDecision {
  outcome: FraudOutcome;
  /** 0..1 */
  score: number;
  /** stable reason codes, e.g. velocity_1m, new_counterparty, model_high, deny_list, fallback_timeout */
  reasons: string[];
  rulesVersion: string;
  modelVersion: string;
  /** set when the decision came from the fail policy, not from scoring */
  fallback?: 'timeout' | 'unavailable' | 'error';
}
