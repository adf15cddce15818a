import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { balance, createMultiClusterTestPlatform, fund, moneyPost, signUp, until, type TestPlatform, type TestUser } from '../test-support/platform.js';
import { startEventRoles, type EventRoles } from '../events/roles.js';
import { createDb, type Db } from './index.js';
import type { Topology } from './topology.js';
import { abortShardMove, moveShard, MoveRefused, type MoveProgress } from './shard-move.js';
import { describeShards } from '../cli/shards.js';
import { hashShard, shardOf } from '../shared/ids.js';
import { reconcile } from '../ledger/reconcile.js';
import { reconcileClearing } from '../ledger/reconcile-clearing.js';
import { checkBank, moneyInWallets, runBank, seedBank, type BankUser } from '../test-support/bank.js';
import { PERMISSIVE_FRAUD_RULES } from '../test-support/platform.js';
import { runWalletCli, type CliResult } from '../test-support/cli.js';
import { loadConfig } from '../config/index.js';
import { createPlatform } from '../platform.js';
import { buildApp } from '../app.js';
import { createLogger } from '../observability/logger.js';

let t: TestPlatform & { topology: Topology };
let roles: EventRoles;
/** the mover's own connections, as `wallet shards move` has them in its own process */
let mover: Db;

/** a platform of its own for each group of tests (the bank checks count every transfer of the databases) */
function withPlatform(): void {
  beforeAll(async () => {
    // pools of 10: the relay holds a connection while the in-process bus runs the consumers
    t = await createMultiClusterTestPlatform(4, { SHARD_MAP_POLL_MS: '200', DB_POOL_MAX: '10' });
    roles = startEventRoles(t.platform, ['relay', 'notify', 'workers']);
    mover = createDb(t.topology, { poolMax: 4, statementTimeoutMs: 60_000, shardMapPollMs: 0 });
  });
  afterAll(async () => {
    await roles?.stop();
    await mover?.close();
    await t?.close();
  });
}

const PASSWORD = 'correct horse battery staple';
const clusterOf = (u: TestUser) => t.platform.db.forShard(shardOf(u.id));
const move = (shard: number, to: string, extra: Partial<Parameters<typeof moveShard>[1]> = {}) =>
  moveShard(mover, { shard, to, subAccounts: t.config.ledgerSystemSubAccounts, graceMs: 600, ...extra });

async function historyIds(u: TestUser): Promise<string[]> {
  const res = await t.app.inject({ method: 'GET', url: '/v1/transactions?limit=100', headers: u.auth });
  expect(res.statusCode).toBe(200);
  return (res.json().transactions as { id: string }[]).map((h) => h.id).sort();
}

/** the users' available balances (minor units) where each one lives now */
async function balancesNow(users: TestUser[]): Promise<Map<string, bigint>> {
  const out = new Map<string, bigint>();
  for (const u of users) {
    const [row] = await clusterOf(u).sql<{ available: bigint }[]>`
      select credits_posted - debits_posted - debits_pending as available from accounts where user_id = ${u.id} and kind = 'user' and currency = 'USD'`;
    out.set(u.id, row!.available);
  }
  return out;
}

async function settled(): Promise<void> {
  let inFlight: string[] = [];
  await until(
    async () => {
      inFlight = (await reconcileClearing(t.platform.db)).inFlight.flatMap((f) => f.examples);
      return inFlight.length === 0;
    },
    20_000,
    'the clearing consumer to credit every transfer between clusters',
  ).catch(async (err: Error) => {
    // say whether the relay has published them at all
    const unsent = (await Promise.all(t.platform.db.clusters.map((c) => c.sql<{ id: string }[]>`select payload->>'id' as id from outbox where sent_at is null and payload->>'id' = any(${inFlight}::text[])`))).flat();
    throw new Error(`${err.message}: in flight ${inFlight.join(', ')}; events not yet published: ${unsent.map((r) => r.id).join(', ') || 'none'}`);
  });
}

/** the CLI as an operator runs it, in a process of its own */
function wallet(args: string[], env: Record<string, string>): Promise<CliResult> {
  return runWalletCli(args, { NODE_ENV: 'test', LOG_LEVEL: 'warn', DB_POOL_MAX: '4', ...env });
}

async function expectBooksClean(): Promise<void> {
  const report = await reconcile(t.platform.db);
  expect(report.checks.filter((c) => !c.ok)).toEqual([]);
  const clearing = await reconcileClearing(t.platform.db);
  expect(clearing.findings).toEqual([]);
  expect(clearing.inFlight).toEqual([]);
  for (const net of Object.values(clearing.net)) expect(net).toBe('0');
}

/** signs up users of a region and returns them grouped by shard, the most crowded shard first */
async function crowd(region: string, n: number): Promise<TestUser[][]> {
  const users: TestUser[] = [];
  for (let i = 0; i < n; i += 8) users.push(...(await Promise.all(Array.from({ length: Math.min(8, n - i) }, () => signUp(t.app, { region })))));
  const byShard = new Map<number, TestUser[]>();
  for (const u of users) byShard.set(shardOf(u.id), [...(byShard.get(shardOf(u.id)) ?? []), u]);
  return [...byShard.values()].sort((a, b) => b.length - a.length);
}

describe('shard moves', () => {
  withPlatform();

  it('hashes login-directory keys in SQL exactly like hashShard', async () => {
    const keys = ['alice@example.com', 'acct:bob@example.com', 'ip:10.0.0.1', 'Zoë@exämple.com', '😀@example.com', 'x'];
    const sql = t.platform.db.clusters[0]!.sql;
    for (const key of keys) {
      const [row] = await sql<{ s: number }[]>`select wallet_hash_shard(${key}) as s`;
      expect(row!.s, key).toBe(hashShard(key));
    }
  });

  it('moves a shard with users and money to another cluster: balances, history, login and transfers work after', async () => {
    const alice = await signUp(t.app, { region: 'us-east' });
    const shard = shardOf(alice.id);
    let carol = await signUp(t.app, { region: 'us-east' });
    while (shardOf(carol.id) === shard) carol = await signUp(t.app, { region: 'us-east' });
    const dave = await signUp(t.app, { region: 'apac' });
    await Promise.all([fund(t.app, alice, 10_000), fund(t.app, carol, 5_000), fund(t.app, dave, 5_000)]);
    const before1 = await moneyPost(t.app, alice, '/v1/transfers', { to: carol.id, amount: 1_000, currency: 'USD', note: 'same cluster' });
    const before2 = await moneyPost(t.app, dave, '/v1/transfers', { to: alice.id, amount: 700, currency: 'USD' });
    const before3 = await moneyPost(t.app, alice, '/v1/transfers', { to: dave.id, amount: 300, currency: 'USD' });
    expect([before1.statusCode, before2.statusCode, before3.statusCode]).toEqual([201, 201, 201]);
    await settled();
    const history = await historyIds(alice);
    const cards = (await t.app.inject({ method: 'GET', url: '/v1/payment-methods', headers: alice.auth })).json();
    expect(history).toEqual(expect.arrayContaining([before1.json().id, before2.json().id, before3.json().id]));
    expect((await balance(t.app, alice)).available).toBe(9_400);

    const phases: MoveProgress['phase'][] = [];
    const result = await move(shard, 'eu-west', { onProgress: (p) => phases.push(p.phase) });
    expect(result).toMatchObject({ shard, from: 'us-east', to: 'eu-west', wallets: 1, moved: { USD: '9400' } });
    expect(phases).toEqual(expect.arrayContaining(['copy', 'fence', 'final', 'money', 'flip', 'done']));
    await until(() => clusterOf(alice).name === 'eu-west', 5_000, 'the platform to route the moved shard to eu-west');

    // everything the user had, from the new cluster
    expect((await balance(t.app, alice)).available).toBe(9_400);
    expect(await historyIds(alice)).toEqual(history);
    expect((await t.app.inject({ method: 'GET', url: '/v1/payment-methods', headers: alice.auth })).json()).toEqual(cards);
    const read = await t.app.inject({ method: 'GET', url: `/v1/transfers/${before2.json().id}`, headers: alice.auth });
    expect(read.json()).toMatchObject({ from: dave.id, to: alice.id, amount: 700 });
    const login = await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { email: alice.email, password: PASSWORD } });
    expect(login.statusCode).toBe(200);
    const [onTarget] = await clusterOf(alice).sql<{ n: number }[]>`select count(*)::int as n from users where id = ${alice.id}`;
    expect(onTarget!.n).toBe(1);

    // the old cluster refuses writes of the shard for good
    const old = t.platform.db.clusters.find((c) => c.name === 'us-east')!;
    await expect(old.sql`update users set name = 'stale' where id = ${alice.id}`).rejects.toMatchObject({ code: '23514', constraint_name: `shard_fence_${shard}` });

    // transfers in every direction, alice's now between clusters
    const after = [
      await moneyPost(t.app, alice, '/v1/transfers', { to: carol.id, amount: 500, currency: 'USD' }),
      await moneyPost(t.app, carol, '/v1/transfers', { to: alice.id, amount: 200, currency: 'USD' }),
      await moneyPost(t.app, dave, '/v1/transfers', { to: alice.id, amount: 100, currency: 'USD' }),
      await moneyPost(t.app, alice, '/v1/transfers', { to: dave.id, amount: 50, currency: 'USD' }),
    ];
    expect(after.map((r) => r.statusCode)).toEqual([201, 201, 201, 201]);
    await settled();
    expect((await balance(t.app, alice)).available).toBe(9_400 - 500 + 200 + 100 - 50);
    expect((await balance(t.app, carol)).available).toBe(5_000 + 1_000 - 200 + 500);
    expect((await balance(t.app, dave)).available).toBe(5_000 - 700 + 300 - 100 + 50);
    expect(await historyIds(alice)).toEqual([...history, ...after.map((r) => r.json().id as string)].sort());
    await expectBooksClean();
    expect(await describeShards(t.platform.db)).toContain(`${shard} → eu-west`);
  });

  it('refuses to move a shard with an open hold or with payments to other shards, and moves nothing', async () => {
    const [payer] = (await crowd('eu-west', 1))[0]!;
    let merchant = await signUp(t.app, { region: 'eu-west', kind: 'merchant' });
    while (shardOf(merchant.id) === shardOf(payer!.id)) merchant = await signUp(t.app, { region: 'eu-west', kind: 'merchant' });
    await fund(t.app, payer!, 2_000);
    const auth = await moneyPost(t.app, payer!, '/v1/payments', { merchantId: merchant.id, amount: 800, currency: 'USD', capture: false });
    expect(auth.statusCode).toBe(201);
    const shard = shardOf(payer!.id);
    await expect(move(shard, 'apac')).rejects.toThrow(/open holds/);
    const voided = await moneyPost(t.app, merchant, `/v1/payments/${auth.json().id}/void`, {});
    expect(voided.statusCode).toBe(200);
    await expect(move(shard, 'apac')).rejects.toThrow(MoveRefused);
    await expect(move(shard, 'apac')).rejects.toThrow(/payments with users of other shards/);
    expect(clusterOf(payer!).name).toBe('eu-west');
    const again = await moneyPost(t.app, payer!, '/v1/transfers', { to: merchant.id, amount: 100, currency: 'USD' });
    expect(again.statusCode).toBe(201);
    await expectBooksClean();
  });
  it('aborts a move interrupted before its money step: the fence goes, writes resume, and a second run moves the shard', async () => {
    const [erin] = (await crowd('apac', 1))[0]!;
    const frank = await signUp(t.app, { region: 'us-west' });
    await Promise.all([fund(t.app, erin!, 3_000), fund(t.app, frank, 1_000)]);
    const shard = shardOf(erin!.id);
    await expect(move(shard, 'us-east', { whileFenced: () => Promise.reject(new Error('the operator pressed ctrl-c')) })).rejects.toThrow('ctrl-c');
    expect(clusterOf(erin!).name).toBe('apac');
    const during = await moneyPost(t.app, erin!, '/v1/transfers', { to: frank.id, amount: 400, currency: 'USD' });
    expect(during.statusCode).toBe(201);
    await settled();
    // the inert copies on us-east do not disturb its books
    await expectBooksClean();
    const [journal] = await clusterOf(erin!).sql<{ status: string; detail: string }[]>`select status, detail from shard_moves where shard = ${shard} order by started_at desc limit 1`;
    expect(journal).toMatchObject({ status: 'aborted', detail: 'the operator pressed ctrl-c' });

    const result = await move(shard, 'us-east');
    expect(result.moved).toEqual({ USD: '2600' });
    await until(() => clusterOf(erin!).name === 'us-east', 5_000, 'the platform to route the shard to us-east');
    expect((await balance(t.app, erin!)).available).toBe(2_600);
    expect(await historyIds(erin!)).toContain(during.json().id);
    const back = await moneyPost(t.app, frank, '/v1/transfers', { to: erin!.id, amount: 100, currency: 'USD' });
    expect(back.statusCode).toBe(201);
    await settled();
    expect((await balance(t.app, erin!)).available).toBe(2_700);
    await expectBooksClean();
  });
  it("an operator's abort while the move holds the fence wins over its money step: nothing moves, writes flow again", async () => {
    const lou = (await crowd('us-west', 1))[0]![0]!;
    const mia = await signUp(t.app, { region: 'us-west' });
    await fund(t.app, lou, 900);
    const shard = shardOf(lou.id);
    const from = clusterOf(lou).name;
    let aborted: Awaited<ReturnType<typeof abortShardMove>>;
    await expect(move(shard, 'eu-west', { whileFenced: async () => void (aborted = await abortShardMove(mover, shard)) })).rejects.toThrow(/aborted meanwhile/);
    expect(aborted!).toMatchObject({ from, to: 'eu-west' });
    expect(await abortShardMove(mover, shard)).toBeUndefined();
    expect(clusterOf(lou).name).toBe(from);
    const sent = await moneyPost(t.app, lou, '/v1/transfers', { to: mia.id, amount: 100, currency: 'USD' });
    expect(sent.statusCode).toBe(201);
    await settled();
    expect((await balance(t.app, lou)).available).toBe(800);
    await expectBooksClean();
  });

  it('a move interrupted after its balances left the source is finished by running it again', async () => {
    const ned = (await crowd('apac', 1))[0]![0]!;
    await fund(t.app, ned, 1_200);
    const shard = shardOf(ned.id);
    const from = clusterOf(ned).name;
    await expect(move(shard, 'us-west', { afterClose: () => Promise.reject(new Error('the mover died')) })).rejects.toThrow('the mover died');
    // the balance is between the clusters, like a transfer whose credit has not landed
    const between = await reconcileClearing(t.platform.db);
    expect(between.findings).toEqual([]);
    expect(between.inFlight).toEqual([expect.objectContaining({ currency: 'USD', amount: '1200', count: 1 })]);
    expect(clusterOf(ned).name).toBe(from);
    await expect(abortShardMove(mover, shard)).rejects.toThrow(/run it again with --to us-west/);
    await expect(move(shard, 'eu-west')).rejects.toThrow(/unfinished move .* to us-west/);

    const result = await move(shard, 'us-west');
    expect(result).toMatchObject({ from, to: 'us-west', moved: { USD: '1200' } });
    await until(() => clusterOf(ned).name === 'us-west', 5_000, 'the platform to route the shard to us-west');
    expect((await balance(t.app, ned)).available).toBe(1_200);
    await expectBooksClean();
  });

  it("credits a transfer through clearing whose sender a move has since put on the recipient's cluster", async () => {
    const gina = (await crowd('us-west', 1))[0]![0]!;
    const hank = await signUp(t.app, { region: 'eu-west' });
    await fund(t.app, hank, 1_000);
    await settled();
    // the event waits in the outbox until the move is over
    await roles.stop();
    let sentId: string;
    try {
      const res = await moneyPost(t.app, hank, '/v1/transfers', { to: gina.id, amount: 250, currency: 'USD' });
      expect(res.statusCode).toBe(201);
      sentId = res.json().id;
      await move(shardOf(gina.id), 'eu-west');
    } finally {
      roles = startEventRoles(t.platform, ['relay', 'notify', 'workers']);
    }
    await settled();
    expect((await balance(t.app, gina)).available).toBe(250);
    expect((await historyIds(gina)).filter((id) => id === sentId)).toHaveLength(1);
    const legs = await clusterOf(gina).sql<{ id: string }[]>`select id from ledger_transfers where id like ${`${sentId}%`} order by id`;
    expect(legs.map((l) => l.id)).toEqual([sentId, `${sentId}:credit`]);
    await expectBooksClean();
  });

  it('a process that has not re-read the map learns from the fence: other writes answer 503 once, transfers wait and land', async () => {
    const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', LEDGER_BATCH_WINDOW_MS: '1', PASSWORD_HASH_LOG2_COST: '10', FRAUD_RULES_FILE: PERMISSIVE_FRAUD_RULES, DB_POOL_MAX: '3', SHARD_MAP_POLL_MS: '0' });
    const stale = createPlatform(config, { topology: t.topology, log: createLogger('silent') });
    await stale.ready();
    const staleApp = await buildApp(stale);
    try {
      const ivan = (await crowd('us-east', 1))[0]![0]!;
      const shard = shardOf(ivan.id);
      let judy = await signUp(t.app, { region: 'us-east' });
      while (shardOf(judy.id) === shard) judy = await signUp(t.app, { region: 'us-east' });
      await fund(t.app, ivan, 2_000);
      await move(shard, 'us-west');
      expect(stale.db.forShard(shard).name).toBe('us-east');
      const refused = await staleApp.inject({ method: 'PATCH', url: '/v1/me', headers: ivan.auth, payload: { name: 'Ivan Moved' } });
      expect(refused.statusCode).toBe(503);
      expect(refused.headers['retry-after']).toBe('1');
      expect(refused.json()).toMatchObject({ code: 'unavailable' });
      await until(() => stale.db.forShard(shard).name === 'us-west', 2_000, 'the stale process to re-read the map');
      const retried = await staleApp.inject({ method: 'PATCH', url: '/v1/me', headers: ivan.auth, payload: { name: 'Ivan Moved' } });
      expect(retried.statusCode).toBe(200);
      expect(retried.json()).toMatchObject({ name: 'Ivan Moved' });

      // moved again (off a cluster that received it): stale again, and a transfer goes through
      await move(shard, 'apac');
      expect(stale.db.forShard(shard).name).toBe('us-west');
      const sent = await moneyPost(staleApp, ivan, '/v1/transfers', { to: judy.id, amount: 300, currency: 'USD' });
      expect(sent.statusCode).toBe(201);
      expect(stale.db.forShard(shard).name).toBe('apac');
      await settled();
      expect((await balance(t.app, ivan)).available).toBe(1_700);
      expect((await balance(t.app, judy)).available).toBe(300);
      await expectBooksClean();
    } finally {
      await staleApp.close();
      await stale.close();
    }
  });
  it('`wallet shards move` and `wallet shards list`, as an operator runs them', { timeout: 150_000 }, async () => {
    const kim = (await crowd('eu-west', 1))[0]![0]!;
    await fund(t.app, kim, 1_500);
    const shard = shardOf(kim.id);
    const from = clusterOf(kim).name;
    const to = from === 'us-east' ? 'us-west' : 'us-east';
    // what the move carries: every balance on the shard, kim's and any an earlier test left there
    const [onShard] = await clusterOf(kim).sql<{ usd: bigint }[]>`
      select coalesce(sum(credits_posted - debits_posted), 0)::bigint as usd from accounts where kind = 'user' and shard = ${shard} and currency = 'USD'`;
    expect(onShard!.usd).toBeGreaterThanOrEqual(1_500n);
    const dir = mkdtempSync(join(tmpdir(), 'wallet-shards-'));
    try {
      const topology = join(dir, 'topology.json');
      writeFileSync(topology, JSON.stringify(t.topology));
      const env = { WALLET_TOPOLOGY: topology, SHARD_MAP_POLL_MS: '200' };
      const refused = await wallet(['shards', 'move', '--shard', String(shard), '--to', 'nowhere'], env);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('no cluster named nowhere');
      const moved = await wallet(['shards', 'move', '--shard', String(shard), '--to', to], env);
      expect(moved.stderr).toBe('');
      expect(moved.code).toBe(0);
      expect(moved.stdout).toContain(`shard ${shard} moved ${from} → ${to}`);
      expect(moved.stdout).toContain(`(${onShard!.usd} USD)`);
      const listed = await wallet(['shards', 'list'], env);
      expect(listed.code).toBe(0);
      expect(listed.stdout).toContain(`  ${shard} → ${to} (version `);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    await until(() => clusterOf(kim).name === to, 5_000, `the platform to route the shard to ${to}`);
    expect((await balance(t.app, kim)).available).toBe(1_500);
    await expectBooksClean();
  });
});

describe("shard move under load with the bank test's checks", () => {
  withPlatform();

  it('moves a shard while clients move money: no 5xx, every acknowledged transfer once on both sides, books clean, money conserved', { timeout: 240_000 }, async () => {
    const users = await seedBank(t.platform, 600, 10_000n);
    const initial = await moneyInWallets(t.platform);
    // the most crowded shard of us-west moves to apac
    const byShard = new Map<number, BankUser[]>();
    for (const u of users.filter((x) => t.platform.db.forShard(x.shard).name === 'us-west')) byShard.set(u.shard, [...(byShard.get(u.shard) ?? []), u]);
    const movers = [...byShard.values()].sort((a, b) => b.length - a.length)[0]!;
    const shard = movers[0]!.shard;
    const moving = new Set(movers.map((u) => u.id));
    const others = users.filter((u) => !moving.has(u.id));
    // their partners: users of the same cluster (same-cluster before the move, cross after) and of others
    const partners = [...others.filter((u) => t.platform.db.forShard(u.shard).name === 'us-west').slice(0, 8), ...others.filter((u) => t.platform.db.forShard(u.shard).name !== 'us-west').slice(0, 8)];

    // clients that always involve a user of the moving shard, timed, and the bank's clients
    interface Sent { status: number; id?: string; from: BankUser; to: BankUser; amount: bigint; start: number; end: number; body: string }
    const sent: Sent[] = [];
    // until 1.5 s after the move has finished, however long it takes on a busy machine
    let stopAt = Number.POSITIVE_INFINITY;
    const pick = <T,>(xs: readonly T[]) => xs[Math.floor(Math.random() * xs.length)]!;
    let seq = 0;
    const focused = async () => {
      while (Date.now() < stopAt) {
        const mover = pick(movers);
        const other = Math.random() < 0.3 && movers.length > 1 ? pick(movers.filter((u) => u !== mover)) : pick(partners);
        const [from, to] = Math.random() < 0.5 ? [mover, other] : [other, mover];
        const amount = BigInt(1 + Math.floor(Math.random() * 200));
        const start = Date.now();
        const res = await t.app.inject({ method: 'POST', url: '/v1/transfers', headers: { ...from.auth, 'idempotency-key': `focused-${seq++}` }, payload: { to: to.id, amount: Number(amount), currency: 'USD' } });
        sent.push({ status: res.statusCode, id: res.statusCode === 201 ? res.json().id : undefined, from, to, amount, start, end: Date.now(), body: res.body });
      }
    };
    const at: Partial<Record<MoveProgress['phase'], number>> = {};
    let fencedAt = 0;
    let moving$: Promise<Awaited<ReturnType<typeof move>>> | undefined;
    const bank = runBank({
      app: t.app, platform: t.platform, users, seconds: 8, clients: 4,
      onSecond: (second) => {
        if (second === 2 && !moving$) {
          // the fence is held open 500 ms (a slow final pass): requests of the shard wait it out
          const whileFenced = async () => {
            fencedAt = Date.now();
            await new Promise((r) => setTimeout(r, 500));
          };
          moving$ = move(shard, 'apac', { onProgress: (p) => (at[p.phase] ??= Date.now()), whileFenced });
          moving$.catch(() => undefined);
        }
      },
    });
    const clients = [focused(), focused(), focused()];
    let result: Awaited<ReturnType<typeof move>> | undefined;
    try {
      await until(() => moving$ !== undefined, 15_000, 'the move to start');
      result = await moving$!;
    } finally {
      stopAt = Date.now() + 1_500;
      await Promise.all(clients);
    }
    const stats = await bank;
    expect(result).toMatchObject({ shard, from: 'us-west', to: 'apac' });
    expect(result.wallets).toBeGreaterThanOrEqual(movers.length);
    await until(() => t.platform.db.forShard(shard).name === 'apac', 5_000, 'the platform to route the moved shard to apac');

    // no 5xx: not from the bank's clients (after their retries) nor from the shard's own
    expect([...stats.statuses.keys()].filter((s) => s !== 201 && s !== 422)).toEqual([]);
    expect(sent.filter((s) => s.status !== 201 && s.status !== 422).map((s) => `${s.status} ${s.body}`)).toEqual([]);
    // and the shard's transfers only waited: none was answered 503 and retried
    expect(stats.retried).toBe(0);
    // the load really ran through the move: before the fence, after the flip, and while fenced
    const ok = sent.filter((s) => s.status === 201);
    expect(ok.filter((s) => s.end < at.fence!).length).toBeGreaterThan(0);
    expect(ok.filter((s) => s.start > at.flip!).length).toBeGreaterThan(0);
    // in flight while the fence held (500 ms), answered 201 after the flip: they waited it out
    const waited = ok.filter((s) => s.start < fencedAt && s.end >= at.flip!);
    expect(waited.length).toBeGreaterThan(0);
    expect(Math.max(...waited.map((s) => s.end - s.start))).toBeGreaterThanOrEqual(450);

    // the bank's checks over both kinds of clients
    for (const s of ok) stats.acknowledged.set(s.id!, { from: s.from.id, to: s.to.id, amount: s.amount });
    await checkBank(t.platform, stats, initial);
    // and each moved user's balance follows from the acknowledged transfers alone
    const expected = new Map(movers.map((u) => [u.id, 10_000n]));
    for (const a of stats.acknowledged.values()) {
      if (expected.has(a.from)) expected.set(a.from, expected.get(a.from)! - a.amount);
      if (expected.has(a.to)) expected.set(a.to, expected.get(a.to)! + a.amount);
    }
    const target = t.platform.db.forShard(shard);
    const rows = await target.sql<{ user_id: string; balance: bigint }[]>`select user_id, credits_posted - debits_posted as balance from accounts where shard = ${shard} and kind = 'user'`;
    expect(Object.fromEntries(rows.filter((r) => moving.has(r.user_id)).map((r) => [r.user_id, r.balance]))).toEqual(Object.fromEntries(expected));
  });
});
