/**
 * Finds the PostgreSQL the tests use and prepares a migrated template database that every test
 * file clones (CREATE DATABASE ... TEMPLATE), so files run in parallel on their own data.
 *   - TEST_DATABASE_URL (or DATABASE_URL) when set;
 *   - with CI=true: the machine's PostgreSQL on 127.0.0.1:5432, and the run fails if it is missing;
 *   - otherwise 127.0.0.1:5432 when it answers, else an embedded PostgreSQL under .data/test-pg.
 */
import postgres from 'postgres';
import type { TestProject } from 'vitest/node';
import { migrate } from '../db/migrate.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../db/embedded.js';
import { connect } from '../db/index.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
    pgTemplate: string;
  }
}

const MACHINE_PG = 'postgres://postgres@127.0.0.1:5432/postgres';

async function answers(url: string): Promise<boolean> {
  const sql = postgres(url, { max: 1, connect_timeout: 3, onnotice: () => undefined });
  try {
    await sql`select 1`;
    return true;
  } catch {
    return false;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

let embedded: EmbeddedPostgres | undefined;

export default async function setup(project: TestProject) {
  let adminUrl = process.env.TEST_DATABASE_URL ?? process.env.DATABASE_URL;
  if (!adminUrl) {
    if (await answers(MACHINE_PG)) adminUrl = MACHINE_PG;
    else if (process.env.CI === 'true') throw new Error(`CI=true: PostgreSQL is required at ${MACHINE_PG} and does not answer`);
    else {
      embedded = await startEmbeddedPostgres({ dataDir: '.data/test-pg', port: 15433, settings: { fsync: 'off', synchronous_commit: 'off' } });
      adminUrl = embedded.url('postgres');
    }
  } else if (!(await answers(adminUrl))) {
    throw new Error(`the test database ${adminUrl.replace(/:[^:@/]*@/, ':***@')} does not answer`);
  }
  adminUrl = withDatabase(adminUrl, 'postgres');

  const template = `wallet_tpl_${process.pid}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => undefined });
  // leftovers of killed runs
  for (const { datname } of await admin<{ datname: string }[]>`select datname from pg_database where datname like 'wallet_t%' and datname <> ${template}`) {
    const pid = Number(/_(\d+)/.exec(datname)?.[1]);
    if (datname.startsWith('wallet_tpl_') && pid && pidAlive(pid)) continue;
    if (datname.startsWith('wallet_t_')) continue; // may belong to a concurrent run
    await admin.unsafe(`drop database if exists ${datname} with (force)`);
  }
  await admin.unsafe(`drop database if exists ${template} with (force)`);
  await admin.unsafe(`create database ${template}`);
  const sql = connect(withDatabase(adminUrl, template), { poolMax: 1, statementTimeoutMs: 60_000 });
  await migrate(sql, { partitionsAheadMonths: 3 });
  await sql.end();

  project.provide('pgAdminUrl', adminUrl);
  project.provide('pgTemplate', template);

  return async () => {
    await admin.unsafe(`drop database if exists ${template} with (force)`).catch(() => undefined);
    await admin.end({ timeout: 2 });
    await embedded?.stop();
  };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
