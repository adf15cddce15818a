/**
 * One HTTP POST of a delivery. node:http(s) rather than fetch: its `lookup` hook lets the strict
 * policy check the address actually connected to (fetch resolves names where we cannot look).
 * Redirects are never followed (a 3xx is a failed attempt). The whole exchange, connection to
 * response headers, is bounded by the timeout; the response body is drained in the background,
 * at most RESPONSE_MAX_BYTES, and never stored.
 */
import http from 'node:http';
import https from 'node:https';
import { literalHostRefused, publicOnlyLookup } from './addresses.js';

const RESPONSE_MAX_BYTES = 64 * 1024;
const ERROR_MAX_CHARS = 300;

export type SendResult = { ok: true; statusCode: number } | { ok: false; statusCode: number | null; error: string };

export interface SendOptions {
  timeoutMs: number;
  /** false: refuse non-public addresses (strict policy) */
  allowPrivate: boolean;
}

const clip = (s: string) => (s.length > ERROR_MAX_CHARS ? `${s.slice(0, ERROR_MAX_CHARS - 1)}…` : s);

function describe(err: unknown, timeoutMs: number): string {
  const e = err as NodeJS.ErrnoException;
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `timeout: no response within ${timeoutMs} ms`;
  if (e?.code === 'EWEBHOOKADDRESS') return clip(`refused: ${e.message}`);
  return clip(`${e?.code ?? 'error'}: ${e?.message ?? String(err)}`);
}

export function postWebhook(url: string, headers: Record<string, string>, body: string, opts: SendOptions): Promise<SendResult> {
  const target = new URL(url);
  if (!opts.allowPrivate && literalHostRefused(target)) return Promise.resolve({ ok: false, statusCode: null, error: 'refused: the endpoint is not a public address' });
  const client = target.protocol === 'https:' ? https : http;
  return new Promise((resolve) => {
    let settled = false;
    const settle = (r: SendResult) => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    const req = client.request(
      target,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        signal: AbortSignal.timeout(opts.timeoutMs),
        ...(opts.allowPrivate ? {} : { lookup: publicOnlyLookup }),
      },
      (res) => {
        const statusCode = res.statusCode ?? 0;
        let received = 0;
        res.on('data', (chunk: Buffer) => {
          received += chunk.length;
          if (received > RESPONSE_MAX_BYTES) res.destroy();
        });
        res.on('error', () => undefined);
        if (statusCode >= 200 && statusCode < 300) settle({ ok: true, statusCode });
        else if (statusCode >= 300 && statusCode < 400) settle({ ok: false, statusCode, error: 'redirect not followed: answer with a 2xx from the registered URL' });
        else settle({ ok: false, statusCode, error: clip(`HTTP ${statusCode}${res.statusMessage ? ` ${res.statusMessage}` : ''}`) });
      },
    );
    req.on('error', (err) => settle({ ok: false, statusCode: null, error: describe(err, opts.timeoutMs) }));
    req.end(body);
  });
}
