-- Online shard moves (src/db/shard-move.ts): a logical shard leaves the cluster the topology file
-- gives it for another one, while the platform runs. Every cluster gets every table below; which
-- ones hold rows depends on the cluster's part in a move (source, target, or neither).

-- Routing overrides, written on EVERY cluster when a move flips: a process loads them from all
-- clusters and, per shard, the highest version wins (src/db/index.ts), so one unreachable
-- cluster does not hide a flip. Versions only grow (a new flip takes the maximum over all
-- clusters plus one).
create table shard_map (
  shard smallint primary key check (shard between 0 and 999),
  cluster text not null,
  version bigint not null check (version > 0),
  moved_at timestamptz not null default now()
);

-- Source side: the journal of moves of this cluster's shards. A move that stopped half-way is
-- continued by running it again (same id: its money legs are found by ref_id = the move's id).
create table shard_moves (
  id text primary key,                 -- mov_<shard><time><random>
  shard smallint not null check (shard between 0 and 999),
  from_cluster text not null,
  to_cluster text not null,
  -- copying → fenced → closed (the shard's money left this cluster: no way back) → done;
  -- copying or fenced → aborted
  status text not null check (status in ('copying', 'fenced', 'closed', 'done', 'aborted')),
  detail text,
  started_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create unique index shard_moves_one_open on shard_moves (shard) where status in ('copying', 'fenced', 'closed');

-- Source side: shards this cluster must not write any more (moving, or moved away). The fence
-- triggers (created from this table by the mover) refuse every insert and update of their rows
-- with SQLSTATE 23514 and constraint name shard_fence_<shard>; the ledger engine and the HTTP
-- error handler recognise it (src/db/shard-map.ts). `deletes`: deletes are refused too (only
-- while the move's final step runs, so maintenance may purge the stale rows afterwards).
create table shard_fences (
  shard smallint primary key check (shard between 0 and 999),
  deletes boolean not null default false,
  since timestamptz not null default now()
);

-- Source side: keys of the shard's rows changed while a move copies (capture triggers), so the
-- catch-up and the fenced final pass copy what changed instead of everything again.
create table shard_move_log (
  seq bigint generated always as identity primary key,
  shard smallint not null,
  tbl text not null,
  key jsonb not null
);
create index shard_move_log_shard on shard_move_log (shard, seq);

-- Target side: shards copied here by a move. Their history rows up to arrived_at describe
-- movements that stayed in the source's ledger (a move carries balances, not ledger rows), so
-- reconcile does not ask this cluster's ledger for them. An aborted move sets arrived_at too:
-- its copies are inert (no balances, no routing).
create table shard_arrivals (
  move_id text primary key,
  shard smallint not null check (shard between 0 and 999),
  from_cluster text not null,
  started_at timestamptz not null default now(),
  arrived_at timestamptz
);
create index shard_arrivals_shard on shard_arrivals (shard);

-- The move's money legs: a user account is closed on the source (wallet → source clearing) and
-- opened on the target (target clearing → wallet) under one id, like a transfer between clusters.
alter table ledger_transfers drop constraint ledger_transfers_kind_check;
alter table ledger_transfers add constraint ledger_transfers_kind_check
  check (kind in ('p2p', 'topup', 'payment', 'capture', 'void', 'expire', 'refund', 'fee', 'move')) not valid;
alter table ledger_transfers validate constraint ledger_transfers_kind_check;

-- hashShard of src/shared/ids.ts (FNV-1a 32-bit over UTF-16 code units, modulo 1000), for rows
-- routed by a hash instead of their user's shard (the login directory). Must stay identical to
-- the TypeScript; src/db/shard-move.test.ts compares them.
create function wallet_hash_shard(key text) returns smallint language plpgsql immutable strict parallel safe as $$
declare
  h bigint := 2166136261;
  cp integer;
  i integer;
begin
  for i in 1 .. length(key) loop
    cp := ascii(substr(key, i, 1));
    if cp > 65535 then
      -- a surrogate pair in UTF-16
      h := ((h # (55296 + ((cp - 65536) >> 10))) * 16777619) & 4294967295;
      h := ((h # (56320 + ((cp - 65536) & 1023))) * 16777619) & 4294967295;
    else
      h := ((h # cp) * 16777619) & 4294967295;
    end if;
  end loop;
  return (h % 1000)::smallint;
end
$$;
-- the move's reads of the directory entries of one shard
create index email_directory_hash_shard on email_directory (wallet_hash_shard(email));

-- The fence: raised by the triggers the mover creates (`when` selects the fenced shards, so other
-- rows never call this). The mover's own writes set wallet.shard_move = 'on' in their transaction.
create function shard_fence_refuse() returns trigger language plpgsql as $$
declare
  s integer;
  r record;
begin
  if tg_op = 'DELETE' then r := old; else r := new; end if;
  if current_setting('wallet.shard_move', true) = 'on' then return r; end if;
  if tg_argv[0] = 'email' then s := wallet_hash_shard(r.email); else s := r.shard; end if;
  raise exception 'shard % is fenced on this cluster (moving or moved away): route it again', s
    using errcode = 'check_violation', constraint = 'shard_fence_' || s, table = tg_table_name;
end
$$;

-- Change capture while a move copies: tg_argv = [table, 'shard' | 'email', key columns...]. The
-- mover creates the triggers with a `when` that selects the shards being copied.
create function shard_move_capture() returns trigger language plpgsql as $$
declare
  r jsonb;
  k jsonb := '{}';
  s integer;
  i integer;
begin
  if tg_op = 'DELETE' then r := to_jsonb(old); else r := to_jsonb(new); end if;
  if tg_argv[1] = 'email' then s := wallet_hash_shard(r ->> 'email'); else s := (r ->> 'shard')::integer; end if;
  for i in 2 .. tg_nargs - 1 loop
    k := k || jsonb_build_object(tg_argv[i], r -> tg_argv[i]);
  end loop;
  insert into shard_move_log (shard, tbl, key) values (s, tg_argv[0], k);
  return null;
end
$$;
