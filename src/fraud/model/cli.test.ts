import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readDataset } from './dataset.js';
import { registerFraudCommands, runEvaluate, runSimulate, runTrain, versionFromPath } from './cli.js';

const capture = () => {
  let text = '';
  return { out: { write: (s: string) => (text += s) }, text: () => text };
};

describe('wallet fraud simulate → train → evaluate', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fraud-cli-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes a dataset, trains a versioned artifact on it, and shows the model beating the rules', async () => {
    const data = join(dir, 'dataset.jsonl');
    const sim = capture();
    const summary = await runSimulate({ users: 500, days: 14, seed: 7, fraudShare: 0.08, heldOutShare: 0.3, out: data }, sim);
    expect(sim.text()).toContain(`${summary.rows} requests by ${summary.users} users`);
    const { meta, rows } = await readDataset(data);
    expect(rows).toHaveLength(summary.rows);
    expect(meta).toMatchObject({ format: 'wallet-fraud-dataset', simulate: { seed: 7, users: 500 }, summary: { fraud: summary.fraud } });

    const modelPath = join(dir, 'model-v3.json');
    const tr = capture();
    const artifact = await runTrain({ data, out: modelPath, seed: 7, epochs: 20 }, tr);
    expect(artifact.version).toBe('lr-v3');
    expect(JSON.parse(await readFile(modelPath, 'utf8'))).toEqual(artifact);
    expect(artifact.dataset).toMatchObject({ file: 'dataset.jsonl', simulate: { seed: 7 }, trainRows: summary.train.rows });
    expect(tr.text()).toMatch(/model lr-v3 trained on \d+ requests/);

    const chart = join(dir, 'charts', 'evaluation.svg');
    const ev = capture();
    const e = await runEvaluate({ data, model: modelPath, chart }, ev);
    expect(e.rows).toBe(summary.heldout.rows);
    for (const words of ['precision', 'recall', 'ROC AUC', 'confusion matrix', 'flagged', 'rules-v1']) expect(ev.text()).toContain(words);
    expect(e.f1).toBeGreaterThan(e.rules!.f1);
    expect(e.atRulesPrecision!.recall).toBeGreaterThan(e.rules!.recall);
    const svg = await readFile(chart, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('<polyline');
    expect(svg).toContain('lr-v3');
  });

  it('evaluates the committed model when no --model is given', async () => {
    const data = join(dir, 'small.jsonl');
    await runSimulate({ users: 200, days: 7, seed: 2, fraudShare: 0.1, out: data }, capture());
    const e = await runEvaluate({ data, chart: join(dir, 'small.svg') }, capture());
    expect(e.modelVersion).toBe('lr-v1');
  });

  it('runs through commander with validated options', async () => {
    const out = capture();
    const program = new Command('wallet').exitOverride();
    registerFraudCommands(program, out);
    const fraud = program.commands.find((c) => c.name() === 'fraud')!;
    fraud.commands.forEach((c) => c.exitOverride().configureOutput({ writeErr: () => undefined }));
    const data = join(dir, 'via-commander.jsonl');
    await program.parseAsync(['fraud', 'simulate', '--users', '40', '--days', '3', '--seed', '1', '--out', data], { from: 'user' });
    expect(out.text()).toMatch(/via-commander.jsonl: \d+ requests by \d+ users/);
    await expect(program.parseAsync(['fraud', 'simulate', '--users', '5'], { from: 'user' })).rejects.toThrow(/--users must be an integer/);
    await expect(program.parseAsync(['fraud', 'simulate', '--fraud-share', '2'], { from: 'user' })).rejects.toThrow(/--fraud-share/);
  });

  it('documents the simulated behaviours in `wallet fraud simulate --help`', () => {
    const program = new Command('wallet');
    registerFraudCommands(program);
    const simulate = program.commands.find((c) => c.name() === 'fraud')!.commands.find((c) => c.name() === 'simulate')!;
    let help = '';
    simulate.configureOutput({ writeOut: (s) => (help += s) });
    simulate.outputHelp();
    for (const b of ['account_takeover', 'mule', 'card_testing', 'fan_in', 'velocity_burst', 'bust_out', 'salary top-ups', 'held-out']) expect(help).toContain(b);
  });

  it('names the version after a model-vN.json file', () => {
    expect(versionFromPath('src/fraud/model/model-v12.json')).toBe('lr-v12');
    expect(versionFromPath('model.json')).toBeUndefined();
  });

  it('rejects a file that is not a dataset', async () => {
    const bad = join(dir, 'bad.jsonl');
    await writeFile(bad, '{"hello": 1}\n');
    await expect(readDataset(bad)).rejects.toThrow(/not a dataset row/);
  });
});
