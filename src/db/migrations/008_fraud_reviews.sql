-- Fraud reviews (issue 7): a money request scored "review" is held as a pending ledger transfer
-- (the sender's funds move to debits_pending) until an operator approves (post) or declines
-- (void). One row per held request, on the cluster of the user's shard.
create table fraud_reviews (
  id text primary key,                -- the held transfer's id (txn_… or top_…)
  shard smallint not null,
  user_id text not null,
  kind text not null check (kind in ('transfer', 'topup')),
  counterparty_id text,
  amount bigint not null check (amount > 0),
  currency text not null,
  score double precision not null,
  reasons text[] not null,
  status text not null default 'pending' check (status in ('pending', 'approved', 'declined')),
  decided_by text,
  decided_at timestamptz,
  created_at timestamptz not null
);
create index fraud_reviews_pending on fraud_reviews (created_at) where status = 'pending';
