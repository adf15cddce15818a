-- Fraud scoring (issue 7). users.credentials_changed_at already exists (001, set at sign-up):
-- a later value than created_at is a password change. Cards keep only their BIN's country
-- (src/fraud/bins.ts), never the BIN: null when the BIN is not in the table.
alter table payment_methods add column bin_country char(2) check (bin_country ~ '^[A-Z]{2}$');

-- The fraud context loader (src/fraud/context.ts) reads a user's cards including deleted ones
-- (a removed card is a payment-method change); payment_methods_user covers only live ones.
create index payment_methods_user_all on payment_methods (user_id);
