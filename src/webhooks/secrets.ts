/**
 * Signing secrets at rest: AES-256-GCM directly under the vault's active key-encryption key,
 * bound to the endpoint id (the additional data), so a sealed secret copied to another row does
 * not open. The KEK id is stored with it: after a rotation, old secrets open under their own
 * KEK, which must therefore stay in VAULT_KEKS while any endpoint still uses it.
 */
import type { Config } from '../config/index.js';
import { open, parseKeyRing, seal } from '../vault/index.js';

export interface SealedSecret {
  kekId: string;
  sealed: Buffer;
}

export interface SecretBox {
  seal(endpointId: string, secret: string): SealedSecret;
  open(endpointId: string, s: SealedSecret): string;
}

export function createSecretBox(config: Config): SecretBox {
  const ring = parseKeyRing(config.vaultKeks, config.vaultActiveKek);
  const aad = (endpointId: string) => `${endpointId}:webhook-secret`;
  return {
    seal(endpointId, secret) {
      return { kekId: ring.activeId, sealed: seal(ring.keys.get(ring.activeId)!, Buffer.from(secret, 'utf8'), aad(endpointId)) };
    },
    open(endpointId, s) {
      const key = ring.keys.get(s.kekId);
      if (!key) throw new Error(`webhooks: KEK ${s.kekId} is not configured (VAULT_KEKS)`);
      return open(key, s.sealed, aad(endpointId)).toString('utf8');
    },
  };
}
