/**
 * Account rows: user wallets (one per user and currency) and the system accounts of each
 * cluster. A system account is split into `subAccounts` rows (sys_card_funding_USD_07) and a
 * movement picks one by a hash of its id, so the busiest accounts never serialise batches.
 */
import type { Cluster, Queryable } from '../db/index.js';
import { newId } from '../shared/ids.js';
import type { AccountKind, WalletSnapshot } from './types.js';

export type SystemKind = Exclude<AccountKind, 'user'>;

export function systemAccountId(kind: SystemKind, currency: string, sub: number): string {
  return `sys_${kind}_${currency}_${String(sub).padStart(3, '0')}`;
}

/** Picks the sub-account for a movement, spread by its id. */
export function pickSub(movementId: string, subAccounts: number): number {
  let h = 0;
  for (let i = movementId.length - 1; i >= movementId.length - 8 && i >= 0; i--) h = (h * 31 + movementId.charCodeAt(i)) >>> 0;
  return h % subAccounts;
}

export interface SystemAccounts {
  /** the id of the sub-account of `kind` for this movement, created on first use */
  account(cluster: Cluster, kind: SystemKind, currency: string, movementId: string): Promise<string>;
}

export function createSystemAccounts(subAccounts: number): SystemAccounts {
  const ready = new Map<string, Promise<void>>();
  return {
    async account(cluster, kind, currency, movementId) {
      const key = `${cluster.name}/${kind}/${currency}`;
      let p = ready.get(key);
      if (!p) {
        p = ensureSystemAccounts(cluster.sql, kind, currency, subAccounts);
        ready.set(key, p);
        p.catch(() => ready.delete(key));
      }
      await p;
      return systemAccountId(kind, currency, pickSub(movementId, subAccounts));
    },
  };
}

async function ensureSystemAccounts(sql: Queryable, kind: SystemKind, currency: string, subAccounts: number): Promise<void> {
  const ids = Array.from({ length: subAccounts }, (_, i) => systemAccountId(kind, currency, i));
  await sql`insert into accounts (id, kind, currency) select unnest(${ids}::text[]), ${kind}, ${currency} on conflict (id) do nothing`;
}

/** the columns walletFromRow reads (the engine's balance update returns the same, qualified) */
export const WALLET_COLUMNS = 'id, user_id, currency, credits_posted - debits_posted - debits_pending as available, debits_pending as pending, version, updated_at';

export function walletFromRow(r: Record<string, unknown>): WalletSnapshot {
  return {
    id: r.id as string,
    userId: r.user_id as string,
    currency: (r.currency as string).trim(),
    available: r.available as bigint,
    pending: r.pending as bigint,
    version: r.version as bigint,
    updatedAt: r.updated_at as Date,
  };
}

/** Opens a wallet; undefined when the user already has one in that currency. */
export async function openWallet(sql: Queryable, userId: string, shard: number, currency: string): Promise<WalletSnapshot | undefined> {
  const id = newId('wal', shard);
  const rows = await sql.unsafe(
    `insert into accounts (id, shard, user_id, kind, currency) values ($1, $2, $3, 'user', $4)
     on conflict (user_id, currency) where kind = 'user' do nothing returning ${WALLET_COLUMNS}`,
    [id, shard, userId, currency],
  );
  return rows[0] ? walletFromRow(rows[0]) : undefined;
}


