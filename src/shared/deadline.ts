/**
 * `work`, or a rejection with `timeout()` once `ms` have passed without it settling. The timer
 * never outlives the race. The work is not cancelled; if it fails after the deadline, that
 * failure is handled by the race (no unhandled rejection).
 */
export function within<T>(work: Promise<T>, ms: number, timeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, fail) => (timer = setTimeout(() => fail(timeout()), ms)));
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}
