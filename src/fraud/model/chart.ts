/**
 * The evaluation chart: an SVG file with no dependencies. Left, the model's ROC curve on the
 * held-out set with the rules' operating point and the model's own; right, the same zoomed into
 * false-positive rates up to ZOOM_FPR, where a fraud system actually operates (a few percent of
 * good customers inconvenienced at most).
 */
import type { Evaluation } from './evaluate.js';

const ZOOM_FPR = 0.1;
const PLOT = 360;
const MARGIN = { left: 60, top: 60, gap: 90 };
const WIDTH = MARGIN.left + 2 * PLOT + MARGIN.gap + 30;
const HEIGHT = MARGIN.top + PLOT + 120;
/** points closer than this (in plot units, 0..1 on both axes) to the last one drawn are skipped */
const MIN_STEP = 0.002;

const esc = (s: string) => s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
const fmt = (x: number, digits = 3) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');
const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

interface Panel {
  x0: number;
  maxFpr: number;
  title: string;
}

function panel(e: Evaluation, p: Panel): string {
  const sx = (fpr: number) => p.x0 + (Math.min(fpr, p.maxFpr) / p.maxFpr) * PLOT;
  const sy = (tpr: number) => MARGIN.top + PLOT - tpr * PLOT;
  const parts: string[] = [];
  parts.push(`<text x="${p.x0 + PLOT / 2}" y="${MARGIN.top - 14}" text-anchor="middle" font-size="14" font-weight="bold">${esc(p.title)}</text>`);
  parts.push(`<rect x="${p.x0}" y="${MARGIN.top}" width="${PLOT}" height="${PLOT}" fill="none" stroke="#333"/>`);
  for (let i = 0; i <= 5; i++) {
    const f = i / 5;
    const x = p.x0 + f * PLOT;
    const y = MARGIN.top + PLOT - f * PLOT;
    parts.push(`<line x1="${x}" y1="${MARGIN.top}" x2="${x}" y2="${MARGIN.top + PLOT}" stroke="#eee"/><line x1="${p.x0}" y1="${y}" x2="${p.x0 + PLOT}" y2="${y}" stroke="#eee"/>`);
    parts.push(`<text x="${x}" y="${MARGIN.top + PLOT + 16}" text-anchor="middle" font-size="11">${fmt(f * p.maxFpr, 2)}</text>`);
    parts.push(`<text x="${p.x0 - 6}" y="${y + 4}" text-anchor="end" font-size="11">${fmt(f, 1)}</text>`);
  }
  parts.push(`<text x="${p.x0 + PLOT / 2}" y="${MARGIN.top + PLOT + 36}" text-anchor="middle" font-size="12">false-positive rate (legitimate requests flagged)</text>`);
  parts.push(`<text x="${p.x0 - 42}" y="${MARGIN.top + PLOT / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 ${p.x0 - 42} ${MARGIN.top + PLOT / 2})">true-positive rate (recall)</text>`);
  // chance line
  parts.push(`<line x1="${sx(0)}" y1="${sy(0)}" x2="${sx(p.maxFpr)}" y2="${sy(p.maxFpr)}" stroke="#999" stroke-dasharray="4 4"/>`);
  const points: string[] = [];
  let lastX = -1;
  let lastY = -1;
  const { fpr, tpr } = e.roc;
  for (let i = 0; i < fpr.length; i++) {
    let x = fpr[i];
    let y = tpr[i];
    const beyond = x > p.maxFpr;
    if (beyond) {
      // end the curve where it crosses the panel's edge (ROC points are joined by straight lines)
      const t = (p.maxFpr - fpr[i - 1]) / (fpr[i] - fpr[i - 1]);
      x = p.maxFpr;
      y = tpr[i - 1] + t * (tpr[i] - tpr[i - 1]);
    }
    const last = beyond || i === fpr.length - 1;
    if (!last && Math.abs(x / p.maxFpr - lastX) < MIN_STEP && Math.abs(y - lastY) < MIN_STEP) continue;
    points.push(`${sx(x).toFixed(1)},${sy(y).toFixed(1)}`);
    lastX = x / p.maxFpr;
    lastY = y;
    if (beyond) break;
  }
  parts.push(`<polyline points="${points.join(' ')}" fill="none" stroke="#1f6feb" stroke-width="2"/>`);
  parts.push(`<rect x="${sx(e.fpr) - 5}" y="${sy(e.recall) - 5}" width="10" height="10" fill="#1f6feb" stroke="#fff"><title>model at ${fmt(e.threshold)}: precision ${fmt(e.precision)}, recall ${fmt(e.recall)}</title></rect>`);
  if (e.rules && e.rules.fpr <= p.maxFpr) {
    parts.push(`<circle cx="${sx(e.rules.fpr)}" cy="${sy(e.rules.recall)}" r="6" fill="#d73a49" stroke="#fff"><title>rules: precision ${fmt(e.rules.precision)}, recall ${fmt(e.rules.recall)}</title></circle>`);
  }
  return parts.join('\n');
}

function legend(e: Evaluation): string {
  const y = MARGIN.top + PLOT + 62;
  const lines = [
    `<polyline points="${MARGIN.left},${y} ${MARGIN.left + 24},${y}" stroke="#1f6feb" stroke-width="2"/>`,
    `<text x="${MARGIN.left + 32}" y="${y + 4}" font-size="12">model ${esc(e.modelVersion)}: ROC AUC ${fmt(e.rocAuc)}; ■ at score ≥ ${fmt(e.threshold)}: precision ${fmt(e.precision)}, recall ${fmt(e.recall)}, F1 ${fmt(e.f1)}, FPR ${pct(e.fpr)}</text>`,
  ];
  if (e.rules) {
    lines.push(
      `<circle cx="${MARGIN.left + 12}" cy="${y + 22}" r="6" fill="#d73a49"/>`,
      `<text x="${MARGIN.left + 32}" y="${y + 26}" font-size="12">rules${e.rules.version ? ` ${esc(e.rules.version)}` : ''} alone (flag = not approve): precision ${fmt(e.rules.precision)}, recall ${fmt(e.rules.recall)}, F1 ${fmt(e.rules.f1)}, FPR ${pct(e.rules.fpr)}</text>`,
    );
  }
  lines.push(`<text x="${MARGIN.left}" y="${y + 48}" font-size="11" fill="#555">held-out set: ${e.rows} requests, ${e.fraud} fraud</text>`);
  return lines.join('\n');
}

export function renderEvaluationSvg(e: Evaluation): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    panel(e, { x0: MARGIN.left, maxFpr: 1, title: 'ROC, held-out set' }),
    panel(e, { x0: MARGIN.left + PLOT + MARGIN.gap, maxFpr: ZOOM_FPR, title: `ROC, false-positive rate ≤ ${ZOOM_FPR}` }),
    legend(e),
    '</svg>',
    '',
  ].join('\n');
}
