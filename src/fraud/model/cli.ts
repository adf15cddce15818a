/**
 * `wallet fraud simulate | train | evaluate`: the model's tooling. Each command is a function
 * (runSimulate, runTrain, runEvaluate) that tests call directly; commander only parses options.
 *
 *   wallet fraud simulate --seed 7                      → .data/fraud/dataset.jsonl
 *   wallet fraud train --out src/fraud/model/model-v2.json
 *   wallet fraud evaluate --model src/fraud/model/model-v2.json   → table + .data/fraud/evaluation.svg
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { DEFAULT_RULES, parseRules } from '../rules.js';
import { renderEvaluationSvg } from './chart.js';
import { readDataset, writeDataset, type DatasetMeta } from './dataset.js';
import { evaluate, rulesBaseline, type Evaluation } from './evaluate.js';
import { loadModel, type ModelArtifact } from './logistic.js';
import { SIMULATE_LIMITS, simulate, summarize, type DatasetSummary, type SimulateOptions } from './simulate.js';
import { train, TRAIN_DEFAULTS, TRAIN_LIMITS } from './train.js';

export const DEFAULT_DATASET_PATH = '.data/fraud/dataset.jsonl';
export const DEFAULT_TRAINED_MODEL_PATH = '.data/fraud/model.json';
export const DEFAULT_CHART_PATH = '.data/fraud/evaluation.svg';
export const SIMULATE_DEFAULTS = { users: 2000, days: 30, seed: 7, fraudShare: 0.05, heldOutShare: 0.25 } as const;

export interface FraudCliIo {
  out?: { write(s: string): unknown };
}

export async function runSimulate(opts: SimulateOptions & { out: string }, io: FraudCliIo = {}): Promise<DatasetSummary> {
  const { out: path, ...sim } = opts;
  const rows = simulate(sim);
  const summary = summarize(rows);
  const meta: DatasetMeta = { format: 'wallet-fraud-dataset', formatVersion: 1, simulate: sim, summary };
  await writeDataset(path, meta, rows);
  (io.out ?? process.stdout).write(formatSummary(summary, path));
  return summary;
}

export function formatSummary(s: DatasetSummary, path: string): string {
  const share = (fraud: number, rows: number) => `${fraud} fraud (${rows ? ((100 * fraud) / rows).toFixed(2) : '0.00'}%)`;
  const lines = [
    `${path}: ${s.rows} requests by ${s.users} users, ${share(s.fraud, s.rows)}`,
    `  train:    ${s.train.rows} requests, ${share(s.train.fraud, s.train.rows)}`,
    `  held-out: ${s.heldout.rows} requests, ${share(s.heldout.fraud, s.heldout.rows)}`,
    '  behaviour                            requests   fraud',
    ...Object.entries(s.byBehaviour)
      .sort(([, a], [, b]) => b.fraud - a.fraud || b.rows - a.rows)
      .map(([name, b]) => `  ${name.padEnd(36)} ${String(b.rows).padStart(8)} ${String(b.fraud).padStart(7)}`),
  ];
  return `${lines.join('\n')}\n`;
}

export interface TrainCliOptions {
  data: string;
  out: string;
  seed: number;
  epochs?: number;
  l2?: number;
  /** default: lr-vN from an --out named model-vN.json, else lr-<date> */
  version?: string;
  trainedAt?: Date;
}

export function versionFromPath(path: string): string | undefined {
  const m = /^model-v(\d+)\.json$/.exec(basename(path));
  return m ? `lr-v${m[1]}` : undefined;
}

export async function runTrain(opts: TrainCliOptions, io: FraudCliIo = {}): Promise<ModelArtifact> {
  const { meta, rows } = await readDataset(opts.data);
  const training = rows.filter((r) => r.split === 'train');
  const artifact = train(training, {
    seed: opts.seed,
    epochs: opts.epochs,
    l2: opts.l2,
    version: opts.version ?? versionFromPath(opts.out),
    trainedAt: opts.trainedAt,
    dataset: { file: basename(opts.data), simulate: meta?.simulate, trainRows: training.length, trainFraud: training.reduce((s, r) => s + r.label, 0) },
  });
  await mkdir(dirname(opts.out), { recursive: true });
  await writeFile(opts.out, `${JSON.stringify(artifact, null, 2)}\n`);
  const t = artifact.thresholds!;
  (io.out ?? process.stdout).write(
    `${opts.out}: model ${artifact.version} trained on ${training.length} requests (${artifact.training!.fraud} fraud), weighted loss ${Number(artifact.training!.weightedLoss).toFixed(4)}; thresholds review ≥ ${t.review.toFixed(4)}, decline ≥ ${t.decline.toFixed(4)}\n`,
  );
  return artifact;
}

export interface EvaluateCliOptions {
  data: string;
  /** default: the committed model (model-v1.json) */
  model?: string;
  /** a rules file (default: the shipped rules-v1.json) */
  rules?: string;
  chart: string;
  threshold?: number;
}

export async function runEvaluate(opts: EvaluateCliOptions, io: FraudCliIo = {}): Promise<Evaluation> {
  const model = await loadModel(opts.model);
  const rules = opts.rules ? parseRules(JSON.parse(await readFile(opts.rules, 'utf8'))) : DEFAULT_RULES;
  const { rows } = await readDataset(opts.data);
  const heldOut = rows.filter((r) => r.split === 'heldout');
  if (!heldOut.some((r) => r.label === 1) || heldOut.every((r) => r.label === 1)) throw new Error(`${opts.data}: the held-out set needs both fraud and legitimate requests`);
  const result = evaluate(model, heldOut, rulesBaseline(rules), { threshold: opts.threshold, rulesVersion: rules.version });
  await mkdir(dirname(opts.chart), { recursive: true });
  await writeFile(opts.chart, renderEvaluationSvg(result));
  (io.out ?? process.stdout).write(`${formatEvaluation(result)}chart: ${opts.chart}\n`);
  return result;
}

export function formatEvaluation(e: Evaluation): string {
  const f = (x: number) => x.toFixed(3);
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  const col = (s: string) => s.padEnd(24);
  const r = e.rules;
  const row = (name: string, model: string, rules?: string) => `${name.padEnd(18)}${col(model)}${r ? (rules ?? '') : ''}`.trimEnd();
  const lines = [
    `held-out set: ${e.rows} requests, ${e.fraud} fraud (${pct(e.fraud / e.rows)}); model ${e.modelVersion}${r?.version ? `, rules ${r.version}` : ''}`,
    '',
    row('', `model (score ≥ ${e.threshold.toFixed(3)})`, 'rules (not approve)'),
    row('precision', f(e.precision), r && f(r.precision)),
    row('recall', f(e.recall), r && f(r.recall)),
    row('F1', f(e.f1), r && f(r.f1)),
    row('false-pos. rate', pct(e.fpr), r && pct(r.fpr)),
    row('ROC AUC', f(e.rocAuc), r && `${f(r.rocAuc)} (one operating point)`),
    '',
    'confusion matrix  (rows: flagged / passed; columns: fraud / legitimate)',
    row('', 'model', 'rules'),
    row('flagged', `${e.confusion.tp} / ${e.confusion.fp}`, r && `${r.confusion.tp} / ${r.confusion.fp}`),
    row('passed', `${e.confusion.fn} / ${e.confusion.tn}`, r && `${r.confusion.fn} / ${r.confusion.tn}`),
  ];
  if (r) {
    lines.push('', e.atRulesPrecision
      ? `model at the rules' precision (≥ ${f(r.precision)}): recall ${f(e.atRulesPrecision.recall)} against the rules' ${f(r.recall)} (score ≥ ${e.atRulesPrecision.threshold.toFixed(3)})`
      : `the model never reaches the rules' precision (${f(r.precision)})`);
  }
  return `${lines.join('\n')}\n`;
}

function intOption(name: string, min: number, max: number) {
  return (raw: string): number => {
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
    return n;
  };
}

function numberOption(name: string, min: number, max: number) {
  return (raw: string): number => {
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a number from ${min} to ${max}`);
    return n;
  };
}

const SIMULATE_HELP = `
Behaviours (each request is labelled; fraud = every request the fraudster makes in an episode):
  normal  salary top-ups; merchant payments (favourites, sometimes new); P2P to a few friends;
          occasional large purchases; top-ups just before a spend (often exactly the shortfall);
          monthly rent; bill splits; shopping sprees; club dues (many users pay one organiser);
          a password change followed by a large transfer to someone new; new users; travellers,
          expats and VPN users (card country ≠ client country); power users; chunked top-ups.
  fraud   account_takeover  credential change, then quick transfers draining the balance to new recipients
          mule              top-up (often a foreign card), then ≥ 80% transferred out within the hour
          card_testing      many tiny top-ups within minutes with foreign cards
          fan_in            many users who never paid a scam recipient pay it within the hour
          velocity_burst    a hijacked session: many payments and transfers within minutes
          bust_out          an account days old: small requests, then large top-ups spent at once
Rows are split into train and held-out by user (the "split" field). The same seed gives the same file.`;

export function registerFraudCommands(program: Command, io: FraudCliIo = {}): Command {
  const fraud = program.command('fraud').description('fraud model tooling: simulate a labelled dataset, train the model, evaluate it against the rules');
  fraud
    .command('simulate')
    .description('write a labelled dataset of simulated money requests (JSON Lines)')
    .option('--users <n>', `users (20-${SIMULATE_LIMITS.maxUsers})`, intOption('--users', 20, SIMULATE_LIMITS.maxUsers), SIMULATE_DEFAULTS.users)
    .option('--days <n>', `simulated days (2-${SIMULATE_LIMITS.maxDays})`, intOption('--days', 2, SIMULATE_LIMITS.maxDays), SIMULATE_DEFAULTS.days)
    .option('--seed <n>', 'random seed', intOption('--seed', 0, 2 ** 32 - 1), SIMULATE_DEFAULTS.seed)
    .option('--fraud-share <x>', 'share of users involved in fraud, as fraudster or victim (0-0.5)', numberOption('--fraud-share', 0, 0.5), SIMULATE_DEFAULTS.fraudShare)
    .option('--held-out <x>', 'share of users whose requests are held out for evaluation (0.05-0.9)', numberOption('--held-out', 0.05, 0.9), SIMULATE_DEFAULTS.heldOutShare)
    .option('--out <file>', 'dataset file', DEFAULT_DATASET_PATH)
    .addHelpText('after', SIMULATE_HELP)
    .action(async (o: { users: number; days: number; seed: number; fraudShare: number; heldOut: number; out: string }) => {
      await runSimulate({ users: o.users, days: o.days, seed: o.seed, fraudShare: o.fraudShare, heldOutShare: o.heldOut, out: o.out }, io);
    });
  fraud
    .command('train')
    .description('train the logistic-regression model on the dataset\'s train split and write the artifact')
    .option('--data <file>', 'dataset from `wallet fraud simulate`', DEFAULT_DATASET_PATH)
    .option('--out <file>', 'artifact to write (model-vN.json names the version lr-vN)', DEFAULT_TRAINED_MODEL_PATH)
    .option('--seed <n>', 'random seed (batch order)', intOption('--seed', 0, 2 ** 32 - 1), SIMULATE_DEFAULTS.seed)
    .option('--epochs <n>', `passes over the data (1-${TRAIN_LIMITS.maxEpochs})`, intOption('--epochs', 1, TRAIN_LIMITS.maxEpochs), TRAIN_DEFAULTS.epochs)
    .option('--l2 <x>', 'L2 penalty on the weights', numberOption('--l2', 0, 10), TRAIN_DEFAULTS.l2)
    .option('--model-version <v>', 'version string stored in the artifact')
    .action(async (o: { data: string; out: string; seed: number; epochs: number; l2: number; modelVersion?: string }) => {
      await runTrain({ data: o.data, out: o.out, seed: o.seed, epochs: o.epochs, l2: o.l2, version: o.modelVersion }, io);
    });
  fraud
    .command('evaluate')
    .description('precision, recall, ROC AUC and confusion matrix of the model and of the rules alone on the held-out split; writes an SVG chart')
    .option('--data <file>', 'dataset from `wallet fraud simulate`', DEFAULT_DATASET_PATH)
    .option('--model <file>', 'model artifact (default: the committed model-v1.json)')
    .option('--rules <file>', 'rules file for the baseline (default: the shipped rules-v1.json)')
    .option('--threshold <x>', 'model score that flags (default: the artifact\'s review threshold)', numberOption('--threshold', 0, 1))
    .option('--chart <file>', 'SVG chart to write', DEFAULT_CHART_PATH)
    .action(async (o: EvaluateCliOptions) => {
      await runEvaluate(o, io);
    });
  return fraud;
}
