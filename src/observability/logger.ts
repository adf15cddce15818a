/**
 * pino, with card data redacted at every depth we know of. The vault is the only place a card
 * number exists in clear, and it never logs; this is the second line of defence.
 */
import pino, { type Logger } from 'pino';

export const REDACT_PATHS = ['number', 'cvc', 'pan', '*.number', '*.cvc', '*.pan', 'req.body', 'body.number', 'body.cvc', 'req.headers.authorization', 'headers.authorization'];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino({ level, redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, destination);
}
export type { Logger };
