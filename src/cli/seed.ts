/**
 * `wallet seed`: demo users with funded wallets, fast enough for 10,000 users in seconds.
 *
 * Users, login-directory entries and wallets are written with one multi-row insert per table and
 * chunk (set-based, like the engine). The money goes in through the ledger engine as a top-up
 * from a card-funding sub-account with its history row and top-up record, exactly the rows a
 * real top-up writes, so `wallet reconcile` passes on seeded data. Differences from a real
 * top-up, on purpose: no card (the top-up's payment_method_id is 'seed'), no outbox event (ten
 * thousand "money arrived" notifications for demo users would only flood the mailbox), and no
 * idempotency record (the ids are fresh, nothing to retry).
 *
 * Password hashing (scrypt, N=2^15) costs ~50-100 ms of CPU per password: 10,000 users would
 * take minutes. Every seeded user gets the same demo password, hashed once, and that one hash
 * (one salt) is stored for all of them. That is only acceptable because these are demo accounts
 * with a published password; a real sign-up hashes each password with its own salt. For the
 * same reason the seed refuses to run with NODE_ENV=production.
 */
import { hashPassword } from '../auth/passwords.js';
import type { Cluster } from '../db/index.js';
import type { Platform } from '../platform.js';
import { hashShard, newId, newShard, SHARD_COUNT } from '../shared/ids.js';
import { REGIONS } from '../users/service.js';
import type { Command } from '../ledger/types.js';

export const DEMO_PASSWORD = 'wallet-demo-password';
/** one merchant in this many users (at least one when seeding two or more) */
const MERCHANT_EVERY = 50;
const CHUNK = 1000;
export const SEED_MAX_USERS = 1_000_000;

export interface SeedOptions {
  users: number;
  currency: string;
  balanceMinor: bigint;
  password?: string;
  /** called as users become ready (inserted and funded) */
  onProgress?: (done: number, total: number) => void;
}

export interface SeededUser {
  id: string;
  email: string;
  kind: 'person' | 'merchant';
  walletId: string;
  shard: number;
}

export interface SeedResult {
  users: number;
  persons: number;
  merchants: number;
  funded: number;
  password: string;
  /** a few users to sign in with: the first persons and the first merchant */
  demo: SeededUser[];
  /** every seeded user (the benchmark drives transfers between them) */
  all: SeededUser[];
  durationMs: number;
}

export async function seedUsers(p: Platform, opts: SeedOptions): Promise<SeedResult> {
  if (p.config.nodeEnv === 'production') throw new Error('seed: refused with NODE_ENV=production (it creates users who share a published password)');
  if (!Number.isInteger(opts.users) || opts.users < 1 || opts.users > SEED_MAX_USERS) throw new Error(`seed: --users must be an integer from 1 to ${SEED_MAX_USERS}`);
  if (opts.balanceMinor < 0n || opts.balanceMinor > BigInt(p.config.maxAmountMinor)) throw new Error(`seed: --balance must be from 0 to ${p.config.maxAmountMinor} (MAX_AMOUNT_MINOR)`);
  const started = performance.now();
  const password = opts.password ?? DEMO_PASSWORD;
  const passwordHash = await hashPassword(password, p.config.passwordHashLog2Cost); // once, see the header
  const tag = `${Date.now().toString(36)}${Math.floor(Math.random() * 36 ** 3).toString(36)}`;
  const shardFor = regionShardPicker(p);
  const all: SeededUser[] = [];
  let funded = 0;
  for (let from = 0; from < opts.users; from += CHUNK) {
    const chunk: (SeededUser & { name: string; region: string })[] = [];
    for (let i = from; i < Math.min(opts.users, from + CHUNK); i++) {
      const merchant = opts.users >= 2 && i % MERCHANT_EVERY === 1;
      const region = REGIONS[i % REGIONS.length]!;
      const shard = shardFor(region);
      const n = String(i + 1).padStart(5, '0');
      chunk.push({
        id: newId('usr', shard),
        email: `demo-${tag}-${i + 1}@example.com`,
        name: merchant ? `Demo Shop ${n}` : `Demo Person ${n}`,
        kind: merchant ? 'merchant' : 'person',
        region,
        shard,
        walletId: newId('wal', shard),
      });
    }
    await insertUsers(p, chunk, opts.currency, passwordHash);
    if (opts.balanceMinor > 0n) {
      await Promise.all(
        chunk.map(async (u) => {
          await fundWallet(p, u, opts.currency, opts.balanceMinor);
          opts.onProgress?.(++funded, opts.users);
        }),
      );
    } else {
      opts.onProgress?.(from + chunk.length, opts.users);
    }
    for (const { name: _n, region: _r, ...u } of chunk) all.push(u);
  }
  const merchants = all.filter((u) => u.kind === 'merchant').length;
  const demo = [...all.filter((u) => u.kind === 'person').slice(0, 2), ...all.filter((u) => u.kind === 'merchant').slice(0, 1)];
  return { users: all.length, persons: all.length - merchants, merchants, funded, password, demo, all, durationMs: Math.round(performance.now() - started) };
}

/** Same placement as sign-up (src/users/service.ts): a shard of a cluster in the user's region, or any shard. */
function regionShardPicker(p: Platform): (region: string) => number {
  const byRegion = new Map<string, number[]>();
  for (let s = 0; s < SHARD_COUNT; s++) {
    const region = p.db.forShard(s).region;
    let list = byRegion.get(region);
    if (!list) byRegion.set(region, (list = []));
    list.push(s);
  }
  return (region) => {
    const shards = byRegion.get(region);
    return shards?.length ? shards[Math.floor(Math.random() * shards.length)]! : newShard();
  };
}

/** Directory entries first (on the email's cluster), then users and wallets (on each user's cluster), one statement per table and cluster. */
async function insertUsers(p: Platform, users: (SeededUser & { name: string; region: string })[], currency: string, passwordHash: string): Promise<void> {
  const group = <T>(items: T[], cluster: (x: T) => Cluster) => {
    const m = new Map<Cluster, T[]>();
    for (const x of items) {
      const c = cluster(x);
      const list = m.get(c);
      if (list) list.push(x);
      else m.set(c, [x]);
    }
    return m;
  };
  await Promise.all(
    [...group(users, (u) => p.db.forShard(hashShard(u.email)))].map(([c, us]) =>
      c.sql`insert into email_directory (email, user_id, shard)
        select * from unnest(${us.map((u) => u.email)}::text[], ${us.map((u) => u.id)}::text[], ${us.map((u) => u.shard)}::smallint[])`,
    ),
  );
  await Promise.all(
    [...group(users, (u) => p.db.forShard(u.shard))].map(([c, us]) =>
      c.sql.begin(async (tx) => {
        await tx`insert into users (id, shard, email, name, kind, region, password_hash)
          select *, ${passwordHash} from unnest(${us.map((u) => u.id)}::text[], ${us.map((u) => u.shard)}::smallint[], ${us.map((u) => u.email)}::text[],
            ${us.map((u) => u.name)}::text[], ${us.map((u) => u.kind)}::text[], ${us.map((u) => u.region)}::text[])`;
        await tx`insert into accounts (id, shard, user_id, kind, currency)
          select id, shard, user_id, 'user', ${currency} from unnest(${us.map((u) => u.walletId)}::text[], ${us.map((u) => u.shard)}::smallint[], ${us.map((u) => u.id)}::text[]) as w(id, shard, user_id)`;
      }),
    ),
  );
}

/** A posted top-up from a card-funding sub-account, with the history row and top-up record a real one writes. */
export async function fundWallet(p: Platform, u: { id: string; shard: number; walletId: string }, currency: string, amountMinor: bigint): Promise<void> {
  const createdAt = new Date();
  const id = newId('top', u.shard, createdAt);
  const funding = await p.systemAccounts.account(p.db.forShard(u.shard), 'card_funding', currency, id);
  const cmd: Command = {
    shard: u.shard,
    accounts: [funding, u.walletId],
    apply: () => ({
      ops: [
        { t: 'transfer', id, debit: funding, credit: u.walletId, amount: amountMinor, currency, pending: false, kind: 'topup', refId: id },
        { t: 'history', row: { id, userId: u.id, shard: u.shard, walletId: u.walletId, type: 'topup', direction: 'credit', amount: amountMinor, currency, status: 'completed', counterparty: null, note: 'demo funds (wallet seed)', createdAt } },
        { t: 'topup', row: { id, shard: u.shard, userId: u.id, walletId: u.walletId, paymentMethodId: 'seed', amount: amountMinor, currency, status: 'completed', declineCode: null, networkRef: null, createdAt } },
      ],
      answer: { status: 201, body: { id } },
    }),
  };
  const result = await p.engine.submit(cmd);
  if (result.status !== 201) throw new Error(`seed: funding ${u.walletId} was refused: ${result.json}`);
}
