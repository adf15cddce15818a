/** What console.error printed while fn ran (libraries such as ioredis write there, not to our logger). */
export async function consoleErrorsDuring(fn: () => Promise<void>): Promise<string[]> {
  const written: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => void written.push(args.map(String).join(' '));
  try {
    await fn();
  } finally {
    console.error = original;
  }
  return written;
}
