/**
 * RFC 9457 problem details with the stable codes of API.md. One map from code to status and
 * title; services return codes, the HTTP layer turns them into problems.
 */
export const PROBLEMS = {
  validation_failed: [400, 'The request is not valid'],
  idempotency_key_required: [400, 'An Idempotency-Key header is required'],
  unauthorized: [401, 'Authentication is required'],
  forbidden: [403, 'Not allowed'],
  not_found: [404, 'Not found'],
  conflict: [409, 'Conflict'],
  insufficient_funds: [422, 'Insufficient funds'],
  idempotency_key_reused: [422, 'Idempotency key reused with a different request'],
  currency_mismatch: [422, 'Currency mismatch'],
  limit_exceeded: [422, 'Limit exceeded'],
  declined: [422, 'Declined'],
  fraud_declined: [422, 'Declined by fraud screening'],
  card_invalid: [422, 'The card is not valid'],
  payload_too_large: [413, 'The request body is too large'],
  unsupported_media_type: [415, 'Unsupported media type'],
  rate_limited: [429, 'Too many requests'],
  internal: [500, 'Internal error'],
  unavailable: [503, 'Temporarily unavailable'],
} as const satisfies Record<string, readonly [number, string]>;

export type ProblemCode = keyof typeof PROBLEMS;

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ProblemCode;
  [extra: string]: unknown;
}

export function problem(code: ProblemCode, detail?: string, extra: Record<string, unknown> = {}): Problem {
  const [status, title] = PROBLEMS[code];
  return { type: `https://wallet.dev/problems/${code.replace(/_/g, '-')}`, title, status, detail: detail ?? title, code, ...extra };
}

/** An expected failure carried as an exception through Fastify (services return values; routes throw this). */
export class ProblemError extends Error {
  readonly problem: Problem;
  readonly headers: Record<string, string>;
  constructor(code: ProblemCode, detail?: string, opts: { headers?: Record<string, string>; extra?: Record<string, unknown> } = {}) {
    super(detail ?? code);
    this.problem = problem(code, detail, opts.extra);
    this.headers = opts.headers ?? {};
  }
}
