/**
 * The fraud model at serving time: logistic regression over toFeatures(), from a versioned JSON
 * artifact (`wallet fraud train` writes it; model-v1.json is committed and is the default). Nothing
 * is downloaded: the default artifact is part of the source and of the build.
 *
 * predict() runs per money request at 100,000+/s per core, so it is a loop over two Float64Arrays:
 * the standardisation is folded into the weights once, at load (w/σ and b − Σ w·μ/σ).
 */
import { readFile } from 'node:fs/promises';
import { FEATURE_NAMES, type FeatureName, type FeatureVector, type FraudModel } from '../types.js';
import defaultArtifactJson from './model-v1.json' with { type: 'json' };

export interface ModelThresholds {
  /** score at or above which a request goes to review */
  review: number;
  /** score at or above which it is declined (≥ review) */
  decline: number;
}

export interface ModelArtifact {
  version: string;
  kind: 'logistic-regression';
  features: FeatureName[];
  /** standardisation learned on the training split: z = (x − mean) / std */
  mean: number[];
  std: number[];
  weights: number[];
  bias: number;
  /** operating points chosen on the training split (see train.ts) */
  thresholds?: ModelThresholds;
  trainedAt: string;
  seed: number;
  training?: Record<string, unknown>;
  dataset?: Record<string, unknown>;
}

export interface LogisticModel extends FraudModel {
  readonly artifact: ModelArtifact;
}

export class ModelArtifactError extends Error {}

const isFiniteArray = (v: unknown, n: number): v is number[] => Array.isArray(v) && v.length === n && v.every((x) => typeof x === 'number' && Number.isFinite(x));

/** Checks an artifact's shape and that it was trained on exactly the features the platform computes. */
export function parseModelArtifact(json: unknown): ModelArtifact {
  const a = json as Partial<ModelArtifact> | null;
  if (!a || typeof a !== 'object') throw new ModelArtifactError('model artifact: not an object');
  if (typeof a.version !== 'string' || !a.version) throw new ModelArtifactError('model artifact: version missing');
  if (a.kind !== 'logistic-regression') throw new ModelArtifactError(`model artifact ${a.version}: kind ${String(a.kind)} is not logistic-regression`);
  const n = FEATURE_NAMES.length;
  if (!Array.isArray(a.features) || a.features.length !== n || a.features.some((f, i) => f !== FEATURE_NAMES[i])) {
    throw new ModelArtifactError(`model artifact ${a.version}: features [${String(a.features)}] differ from FEATURE_NAMES; retrain with \`wallet fraud train\``);
  }
  for (const key of ['mean', 'std', 'weights'] as const) {
    if (!isFiniteArray(a[key], n)) throw new ModelArtifactError(`model artifact ${a.version}: ${key} must be ${n} finite numbers`);
  }
  if (a.std!.some((s) => s <= 0)) throw new ModelArtifactError(`model artifact ${a.version}: std must be positive`);
  if (typeof a.bias !== 'number' || !Number.isFinite(a.bias)) throw new ModelArtifactError(`model artifact ${a.version}: bias must be a finite number`);
  if (a.thresholds !== undefined) {
    const { review, decline } = a.thresholds;
    if (!(review >= 0 && review <= 1 && decline >= review && decline <= 1)) throw new ModelArtifactError(`model artifact ${a.version}: thresholds need 0 ≤ review ≤ decline ≤ 1`);
  }
  return a as ModelArtifact;
}

export function createLogisticModel(artifact: ModelArtifact): LogisticModel {
  const a = parseModelArtifact(artifact);
  const n = FEATURE_NAMES.length;
  const folded = new Float64Array(n);
  const weights = Float64Array.from(a.weights);
  const mean = Float64Array.from(a.mean);
  const invStd = Float64Array.from(a.std, (s) => 1 / s);
  let foldedBias = a.bias;
  for (let i = 0; i < n; i++) {
    folded[i] = weights[i] * invStd[i];
    foldedBias -= folded[i] * mean[i];
  }
  return {
    version: a.version,
    artifact: a,
    predict(features: FeatureVector): number {
      let s = foldedBias;
      for (let i = 0; i < n; i++) s += folded[i] * features[i];
      return 1 / (1 + Math.exp(-s));
    },
    explain(features: FeatureVector, top = 3) {
      const out: { feature: FeatureName; contribution: number }[] = [];
      for (let i = 0; i < n; i++) {
        const contribution = weights[i] * (features[i] - mean[i]) * invStd[i];
        if (contribution > 0) out.push({ feature: FEATURE_NAMES[i], contribution });
      }
      return out.sort((x, y) => y.contribution - x.contribution).slice(0, Math.max(0, top));
    },
  };
}

/** The committed default model (src/fraud/model/model-v1.json), bundled with the code. */
export function defaultModel(): LogisticModel {
  return createLogisticModel(defaultArtifactJson as unknown as ModelArtifact);
}

/** A model from an artifact file, or the committed default when no path is given. */
export async function loadModel(path?: string): Promise<LogisticModel> {
  if (path === undefined) return defaultModel();
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new ModelArtifactError(`cannot read model artifact ${path}: ${(err as Error).message}`);
  }
  return createLogisticModel(json as ModelArtifact);
}
