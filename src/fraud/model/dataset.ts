/**
 * The dataset file: JSON Lines. The first line describes the dataset ({"dataset": {...}}: how it
 * was simulated and its summary); every other line is one SimulatedRow. Streamed both ways, so a
 * large dataset never becomes one string.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { SIMULATE_LIMITS, type DatasetSummary, type SimulatedRow, type SimulateOptions } from './simulate.js';

export interface DatasetMeta {
  format: 'wallet-fraud-dataset';
  formatVersion: 1;
  simulate: SimulateOptions;
  summary: DatasetSummary;
}

const WRITE_CHUNK_ROWS = 2000;
const KINDS = new Set(['topup', 'transfer', 'payment']);

export async function writeDataset(path: string, meta: DatasetMeta, rows: readonly SimulatedRow[]): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const out = createWriteStream(path);
  const write = async (s: string) => {
    if (!out.write(s)) await once(out, 'drain');
  };
  await write(`${JSON.stringify({ dataset: meta })}\n`);
  for (let i = 0; i < rows.length; i += WRITE_CHUNK_ROWS) {
    await write(rows.slice(i, i + WRITE_CHUNK_ROWS).map((r) => `${JSON.stringify(r)}\n`).join(''));
  }
  out.end();
  await once(out, 'finish');
}

function checkRow(r: SimulatedRow, line: number, path: string): SimulatedRow {
  const ok =
    r && typeof r === 'object' && typeof r.userId === 'string' && typeof r.at === 'number' && (r.label === 0 || r.label === 1) &&
    (r.split === 'train' || r.split === 'heldout') && r.raw && typeof r.raw === 'object' && KINDS.has(r.raw.kind) && Number.isFinite(r.raw.amount);
  if (!ok) throw new Error(`${path}:${line}: not a dataset row (wallet fraud simulate writes them)`);
  return r;
}

export async function readDataset(path: string): Promise<{ meta?: DatasetMeta; rows: SimulatedRow[] }> {
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
  const rows: SimulatedRow[] = [];
  let meta: DatasetMeta | undefined;
  let n = 0;
  for await (const line of lines) {
    n++;
    if (!line.trim()) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      throw new Error(`${path}:${n}: not JSON`);
    }
    if (n === 1 && parsed && typeof parsed === 'object' && 'dataset' in parsed) {
      meta = (parsed as { dataset: DatasetMeta }).dataset;
      continue;
    }
    if (rows.length >= SIMULATE_LIMITS.maxRows) throw new Error(`${path}: more than ${SIMULATE_LIMITS.maxRows} rows`);
    rows.push(checkRow(parsed as SimulatedRow, n, path));
  }
  return { meta, rows };
}
