/** Users: sign-up (with the first wallet), the login directory, profile reads and updates. */
import type { Platform } from '../platform.js';
import type { Queryable } from '../db/index.js';
import { hashShard, newId, newShard, SHARD_COUNT } from '../shared/ids.js';
import { hashPassword } from '../auth/passwords.js';
import { openWallet } from '../ledger/accounts.js';

export const REGIONS = ['us-east', 'us-west', 'eu-west', 'apac'] as const;
export type Region = (typeof REGIONS)[number];

export interface User {
  id: string;
  email: string;
  name: string;
  kind: 'person' | 'merchant';
  region: string;
  createdAt: Date;
}

export type CreateUserResult = { ok: true; user: User } | { ok: false; error: 'email_taken' };

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

const userFromRow = (r: Record<string, unknown>): User => ({
  id: r.id as string,
  email: r.email as string,
  name: r.name as string,
  kind: r.kind as User['kind'],
  region: r.region as string,
  createdAt: r.created_at as Date,
});

export function createUserService(p: Platform) {
  /** A user's shard: uniform within the region's shard ranges, or over all shards when no cluster is in that region. */
  const shardFor = (region: string) => {
    // by the routing of now: a moved shard belongs to the region of the cluster it moved to
    const shards = Array.from({ length: SHARD_COUNT }, (_, s) => s).filter((s) => p.db.forShard(s).region === region);
    return shards?.length ? shards[Math.floor(Math.random() * shards.length)]! : newShard();
  };

  return {
    async create(input: { email: string; password: string; name: string; kind: User['kind']; region: Region; currency: string }): Promise<CreateUserResult> {
      const email = normalizeEmail(input.email);
      const shard = shardFor(input.region);
      const id = newId('usr', shard);
      const passwordHash = await hashPassword(input.password, p.config.passwordHashLog2Cost);
      const home = p.db.forShard(shard);
      const directory = p.db.forShard(hashShard(email));

      const claimEmail = async (sql: Queryable) =>
        (await sql`insert into email_directory (email, user_id, shard) values (${email}, ${id}, ${shard}) on conflict (email) do nothing returning email`).length === 1;
      const insertUser = async (sql: Queryable) => {
        const [row] = await sql`insert into users (id, shard, email, name, kind, region, password_hash)
          values (${id}, ${shard}, ${email}, ${input.name}, ${input.kind}, ${input.region}, ${passwordHash}) returning *`;
        await openWallet(sql, id, shard, input.currency);
        return userFromRow(row!);
      };

      if (directory === home) {
        return home.sql.begin(async (tx) => {
          if (!(await claimEmail(tx))) return { ok: false, error: 'email_taken' } as const;
          return { ok: true, user: await insertUser(tx) } as const;
        }) as Promise<CreateUserResult>;
      }
      // Two clusters: claim the email first, undo the claim if the user cannot be written.
      if (!(await claimEmail(directory.sql))) return { ok: false, error: 'email_taken' };
      try {
        return { ok: true, user: await home.sql.begin((tx) => insertUser(tx)) as User };
      } catch (err) {
        await directory.sql`delete from email_directory where email = ${email} and user_id = ${id}`;
        throw err;
      }
    },

    async get(userId: string, shard: number): Promise<User | undefined> {
      const [row] = await p.db.forShard(shard).sql`select id, email, name, kind, region, created_at from users where id = ${userId}`;
      return row ? userFromRow(row) : undefined;
    },

    async update(userId: string, shard: number, patch: { name?: string; region?: Region }): Promise<User | undefined> {
      const [row] = await p.db.forShard(shard).sql`
        update users set name = coalesce(${patch.name ?? null}, name), region = coalesce(${patch.region ?? null}, region), updated_at = now()
        where id = ${userId} returning id, email, name, kind, region, created_at`;
      return row ? userFromRow(row) : undefined;
    },

    /** The user behind an email, with what a login needs. */
    async findForLogin(email: string): Promise<{ id: string; shard: number; passwordHash: string } | undefined> {
      const e = normalizeEmail(email);
      const [entry] = await p.db.forShard(hashShard(e)).sql<{ user_id: string; shard: number }[]>`select user_id, shard from email_directory where email = ${e}`;
      if (!entry) return undefined;
      const [row] = await p.db.forShard(entry.shard).sql<{ id: string; shard: number; password_hash: string }[]>`select id, shard, password_hash from users where id = ${entry.user_id}`;
      return row ? { id: row.id, shard: row.shard, passwordHash: row.password_hash } : undefined;
    },
  };
}

export type UserService = ReturnType<typeof createUserService>;
