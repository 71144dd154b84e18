-- migrate:up

-- Payment methods as entities: the provider's card fingerprint (equal for two tokens of one card number), the
-- issuing country, and detachment. exp_month / exp_year exist since the core migration. Still tokens only.
ALTER TABLE paysaga.payment_methods
  ADD COLUMN fingerprint text,
  ADD COLUMN country     char(2),
  ADD COLUMN detached_at timestamptz,
  ADD CONSTRAINT payment_methods_exp_month CHECK (exp_month BETWEEN 1 AND 12);

-- One active method per card per customer: duplicate detection is `INSERT … ON CONFLICT DO NOTHING` on this
-- index, so two concurrent attaches of the same card cannot both create a row. It also serves the lookup by
-- (tenant, customer, fingerprint). Detached methods and methods without a fingerprint are outside it.
CREATE UNIQUE INDEX payment_methods_active_fingerprint
  ON paysaga.payment_methods (tenant_id, customer_id, fingerprint)
  WHERE detached_at IS NULL AND fingerprint IS NOT NULL;
CREATE INDEX payment_methods_by_customer ON paysaga.payment_methods (tenant_id, customer_id, created_at DESC);

-- A payment method's identity never changes, and detaching is final (no re-attach by UPDATE: attach anew).
CREATE FUNCTION paysaga.guard_payment_method_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.detached_at IS NOT NULL THEN
    RAISE EXCEPTION 'payment method % is detached and cannot change', OLD.payment_method_id
      USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.payment_method_id <> OLD.payment_method_id OR NEW.tenant_id <> OLD.tenant_id
     OR NEW.customer_id <> OLD.customer_id OR NEW.provider <> OLD.provider
     OR NEW.provider_token <> OLD.provider_token OR NEW.fingerprint IS DISTINCT FROM OLD.fingerprint THEN
    RAISE EXCEPTION 'payment method identity is immutable' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER payment_methods_guard BEFORE UPDATE ON paysaga.payment_methods
  FOR EACH ROW EXECUTE FUNCTION paysaga.guard_payment_method_update();

-- The audit trail: every access to payment-method data and every money-moving action. Append-only.
CREATE TABLE paysaga.audit_log (
  audit_id       bigserial PRIMARY KEY,
  tenant_id      uuid NOT NULL REFERENCES paysaga.tenants,
  actor          text NOT NULL,                -- the API key id, or 'system'
  action         text NOT NULL,                -- e.g. payment_method.read, payment.create, audit.read
  resource_type  text NOT NULL,
  resource_id    text,
  correlation_id text,                         -- the payment's workflow id for payment actions
  request_id     text,                         -- X-Request-Id when sent, else generated per request
  details        jsonb NOT NULL DEFAULT '{}',
  at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_newest_first ON paysaga.audit_log (tenant_id, audit_id DESC);
CREATE INDEX audit_log_by_action ON paysaga.audit_log (tenant_id, action, audit_id DESC);
CREATE INDEX audit_log_by_resource ON paysaga.audit_log (tenant_id, resource_id, audit_id DESC);

SELECT paysaga.make_append_only('paysaga.audit_log');
SELECT paysaga.make_tenant_table('paysaga.audit_log');

GRANT SELECT, INSERT ON paysaga.audit_log TO paysaga_app;
GRANT USAGE ON SEQUENCE paysaga.audit_log_audit_id_seq TO paysaga_app;

-- migrate:down
DROP TABLE paysaga.audit_log;
DROP TRIGGER payment_methods_guard ON paysaga.payment_methods;
DROP FUNCTION paysaga.guard_payment_method_update();
DROP INDEX paysaga.payment_methods_by_customer;
DROP INDEX paysaga.payment_methods_active_fingerprint;
ALTER TABLE paysaga.payment_methods DROP CONSTRAINT payment_methods_exp_month, DROP COLUMN detached_at, DROP COLUMN country, DROP COLUMN fingerprint;
