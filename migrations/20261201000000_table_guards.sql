-- migrate:up

-- Every table now gets its guards from the helpers of 20261121000000_table_helpers.sql. On a database created
-- before them this brings the older tables in line: refund_events also refuses TRUNCATE, and the aggregates
-- refuse DELETE through the one generic trigger function.
SELECT paysaga.make_append_only(t::regclass)
  FROM unnest(ARRAY['paysaga.payment_events', 'paysaga.refund_events', 'paysaga.dispute_events',
                    'paysaga.audit_log']) AS t;
SELECT paysaga.make_never_deleted(t::regclass)
  FROM unnest(ARRAY['paysaga.payments', 'paysaga.refunds', 'paysaga.disputes']) AS t;
DROP FUNCTION IF EXISTS paysaga.forbid_payment_delete();

-- migrate:down
-- Nothing to undo: the guards are the ones the tables should always have had.
