import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { CONFIG_VARIABLES, ConfigError, DEV_SECRETS, loadConfig } from './index.js';

const secrets = {
  JWT_SECRET: 'a-production-jwt-secret-of-sufficient-length-1234',
  RECEIPT_SIGNING_KEY: 'a-production-receipt-key-of-sufficient-length-1234',
  VAULT_KEKS: `k1:${Buffer.alloc(32, 7).toString('base64')}`,
};

describe('configuration', () => {
  it('has working defaults for a laptop', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ port: 8080, nodeEnv: 'development', dataDir: './.data', roles: ['api', 'relay', 'fraud', 'notify', 'workers', 'maintenance', 'gateway'] });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('reads and converts environment variables', () => {
    const c = loadConfig({ PORT: '9090', WALLET_ROLES: 'api, maintenance', LEDGER_BATCH_MAX_SIZE: '100' });
    expect(c.port).toBe(9090);
    expect(c.roles).toEqual(['api', 'maintenance']);
    expect(c.ledgerBatchMaxSize).toBe(100);
  });

  it('names the variable that is wrong', () => {
    expect(() => loadConfig({ PORT: 'eighty' })).toThrow(/^PORT: /);
    expect(() => loadConfig({ WALLET_ROLES: 'api,bogus' })).toThrow(/WALLET_ROLES/);
    expect(() => loadConfig({ DATABASE_URL: 'mysql://x' })).toThrow(/DATABASE_URL/);
    expect(() => loadConfig({ LEDGER_QUEUE_MAX: '0' })).toThrow(ConfigError);
  });

  it('reads an optional JSON file named by WALLET_CONFIG, with the environment taking precedence', () => {
    const dir = mkdtempSync(join(tmpdir(), 'wallet-config-'));
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ port: 7000, ledgerBatchWindowMs: 5 }));
    expect(loadConfig({ WALLET_CONFIG: file })).toMatchObject({ port: 7000, ledgerBatchWindowMs: 5 });
    expect(loadConfig({ WALLET_CONFIG: file, PORT: '7001' }).port).toBe(7001);
    writeFileSync(file, JSON.stringify({ nope: 1 }));
    expect(() => loadConfig({ WALLET_CONFIG: file })).toThrow(/unknown key "nope"/);
  });

  it('refuses to start in production with any development secret', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/JWT_SECRET/);
    expect(() => loadConfig({ NODE_ENV: 'production', ...secrets, RECEIPT_SIGNING_KEY: DEV_SECRETS.receiptSigningKey })).toThrow(/RECEIPT_SIGNING_KEY/);
    expect(() => loadConfig({ NODE_ENV: 'production', ...secrets, VAULT_KEKS: `${secrets.VAULT_KEKS},${DEV_SECRETS.vaultKeks}` })).toThrow(/VAULT_KEKS/);
    const c = loadConfig({ NODE_ENV: 'production', ...secrets });
    expect(c.nodeEnv).toBe('production');
  });
});

describe('configuration under random environments', () => {
  it('either loads, frozen, or refuses with a ConfigError that names the variable', () => {
    const names = CONFIG_VARIABLES.filter((n) => n !== 'WALLET_CONFIG');
    const value = fc.oneof(
      fc.constantFrom('', ' ', '0', '-1', '1', '1.5', '1e3', '99999999999999999999', 'true', 'false', 'yes', 'null', 'api', 'api,bogus', ',', 'postgres://x', 'redis://', 'http://', 'nats://a:b', 'production', 'test', 'debug', 'k1:AAAA', '\u0000'),
      fc.integer().map(String),
      fc.string({ maxLength: 30 }),
    );
    const known = new Set(names);
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...names), value, { maxKeys: 6 }), (env) => {
        let config;
        try {
          config = loadConfig(env);
        } catch (err) {
          expect(err, String(err)).toBeInstanceOf(ConfigError);
          const named = /^([A-Z0-9_]+): /.exec((err as Error).message)?.[1];
          expect(named && known.has(named), (err as Error).message).toBe(true);
          return;
        }
        expect(Object.isFrozen(config)).toBe(true);
      }),
      { numRuns: 2_000 },
    );
  });
});
