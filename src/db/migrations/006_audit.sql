-- Audit log (issue 5): every money and security event, hash-chained, one chain per cluster.
-- src/audit/chain.ts appends (seq = previous + 1 under an advisory lock; hash = sha256(prev_hash
-- ‖ canonical row)) and verifies. Timestamps are written and read back as text with
-- microseconds so the hash covers exactly what is stored.
create table audit_log (
  seq bigint primary key,
  event_id text not null unique,       -- the bus event id: a redelivered event is not appended twice
  type text not null,
  user_key text not null,              -- the event's partition key: a user id, or a non-personal key
  shard smallint not null,
  at timestamptz not null,             -- when the event happened (its producer's time)
  recorded_at timestamptz not null,    -- when it was appended (the cluster's clock)
  data text not null,                  -- the whole event as canonical JSON (sorted keys), exact bytes
  prev_hash bytea not null check (octet_length(prev_hash) = 32),
  hash bytea not null check (octet_length(hash) = 32)
);

-- Append-only, in the database too: an UPDATE, DELETE or TRUNCATE fails, so changing a record
-- takes DDL (disabling this trigger) on top of write access. The hash chain is what proves a
-- record unchanged; this only stops accidents and makes tampering a deliberate, logged act.
create function audit_log_append_only() returns trigger language plpgsql as $$
begin
  raise exception 'audit_log is append-only: % refused', tg_op using errcode = 'insufficient_privilege';
end
$$;
create trigger audit_log_no_change before update or delete on audit_log
  for each row execute function audit_log_append_only();
create trigger audit_log_no_truncate before truncate on audit_log
  for each statement execute function audit_log_append_only();
