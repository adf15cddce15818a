/**
 * A process that closes its platform must be able to exit: nothing the platform opened may stay
 * open. A Redis client left connected (the fraud velocity store's, once) kept `npm run
 * bench:notify` alive after its results until a timeout killed it.
 */
import { describe, expect, test } from 'vitest';
import { createTestDatabase, createTestPlatform, until } from './test-support/platform.js';
import { createPlatform } from './platform.js';
import { loadConfig } from './config/index.js';
import { createLogger } from './observability/logger.js';

const REDIS_PORT = 6379;
/** open sockets of this process to Redis */
const redisSockets = (): number =>
  (process as unknown as { _getActiveHandles(): { remotePort?: number; destroyed?: boolean }[] })._getActiveHandles().filter((h) => h?.remotePort === REDIS_PORT && !h.destroyed).length;

describe('closing the platform', () => {
  test('closes every Redis connection it opened', async () => {
    expect(redisSockets()).toBe(0);
    const t = await createTestPlatform({ REDIS_URL: `redis://127.0.0.1:${REDIS_PORT}` });
    // the cache's and the fraud velocity store's clients
    await until(() => redisSockets() >= 2, 5000, 'the platform connected to Redis');
    await t.close();
    await until(() => redisSockets() === 0, 5000, () => `Redis sockets closed (${redisSockets()} open)`);
  });
});

describe('a platform whose event bus cannot start', () => {
  test('lives on until someone asks ready(), which reports the failure (the CLI never asks)', async () => {
    const unhandled: unknown[] = [];
    const listener = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', listener);
    const db = await createTestDatabase();
    try {
      const p = createPlatform(loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', NATS_URL: 'nats://127.0.0.1:1' }), { databaseUrl: db.url, log: createLogger('silent') });
      await new Promise((r) => setTimeout(r, 500)); // the connection is refused within milliseconds
      expect(unhandled).toEqual([]);
      await expect(p.ready()).rejects.toThrow(/connection refused|CONNECTION_REFUSED/i);
      await p.close();
    } finally {
      process.off('unhandledRejection', listener);
      await db.drop();
    }
  });
});
