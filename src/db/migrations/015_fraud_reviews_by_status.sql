-- The review queue (GET /v1/admin/fraud/reviews?status=…) reads one status oldest or newest
-- first. Only pending reviews had an index, a partial one that a generic plan of `status = $1`
-- cannot use; approved and declined ones, kept for good, were a full scan and a sort per call.
-- One index on (status, created_at) serves every status, with any plan.
create index fraud_reviews_status on fraud_reviews (status, created_at);
drop index fraud_reviews_pending;
