-- The schema of one cluster. Every row of a user carries its logical shard (0-999) so shards can
-- be moved between clusters by copying `where shard = N`. Money is bigint minor units everywhere.

create table users (
  id text primary key,
  shard smallint not null check (shard between 0 and 999),
  email text not null,
  name text not null,
  kind text not null check (kind in ('person', 'merchant')),
  region text not null,
  password_hash text not null,
  credentials_changed_at timestamptz not null default now(),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index users_shard on users (shard);

-- Login directory: email -> user. Routed by a hash of the email (not the user's shard), so a
-- login finds the user with no scatter-gather once shards live on several clusters.
create table email_directory (
  email text primary key,
  user_id text not null,
  shard smallint not null,
  created_at timestamptz not null default now()
);

-- Double-entry accounts. User wallets (kind 'user') and system accounts: card funding, merchant
-- settlement, fees and cross-cluster clearing, each split into sub-accounts (sub) so that busy
-- system accounts never serialise a cluster. Balances follow TigerBeetle's model: posted and
-- pending, debits and credits; available = credits_posted - debits_posted - debits_pending.
create table accounts (
  id text primary key,
  shard smallint check (shard between 0 and 999), -- null for system accounts (they belong to a cluster)
  user_id text references users (id),
  kind text not null check (kind in ('user', 'card_funding', 'merchant_settlement', 'fees', 'clearing')),
  currency char(3) not null check (currency ~ '^[A-Z]{3}$'),
  debits_posted bigint not null default 0 check (debits_posted >= 0),
  credits_posted bigint not null default 0 check (credits_posted >= 0),
  debits_pending bigint not null default 0 check (debits_pending >= 0),
  credits_pending bigint not null default 0 check (credits_pending >= 0),
  version bigint not null default 0,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint user_accounts_have_a_user check ((kind = 'user') = (user_id is not null and shard is not null)),
  constraint user_available_never_negative check (kind <> 'user' or credits_posted - debits_posted - debits_pending >= 0)
);
create unique index accounts_one_wallet_per_currency on accounts (user_id, currency) where kind = 'user';

-- Ledger transfers: one row per movement, debit one account, credit another. A pending transfer
-- (a hold) is later posted or voided by a transfer that names it in pending_id; the unique index
-- on pending_id means a hold is resolved at most once. Ids are derived from the business id
-- (txn_..., pay_...:capture) so a retried request can never apply twice.
create table ledger_transfers (
  id text primary key,
  debit_account_id text not null references accounts (id),
  credit_account_id text not null references accounts (id),
  amount bigint not null check (amount > 0),
  currency char(3) not null,
  -- pending: a hold; posted: final; voided: a hold released. A resolving transfer is 'posted'
  -- (capture: amount moved) or 'voided' (release).
  status text not null check (status in ('pending', 'posted', 'voided')),
  pending_id text references ledger_transfers (id),
  kind text not null check (kind in ('p2p', 'topup', 'payment', 'capture', 'void', 'expire', 'refund', 'fee')),
  ref_id text not null,
  shard smallint not null check (shard between 0 and 999), -- the initiating user's shard
  created_at timestamptz not null default now(),
  constraint distinct_accounts check (debit_account_id <> credit_account_id)
);
create unique index ledger_transfers_resolve_once on ledger_transfers (pending_id) where pending_id is not null;
create index ledger_transfers_ref on ledger_transfers (ref_id);

-- History: one row per movement of a user's money per side, partitioned by month. Partitions
-- are created ahead by the maintenance role (src/db/partitions.ts). created_at is the time
-- encoded in the id, so a lookup by id prunes to one partition.
create table transactions (
  id text not null,
  user_id text not null,
  shard smallint not null,
  wallet_id text not null,
  type text not null check (type in ('transfer', 'topup', 'payment', 'refund')),
  direction text not null check (direction in ('debit', 'credit')),
  amount bigint not null check (amount > 0),
  currency char(3) not null,
  status text not null check (status in ('pending', 'completed', 'voided')),
  counterparty text,
  note text,
  created_at timestamptz not null,
  updated_at timestamptz not null default now(),
  primary key (user_id, id, created_at)
) partition by range (created_at);
-- Newest-first history pages (keyset on created_at, id) with optional currency/type filters.
create index transactions_history on transactions (user_id, created_at desc, id desc);

-- Business objects.
create table vault_cards (
  token text primary key,
  shard smallint not null,
  kek_id text not null,
  wrapped_dek bytea not null, -- iv | tag | AES-256-GCM(data key) under the KEK kek_id
  ciphertext bytea not null, -- iv | tag | AES-256-GCM(card number) under the card's data key
  created_at timestamptz not null default now(),
  rewrapped_at timestamptz
);

create table payment_methods (
  id text primary key,
  shard smallint not null,
  user_id text not null references users (id),
  type text not null check (type = 'card'),
  vault_token text not null references vault_cards (token),
  brand text not null,
  last4 char(4) not null,
  exp_month smallint not null check (exp_month between 1 and 12),
  exp_year smallint not null,
  created_at timestamptz not null default now(),
  deleted_at timestamptz
);
create index payment_methods_user on payment_methods (user_id) where deleted_at is null;

create table topups (
  id text primary key,
  shard smallint not null,
  user_id text not null references users (id),
  wallet_id text references accounts (id),
  payment_method_id text not null,
  amount bigint not null check (amount > 0),
  currency char(3) not null,
  status text not null check (status in ('completed', 'declined')),
  decline_code text,
  network_ref text,
  created_at timestamptz not null
);

create table payments (
  id text primary key,
  shard smallint not null,
  payer_id text not null references users (id),
  merchant_id text not null references users (id),
  payer_wallet_id text references accounts (id),
  merchant_wallet_id text references accounts (id),
  payment_method_id text,
  source text not null check (source in ('wallet', 'card')),
  amount bigint not null check (amount > 0),
  currency char(3) not null,
  status text not null check (status in ('authorized', 'captured', 'voided', 'expired', 'declined')),
  decline_code text,
  captured_amount bigint not null default 0 check (captured_amount >= 0 and captured_amount <= amount),
  refunded_amount bigint not null default 0 check (refunded_amount >= 0 and refunded_amount <= captured_amount),
  network_ref text,
  expires_at timestamptz,
  created_at timestamptz not null,
  updated_at timestamptz not null default now()
);
create index payments_expiring on payments (expires_at) where status = 'authorized';
create index payments_merchant on payments (merchant_id, created_at desc);

create table refunds (
  id text primary key,
  shard smallint not null,
  payment_id text not null references payments (id),
  amount bigint not null check (amount > 0),
  currency char(3) not null,
  created_at timestamptz not null
);
create index refunds_payment on refunds (payment_id);

-- Idempotency records, written in the same transaction as the effect they record.
create table idempotency_keys (
  user_id text not null,
  key text not null,
  shard smallint not null,
  request_hash text not null,
  status_code smallint not null,
  response text not null, -- the exact bytes first answered, replayed verbatim
  created_at timestamptz not null default now(),
  primary key (user_id, key)
);
create index idempotency_keys_age on idempotency_keys (created_at);

-- Transactional outbox: every money event, in the transaction of its effect. The relay (events
-- issue) publishes unsent rows in id order and marks them sent.
create table outbox (
  seq bigint generated always as identity primary key,
  event_id text not null unique,
  topic text not null,
  partition_key text not null,
  shard smallint not null,
  type text not null,
  payload jsonb not null,
  created_at timestamptz not null default now(),
  sent_at timestamptz
);
create index outbox_unsent on outbox (seq) where sent_at is null;

-- Failed logins, for per-account and per-address limits shared by every api process.
create table login_failures (
  bucket text not null,
  at timestamptz not null default now()
);
create index login_failures_bucket on login_failures (bucket, at);
