-- The maintenance purge of expired login failures (`at < cutoff`) had only the (bucket, at)
-- index, led by the bucket: every round scanned the whole table, which a credential-stuffing
-- attack fills with millions of rows in its 15-minute window. Failed logins are the only writes.
create index login_failures_age on login_failures (at);
