/** Which errors mean the connection to PostgreSQL is gone: the engine retries them, the API answers 503 for them. */
import { describe, expect, it } from 'vitest';
import { isDatabaseUnavailable } from '../app.js';
import { isConnectionLoss } from './index.js';

const failure = (code: string, field: 'code' | 'errno' = 'code') => Object.assign(new Error(`failed: ${code}`), { [field]: code });

describe('connection loss', () => {
  it.each(['EPIPE', 'ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'CONNECT_TIMEOUT', 'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED'])('%s is a lost connection, answered 503', (code) => {
    expect(isConnectionLoss(failure(code))).toBe(true);
    expect(isDatabaseUnavailable(failure(code))).toBe(true);
  });

  it('reads a socket error from errno when the code is not set', () => {
    expect(isConnectionLoss(failure('ECONNRESET', 'errno'))).toBe(true);
    expect(isDatabaseUnavailable(failure('ECONNRESET', 'errno'))).toBe(true);
  });

  it('is not a constraint violation or a syntax error', () => {
    for (const code of ['23505', '23514', '42601', 'ENOENT']) expect(isConnectionLoss(failure(code))).toBe(false);
    expect(isConnectionLoss(new Error('no code'))).toBe(false);
  });
});
