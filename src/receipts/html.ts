/**
 * The HTML receipt: one self-contained page (inline CSS, no scripts, no external assets), every
 * value escaped. The page is printable and readable without the API's vocabulary.
 */
import { MINOR_UNITS } from '../shared/currencies.js';
import type { Receipt } from './service.js';

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** 123456n USD -> "1,234.56 USD": exact, from the integer minor units (no floats). */
export function formatAmount(amountMinor: bigint, currency: string): string {
  const exponent = MINOR_UNITS[currency] ?? 2;
  const digits = amountMinor.toString().padStart(exponent + 1, '0');
  const whole = digits.slice(0, digits.length - exponent).replace(/\B(?=(\d{3})+$)/g, ',');
  const fraction = exponent > 0 ? `.${digits.slice(digits.length - exponent)}` : '';
  return `${whole}${fraction} ${currency}`;
}

const TYPE_LABELS: Record<Receipt['type'], string> = { transfer: 'Transfer', topup: 'Top-up', payment: 'Payment', refund: 'Refund' };
const STATUS_LABELS: Record<Receipt['status'], string> = { pending: 'Pending', completed: 'Completed', voided: 'Voided' };

function title(r: Receipt): string {
  const incoming = r.direction === 'credit';
  switch (r.type) {
    case 'transfer':
      return incoming ? 'Money received' : 'Money sent';
    case 'topup':
      return 'Wallet top-up';
    case 'payment':
      return incoming ? 'Payment received' : 'Payment';
    case 'refund':
      return incoming ? 'Refund received' : 'Refund issued';
  }
}

const utc = (d: Date) => `${d.toISOString().slice(0, 19).replace('T', ' ')} UTC`;

export function renderReceiptHtml(r: Receipt): string {
  const rows: [string, string][] = [
    ['Transaction', r.id],
    ['Type', TYPE_LABELS[r.type]],
    ['Direction', r.direction === 'credit' ? 'Credit (money in)' : 'Debit (money out)'],
    ['Status', STATUS_LABELS[r.status]],
    ...(r.counterparty !== undefined ? [[r.direction === 'credit' ? 'From' : 'To', r.counterparty] as [string, string]] : []),
    ...(r.note !== undefined ? [['Note', r.note] as [string, string]] : []),
    ['Date', utc(r.createdAt)],
    ['Receipt issued', utc(r.issuedAt)],
    ['Link valid until', utc(r.expiresAt)],
  ];
  const sign = r.direction === 'credit' ? '+' : '\u2212';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<meta name="referrer" content="no-referrer">
<title>Receipt ${escapeHtml(r.id)}</title>
<style>
body{margin:0;padding:2rem 1rem;background:#f4f5f7;color:#1d2433;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:32rem;margin:0 auto;background:#fff;border-radius:12px;padding:2rem;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h1{margin:0 0 .25rem;font-size:1.1rem;font-weight:600;color:#5a6275}
.amount{margin:0 0 1.5rem;font-size:2rem;font-weight:700;font-variant-numeric:tabular-nums}
.credit{color:#137333}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.5rem 1.5rem;margin:0}
dt{color:#5a6275}
dd{margin:0;overflow-wrap:anywhere}
footer{margin-top:1.5rem;padding-top:1rem;border-top:1px solid #e3e5ea;font-size:.8rem;color:#5a6275;overflow-wrap:anywhere}
@media print{body{background:#fff;padding:0}main{box-shadow:none}}
</style>
</head>
<body>
<main>
<h1>${escapeHtml(title(r))}</h1>
<p class="amount${r.direction === 'credit' ? ' credit' : ''}">${sign}${escapeHtml(formatAmount(r.amountMinor, r.currency))}</p>
<dl>
${rows.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join('\n')}
</dl>
<footer>Shareable link: <a href="${escapeHtml(r.receiptUrl)}">${escapeHtml(r.receiptUrl)}</a></footer>
</main>
</body>
</html>
`;
}
