-- Event backbone (issue 5).

-- Consumers' inbox: an effect in PostgreSQL records the event id in its own transaction, so a
-- redelivered event (at-least-once bus) finds its id and is skipped: effects happen once.
create table consumer_inbox (
  consumer text not null,
  event_id text not null,
  at timestamptz not null default now(),
  primary key (consumer, event_id)
);
create index consumer_inbox_age on consumer_inbox (at);

-- The relay marks rows sent; maintenance deletes sent rows after OUTBOX_RETENTION_HOURS.
create index outbox_sent_age on outbox (sent_at) where sent_at is not null;
