-- Lifecycle of the history's monthly partitions (src/db/partitions.ts, run by the maintenance
-- role): hot in `transactions`, moved after PARTITIONS_HOT_DAYS to `archive.transactions` (warm,
-- same cluster, still read by the history API for old ranges), dropped after PARTITIONS_WARM_DAYS.
-- A month moves by DETACH, SET SCHEMA archive, ATTACH in one transaction, so the archive parent
-- must accept the hot partitions as they are: the same columns in the same order, the same NOT
-- NULL and CHECK constraints, the same primary key and indexes (ATTACH then adopts the
-- partition's indexes instead of building new ones). A later migration that changes
-- `transactions` must change `archive.transactions` the same way.
create schema archive;
create table archive.transactions (like transactions including defaults including constraints) partition by range (created_at);
alter table archive.transactions add primary key (user_id, created_at, id);

-- Completed history pages (GET /v1/transactions?status=completed: the statement view) read this
-- index alone: partial (no pending or voided entries to skip), keyed for the keyset order
-- (created_at desc, id desc: no sort step for the id tie-break), covering every column a page
-- returns (an index-only scan touches no heap page; the heap is in insert order, so a user's rows
-- sit on as many heap pages as there are rows). Notes are at most 280 characters, well under the
-- B-tree entry limit. Declared on the partitioned parents, so every partition has it: the
-- existing ones now, each one ensurePartitions creates later, and each one moved to the archive
-- (ATTACH adopts the moved partition's copy). This builds it inside the migration's transaction,
-- blocking writes to the history while it builds: fine for a new or small cluster. On a big live
-- one, run CREATE INDEX ... ON ONLY transactions first, build each partition's index with CREATE
-- INDEX CONCURRENTLY and ALTER INDEX ... ATTACH PARTITION it (same name and definition): this file then skips it.
create index if not exists transactions_completed on transactions (user_id, created_at desc, id desc)
  include (type, direction, amount, currency, status, counterparty, note, wallet_id) where status = 'completed';
create index if not exists transactions_completed on archive.transactions (user_id, created_at desc, id desc)
  include (type, direction, amount, currency, status, counterparty, note, wallet_id) where status = 'completed';
