-- Outgoing webhooks (issue 5). Endpoints and their deliveries live on the owner's shard.

create table webhook_endpoints (
  id text primary key,
  user_id text not null,
  shard smallint not null check (shard between 0 and 999),
  url text not null check (length(url) <= 2048),
  description text check (length(description) <= 200),
  -- subscribed event types; '*' alone means every type
  event_types text[] not null check (cardinality(event_types) between 1 and 20),
  -- the signing secret, AES-256-GCM under the vault KEK named here (webhooks/secrets.ts)
  secret_kek_id text not null,
  secret_sealed bytea not null,
  created_at timestamptz not null default now()
);
-- the user's endpoints: listing, the per-user limit, and the consumer's fan-out
create index webhook_endpoints_user on webhook_endpoints (user_id, created_at);

-- One row per (event, endpoint). Deleting an endpoint deletes its deliveries; a job that finds
-- its delivery gone does nothing.
create table webhook_deliveries (
  id text primary key,
  endpoint_id text not null references webhook_endpoints (id) on delete cascade,
  user_id text not null,
  shard smallint not null check (shard between 0 and 999),
  event_id text not null,
  event_type text not null,
  -- the exact bytes sent (and signed) on every attempt
  body text not null,
  status text not null default 'pending' check (status in ('pending', 'delivered', 'dead')),
  -- every attempt ever made; job payloads name the attempt they make, so a stale or duplicate
  -- job (sweep, redelivery) finds the count moved on and does nothing
  attempts integer not null default 0 check (attempts >= 0),
  -- while pending: when the next attempt is due
  next_attempt_at timestamptz default now(),
  -- a worker's claim on the delivery while its attempt is in flight (no two at once)
  locked_until timestamptz,
  -- retries go on for WEBHOOK_RETRY_HOURS from here: the creation, or the last manual retry;
  -- backoff counts only the attempts made since
  window_started_at timestamptz not null default now(),
  attempts_before_window integer not null default 0,
  last_status_code smallint,
  last_error text,
  created_at timestamptz not null default now(),
  delivered_at timestamptz,
  -- (event_id first) also serves the consumer's look-up of an event's deliveries
  unique (event_id, endpoint_id)
);
-- GET /v1/webhooks/{id}/deliveries, newest first (ids sort by time), with and without status
create index webhook_deliveries_endpoint on webhook_deliveries (endpoint_id, id);
create index webhook_deliveries_endpoint_status on webhook_deliveries (endpoint_id, status, id);
-- the sweep: pending deliveries overdue
create index webhook_deliveries_due on webhook_deliveries (next_attempt_at) where status = 'pending';
-- the purge: finished deliveries by age
create index webhook_deliveries_finished_age on webhook_deliveries (created_at) where status <> 'pending';
