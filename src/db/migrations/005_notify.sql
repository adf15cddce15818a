-- Notifications (issue 5): per-user channel preferences. No row means the defaults (email and
-- push on, nothing muted), so sign-up writes nothing here. Lives on the user's shard, next to
-- the users row; the notify consumer reads it by primary key in a batch (user_id = any(...)).
create table notification_preferences (
  user_id text primary key references users (id) on delete cascade,
  shard smallint not null check (shard between 0 and 999),
  email boolean not null default true,
  push boolean not null default true,
  -- event types (transfer.completed, ...) the user gets no notification for; the API checks
  -- them against the known types and bounds the list
  muted_event_types text[] not null default '{}',
  updated_at timestamptz not null default now()
);
