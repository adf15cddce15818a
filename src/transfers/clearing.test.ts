import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMultiClusterTestPlatform, balance, fund, moneyPost, signUp, until, type TestPlatform, type TestUser } from '../test-support/platform.js';
import { startEventRoles } from '../events/roles.js';
import { createClearing, reversalId } from './clearing.js';
import { shardOf } from '../shared/ids.js';
import { reconcile } from '../ledger/reconcile.js';
import { reconcileClearing } from '../ledger/reconcile-clearing.js';
import type { BusEvent } from '../events/types.js';
import { busEnv, dropNamespace } from '../test-support/nats.js';

let t: TestPlatform;

beforeAll(async () => {
  t = await createMultiClusterTestPlatform(4);
});
afterAll(async () => {
  await t?.close();
});

const clusterOf = (u: TestUser) => t.platform.db.forShard(shardOf(u.id));

/** the sum of the clearing accounts of every cluster, per currency (minor units) */
async function clearingNet(currency = 'USD'): Promise<bigint> {
  let net = 0n;
  for (const c of t.platform.db.clusters) {
    const [row] = await c.sql<{ net: bigint }[]>`select coalesce(sum(credits_posted - debits_posted), 0)::bigint as net from accounts where kind = 'clearing' and currency = ${currency}`;
    net += row!.net;
  }
  return net;
}

/** the transfer.completed event the sender's cluster wrote for a transfer, as the bus carries it */
async function eventOf(sender: TestUser, transferId: string): Promise<BusEvent> {
  const [row] = await clusterOf(sender).sql<{ event_id: string; topic: string; partition_key: string; shard: number; type: string; payload: Record<string, unknown>; created_at: Date }[]>`
    select event_id, topic, partition_key, shard, type, payload, created_at from outbox where type = 'transfer.completed' and payload->>'id' = ${transferId}`;
  return { id: row!.event_id, topic: 'transaction-events', key: row!.partition_key, type: row!.type, shard: row!.shard, at: row!.created_at.toISOString(), payload: row!.payload };
}

async function history(u: TestUser): Promise<{ id: string; direction: string; amount: number; status: string; note?: string }[]> {
  const res = await t.app.inject({ method: 'GET', url: '/v1/transactions?limit=50', headers: u.auth });
  return res.json().transactions;
}

describe('transfers between clusters', () => {
  it('signs users up on the cluster of their region', async () => {
    const east = await signUp(t.app, { region: 'us-east' });
    const apac = await signUp(t.app, { region: 'apac' });
    expect(clusterOf(east).name).toBe('us-east');
    expect(clusterOf(apac).name).toBe('apac');
  });

  it('debits the sender at once and credits the recipient on the other cluster through the clearing consumer', async () => {
    const roles = startEventRoles(t.platform, ['relay', 'notify', 'workers']);
    try {
      const alice = await signUp(t.app, { region: 'us-east' });
      const bob = await signUp(t.app, { region: 'eu-west' });
      await fund(t.app, alice, 10_000);
      const res = await moneyPost(t.app, alice, '/v1/transfers', { to: bob.id, amount: 2_500, currency: 'USD', note: 'rent' });
      expect(res.statusCode).toBe(201);
      expect(res.json().status).toBe('completed');
      expect((await balance(t.app, alice)).available).toBe(7_500);
      await until(async () => (await balance(t.app, bob)).available === 2_500, 5_000, "bob's credit on eu-west");
      const credit = (await history(bob)).find((h) => h.id === res.json().id);
      expect(credit).toMatchObject({ direction: 'credit', amount: 2_500, status: 'completed', note: 'rent' });
      expect((await history(alice)).filter((h) => h.id === res.json().id)).toHaveLength(1);
      expect(await clearingNet()).toBe(0n);
      const report = await reconcile(t.platform.db);
      expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    } finally {
      await roles.stop();
    }
  });

  it('applies a credit once however often and however concurrently its event is delivered', async () => {
    const alice = await signUp(t.app, { region: 'us-west' });
    const bob = await signUp(t.app, { region: 'apac' });
    await fund(t.app, alice, 5_000);
    const res = await moneyPost(t.app, alice, '/v1/transfers', { to: bob.id, amount: 1_000, currency: 'USD' });
    expect(res.statusCode).toBe(201);
    const event = await eventOf(alice, res.json().id);
    const clearing = createClearing(t.platform);
    await Promise.all([clearing.handle(event), clearing.handle(event), clearing.handle(event)]);
    await clearing.handle(event);
    expect((await balance(t.app, bob)).available).toBe(1_000);
    const [n] = await clusterOf(bob).sql<{ n: number }[]>`select count(*)::int as n from ledger_transfers where id = ${res.json().id}`;
    expect(n!.n).toBe(1);
    expect(await clearingNet()).toBe(0n);
  });

  it('reverses the transfer to the sender when the recipient cluster cannot credit it, once, and never credits it later', async () => {
    const alice = await signUp(t.app, { region: 'us-east' });
    const bob = await signUp(t.app, { region: 'us-west' });
    await fund(t.app, alice, 5_000);
    const res = await moneyPost(t.app, alice, '/v1/transfers', { to: bob.id, amount: 1_200, currency: 'USD' });
    expect(res.statusCode).toBe(201);
    const id = res.json().id as string;
    // the recipient's wallet disappears before the credit lands (a late currency mismatch)
    const bobSql = clusterOf(bob).sql;
    const [wallet] = await bobSql`delete from accounts where user_id = ${bob.id} and kind = 'user' returning *`;
    const event = await eventOf(alice, id);
    const clearing = createClearing(t.platform);
    await clearing.handle(event);
    await clearing.handle(event);
    expect((await balance(t.app, alice)).available).toBe(5_000);
    const back = (await history(alice)).find((h) => h.id === reversalId(id));
    expect(back).toMatchObject({ direction: 'credit', amount: 1_200, status: 'completed' });
    const [reversed] = await clusterOf(alice).sql`select payload from outbox where type = 'transfer.reversed' and payload->>'id' = ${id}`;
    expect(reversed!.payload).toMatchObject({ from: alice.id, to: bob.id, amount: 1200, declineCode: 'recipient_wallet_missing' });
    // the wallet is back: a late redelivery replays the refusal instead of crediting
    await bobSql`insert into accounts ${bobSql(wallet!)}`;
    await clearing.handle(event);
    expect((await balance(t.app, bob)).available).toBe(0);
    expect((await balance(t.app, alice)).available).toBe(5_000);
    expect(await clearingNet()).toBe(0n);
  });

  it('keeps transfers within one cluster in one transaction, clearing untouched', async () => {
    const a = await signUp(t.app, { region: 'eu-west' });
    const b = await signUp(t.app, { region: 'eu-west' });
    await fund(t.app, a, 3_000);
    const moved = async () => {
      const [row] = await clusterOf(a).sql<{ total: bigint }[]>`select coalesce(sum(debits_posted + credits_posted), 0)::bigint as total from accounts where kind = 'clearing'`;
      return row!.total;
    };
    const before = await moved();
    const res = await moneyPost(t.app, a, '/v1/transfers', { to: b.id, amount: 700, currency: 'USD' });
    expect(res.statusCode).toBe(201);
    expect((await balance(t.app, b)).available).toBe(700);
    expect(await moved()).toBe(before);
  });

  it('reconcile reports a transfer whose credit has not landed as in flight, and settled once it lands', async () => {
    const alice = await signUp(t.app, { region: 'apac' });
    const bob = await signUp(t.app, { region: 'us-east' });
    await fund(t.app, alice, 2_000);
    const res = await moneyPost(t.app, alice, '/v1/transfers', { to: bob.id, amount: 400, currency: 'USD' });
    const id = res.json().id as string;
    const during = await reconcileClearing(t.platform.db);
    expect(during.ok).toBe(true);
    expect(during.inFlight.find((f) => f.currency === 'USD')?.examples).toContain(id);
    await createClearing(t.platform).handle(await eventOf(alice, id));
    const after = await reconcileClearing(t.platform.db);
    expect(after.inFlight.flatMap((f) => f.examples)).not.toContain(id);
  });

  it('reconcile finds a transfer that was both credited and reversed', async () => {
    const alice = await signUp(t.app, { region: 'us-east' });
    const bob = await signUp(t.app, { region: 'apac' });
    await fund(t.app, alice, 2_000);
    const res = await moneyPost(t.app, alice, '/v1/transfers', { to: bob.id, amount: 300, currency: 'USD' });
    const id = res.json().id as string;
    await createClearing(t.platform).handle(await eventOf(alice, id));
    // a reversal written behind the consumer's back (the bug the check exists for)
    const sql = clusterOf(alice).sql;
    const [leg] = await sql<{ debit_account_id: string; credit_account_id: string; shard: number }[]>`select debit_account_id, credit_account_id, shard from ledger_transfers where id = ${id}`;
    await sql`insert into ledger_transfers (id, debit_account_id, credit_account_id, amount, currency, status, kind, ref_id, shard)
      values (${reversalId(id)}, ${leg!.credit_account_id}, ${leg!.debit_account_id}, 300, 'USD', 'posted', 'p2p', ${reversalId(id)}, ${leg!.shard})`;
    const report = await reconcileClearing(t.platform.db);
    expect(report.ok).toBe(false);
    expect(report.findings.find((f) => f.code === 'clearing_credited_and_reversed')?.examples[0]).toMatchObject({ id });
  });
});

describe('transfers between clusters on the JetStream bus', () => {
  let js: TestPlatform;
  let ns = '';
  beforeAll(async () => {
    const bus = await busEnv('jetstream');
    ns = bus.namespace;
    js = await createMultiClusterTestPlatform(4, { ...bus.env, RELAY_POLL_MS: '10' });
  });
  afterAll(async () => {
    await js?.close();
    if (ns) await dropNamespace(ns);
  });

  it('credits the recipient on the other cluster through the same consumer, unchanged', async () => {
    const roles = startEventRoles(js.platform, ['relay', 'notify', 'workers']);
    try {
      const alice = await signUp(js.app, { region: 'apac' });
      const bob = await signUp(js.app, { region: 'us-west' });
      await fund(js.app, alice, 4_000);
      const res = await moneyPost(js.app, alice, '/v1/transfers', { to: bob.id, amount: 1_500, currency: 'USD' });
      expect(res.statusCode).toBe(201);
      await until(async () => (await balance(js.app, bob)).available === 1_500, 15_000, "bob's credit through JetStream");
      const report = await reconcile(js.platform.db);
      expect(report.checks.filter((c) => !c.ok)).toEqual([]);
      expect(report.inFlight).toEqual([]);
    } finally {
      await roles.stop();
    }
  });
});
