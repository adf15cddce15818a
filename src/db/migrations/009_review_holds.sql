-- Holds for fraud review beyond transfers. A top-up held for review: the card is authorized (not captured) and the wallet's credit
-- is pending until an operator approves (capture, post) or declines (void).
alter table topups drop constraint topups_status_check;
alter table topups add constraint topups_status_check check (status in ('completed', 'declined', 'pending_review'));

-- Merchant payments are held for review too (an authorization the merchant cannot capture yet).
alter table fraud_reviews drop constraint fraud_reviews_kind_check;
alter table fraud_reviews add constraint fraud_reviews_kind_check check (kind in ('transfer', 'topup', 'payment'));
