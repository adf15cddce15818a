import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, DEV_SECRETS, loadConfig } from './index.js';

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
