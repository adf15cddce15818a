-- Deleting a vault card checks that no payment method still references it (the foreign key
-- payment_methods.vault_token → vault_cards): without an index that check scanned every
-- payment method of the cluster once per card, which made the source cleanup of a shard move
-- (wallet shards move, src/db/shard-move.ts: every card of the shard deleted in one
-- transaction) quadratic. Cards are written rarely: the index costs nothing on a hot path.
create index payment_methods_vault_token on payment_methods (vault_token);
