/**
 * NATS JetStream for tests: the machine's server (TEST_NATS_URL, default 127.0.0.1:4222), a
 * namespace of its own per test file (streams and subjects carry it), removed afterwards.
 * Tests that use it fail, never skip, when the server does not answer.
 */
import { randomBytes } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { jetStreamNames } from '../events/jetstream.js';

export const TEST_NATS_URL = process.env.TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

export function natsNamespace(): string {
  return `t${randomBytes(4).toString('hex')}`;
}

/** env for createTestPlatform / loadConfig: JetStream bus in a fresh namespace */
export function natsEnv(namespace = natsNamespace()): Record<string, string> {
  return { NATS_URL: TEST_NATS_URL, BUS_NAMESPACE: namespace };
}

export async function assertNatsAnswers(): Promise<void> {
  try {
    const nc = await connect({ servers: TEST_NATS_URL, timeout: 3000 });
    await jetstreamManager(nc);
    await nc.close();
  } catch (err) {
    throw new Error(`these tests need NATS with JetStream at ${TEST_NATS_URL}: ${(err as Error).message}`);
  }
}

/** deletes every stream of a namespace */
export async function dropNamespace(namespace: string): Promise<void> {
  const prefix = jetStreamNames(namespace).stream('');
  const nc = await connect({ servers: TEST_NATS_URL });
  try {
    const jsm = await jetstreamManager(nc);
    for await (const s of jsm.streams.list()) if (s.config.name.startsWith(prefix)) await jsm.streams.delete(s.config.name);
  } finally {
    await nc.close();
  }
}

/** The env of a platform on one of the two buses: nothing for the in-process one; for
 *  JetStream, checks the server answers and returns a fresh namespace (drop it afterwards). */
export async function busEnv(kind: 'memory' | 'jetstream'): Promise<{ env: Record<string, string>; namespace: string }> {
  if (kind === 'memory') return { env: {}, namespace: '' };
  await assertNatsAnswers();
  const namespace = natsNamespace();
  return { env: natsEnv(namespace), namespace };
}
