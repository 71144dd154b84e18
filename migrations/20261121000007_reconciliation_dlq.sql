-- migrate:up

-- Reconciliation looks across tenants for payments stuck waiting on the provider. It runs as a scheduled
-- workflow with the application role, so the search goes through one narrow owner function that returns ids
-- only; every change afterwards happens in the payment's own tenant transaction.
CREATE FUNCTION paysaga.stale_payments(p_older_than_seconds double precision, p_limit integer)
  RETURNS TABLE (tenant_id uuid, payment_id text, status text, provider_intent_id text, workflow_id text,
                 updated_at timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
    SELECT p.tenant_id, p.payment_id, p.status, p.provider_intent_id, p.workflow_id, p.updated_at
      FROM paysaga.payments p
     WHERE p.status IN ('pending', 'processing')
       AND p.updated_at < now() - make_interval(secs => p_older_than_seconds)
     ORDER BY p.updated_at
     LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION paysaga.stale_payments(double precision, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paysaga.stale_payments(double precision, integer) TO paysaga_app;

-- Dead letters: provider work whose retries ran out. The saga waits for an operator to replay it (exactly once:
-- the status guard) or gives up after its hold period.
CREATE TABLE paysaga.dead_letters (
  dlq_id       text NOT NULL,
  tenant_id    uuid NOT NULL,
  workflow_id  text NOT NULL,
  payment_id   text,
  step         text NOT NULL,
  reason       text NOT NULL,
  input        jsonb NOT NULL,
  status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'replayed', 'expired')),
  created_at   timestamptz NOT NULL DEFAULT now(),
  resolved_at  timestamptz,
  resolved_by  text,
  PRIMARY KEY (tenant_id, dlq_id)
);
CREATE INDEX dead_letters_open ON paysaga.dead_letters (status, created_at);
SELECT paysaga.make_tenant_table('paysaga.dead_letters');
GRANT SELECT, INSERT, UPDATE ON paysaga.dead_letters TO paysaga_app;

-- Operators list dead letters across tenants (ids and reasons, never card data).
CREATE FUNCTION paysaga.open_dead_letters(p_limit integer)
  RETURNS TABLE (dlq_id text, tenant_id uuid, workflow_id text, payment_id text, step text, reason text,
                 status text, created_at timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
    SELECT d.dlq_id, d.tenant_id, d.workflow_id, d.payment_id, d.step, d.reason, d.status, d.created_at
      FROM paysaga.dead_letters d ORDER BY d.created_at DESC LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION paysaga.open_dead_letters(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paysaga.open_dead_letters(integer) TO paysaga_app;

-- migrate:down
DROP FUNCTION paysaga.open_dead_letters(integer);
DROP TABLE paysaga.dead_letters;
DROP FUNCTION paysaga.stale_payments(double precision, integer);
