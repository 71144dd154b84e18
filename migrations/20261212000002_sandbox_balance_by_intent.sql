-- migrate:up

-- The sandbox provider answers a confirmed intent with the balance transaction of its charge, found by the
-- intent's id: without this index that lookup scanned every balance transaction of the platform, one more per
-- payment taken.
CREATE INDEX sandbox_balance_transactions_by_intent
  ON sandbox.balance_transactions (payment_intent_id) WHERE payment_intent_id IS NOT NULL;

-- migrate:down
DROP INDEX sandbox.sandbox_balance_transactions_by_intent;
