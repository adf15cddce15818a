/**
 * The card vault: envelope encryption with AES-256-GCM. Each card gets its own random data key
 * (DEK); the card number is encrypted with the DEK, and the DEK is wrapped by a key-encryption
 * key (KEK) named by id. Rotating the KEK re-wraps every DEK without touching card ciphertexts.
 * The CVC is never stored. Clear card numbers exist only inside these functions and the
 * payment-network adapter; nothing here logs.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Db, Queryable, Sql } from '../db/index.js';
import { newId } from '../shared/ids.js';

export interface KeyRing {
  activeId: string;
  keys: Map<string, Buffer>;
}

/** Parses VAULT_KEKS ("id:base64,id2:base64"); the active KEK is VAULT_ACTIVE_KEK or the last one. */
export function parseKeyRing(spec: string, activeId?: string): KeyRing {
  const keys = new Map<string, Buffer>();
  for (const part of spec.split(',')) {
    const [id, b64] = part.split(':') as [string, string];
    const key = Buffer.from(b64, 'base64');
    if (key.length !== 32) throw new Error(`VAULT_KEKS: key ${id} must be 32 bytes (base64), got ${key.length}`);
    if (keys.has(id)) throw new Error(`VAULT_KEKS: key id ${id} appears twice`);
    keys.set(id, key);
  }
  const active = activeId ?? [...keys.keys()].at(-1)!;
  if (!keys.has(active)) throw new Error(`VAULT_ACTIVE_KEK: no key with id ${active} in VAULT_KEKS`);
  return { activeId: active, keys };
}

/** AES-256-GCM; the result is iv (12) | tag (16) | ciphertext. Also seals webhook signing secrets. */
export function seal(key: Buffer, plain: Buffer, aad: string): Buffer {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(Buffer.from(aad));
  const body = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([iv, c.getAuthTag(), body]);
}

export function open(key: Buffer, sealed: Buffer, aad: string): Buffer {
  const d = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
  d.setAAD(Buffer.from(aad));
  d.setAuthTag(sealed.subarray(12, 28));
  return Buffer.concat([d.update(sealed.subarray(28)), d.final()]);
}

export interface Vault {
  /** stores a card number, returns its token */
  tokenize(sql: Queryable, shard: number, pan: string): Promise<string>;
  /** the clear card number, for the payment-network adapter only */
  reveal(sql: Sql, token: string): Promise<string>;
  /** re-wraps every data key not yet under the active KEK; returns how many */
  rotateKek(db: Db, onProgress?: (done: number, total: number) => void): Promise<{ rewrapped: number; activeKek: string }>;
}

export function createVault(ring: KeyRing): Vault {
  const kek = (id: string) => {
    const k = ring.keys.get(id);
    if (!k) throw new Error(`vault: KEK ${id} is not configured (VAULT_KEKS)`);
    return k;
  };
  return {
    async tokenize(sql, shard, pan) {
      const token = newId('tok', shard);
      const dek = randomBytes(32);
      const ciphertext = seal(dek, Buffer.from(pan, 'utf8'), token);
      const wrapped = seal(kek(ring.activeId), dek, `${token}:dek`);
      dek.fill(0);
      await sql`insert into vault_cards (token, shard, kek_id, wrapped_dek, ciphertext)
        values (${token}, ${shard}, ${ring.activeId}, ${wrapped}, ${ciphertext})`;
      return token;
    },
    async reveal(sql, token) {
      const [row] = await sql<{ kek_id: string; wrapped_dek: Buffer; ciphertext: Buffer }[]>`select kek_id, wrapped_dek, ciphertext from vault_cards where token = ${token}`;
      if (!row) throw new Error('vault: unknown token');
      const dek = open(kek(row.kek_id), row.wrapped_dek, `${token}:dek`);
      try {
        return open(dek, row.ciphertext, token).toString('utf8');
      } finally {
        dek.fill(0);
      }
    },
    async rotateKek(db, onProgress) {
      let rewrapped = 0;
      const totals = await Promise.all(db.clusters.map(async (c) => Number((await c.sql`select count(*)::int as n from vault_cards where kek_id <> ${ring.activeId}`)[0]!.n)));
      const total = totals.reduce((a, b) => a + b, 0);
      for (const c of db.clusters) {
        // in token order from where the last batch ended: the cards done are a prefix, which a
        // batch starting over would walk again (n² / 500 rows read for n cards)
        let after = '';
        for (;;) {
          const n = await c.sql.begin(async (tx) => {
            const rows = await tx<{ token: string; kek_id: string; wrapped_dek: Buffer }[]>`
              select token, kek_id, wrapped_dek from vault_cards where kek_id <> ${ring.activeId} and token > ${after} order by token limit 500 for update skip locked`;
            if (rows.length) after = rows[rows.length - 1]!.token;
            for (const r of rows) {
              const dek = open(kek(r.kek_id), r.wrapped_dek, `${r.token}:dek`);
              const wrapped = seal(kek(ring.activeId), dek, `${r.token}:dek`);
              dek.fill(0);
              await tx`update vault_cards set kek_id = ${ring.activeId}, wrapped_dek = ${wrapped}, rewrapped_at = now() where token = ${r.token}`;
            }
            return rows.length;
          });
          if (n === 0) break;
          rewrapped += n;
          onProgress?.(rewrapped, total);
        }
      }
      return { rewrapped, activeKek: ring.activeId };
    },
  };
}
