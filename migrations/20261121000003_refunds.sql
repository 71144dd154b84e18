-- migrate:up

-- Refunds: several partial refunds per payment, never more in total than was captured. The cap is enforced
-- here, under a lock on the payment row, so concurrent requests cannot over-refund between them.
CREATE TABLE paysaga.refunds (
  refund_id          text NOT NULL,
  tenant_id          uuid NOT NULL,
  payment_id         text NOT NULL,
  amount_micros      bigint NOT NULL CHECK (amount_micros > 0),
  currency           char(3) NOT NULL,
  status             text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed', 'canceled')),
  reason             text,
  idempotency_key    text,
  provider_refund_id text,
  failure_code       text,
  workflow_id        text NOT NULL,
  event_seq          integer NOT NULL DEFAULT 1,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, refund_id),
  FOREIGN KEY (tenant_id, payment_id) REFERENCES paysaga.payments
);
CREATE INDEX refunds_by_payment ON paysaga.refunds (tenant_id, payment_id, created_at);
CREATE UNIQUE INDEX refunds_idempotency_key ON paysaga.refunds (tenant_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;

CREATE TABLE paysaga.refund_events (
  transition_id  text PRIMARY KEY,
  tenant_id      uuid NOT NULL,
  refund_id      text NOT NULL,
  seq            integer NOT NULL,
  type           text NOT NULL,
  old_status     text,
  new_status     text NOT NULL,
  metadata       jsonb NOT NULL DEFAULT '{}',
  actor          text NOT NULL,
  correlation_id text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, refund_id, seq),
  FOREIGN KEY (tenant_id, refund_id) REFERENCES paysaga.refunds
);
SELECT paysaga.make_append_only('paysaga.refund_events');

CREATE FUNCTION paysaga.guard_refund_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  p record;
  taken bigint;
BEGIN
  SELECT status, amount_micros, currency INTO p FROM paysaga.payments
   WHERE tenant_id = NEW.tenant_id AND payment_id = NEW.payment_id FOR UPDATE;
  IF p.status IS DISTINCT FROM 'completed' THEN
    RAISE EXCEPTION 'payment % is %, only completed payments can be refunded', NEW.payment_id, p.status
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  IF p.currency <> NEW.currency THEN
    RAISE EXCEPTION 'refund currency % differs from payment currency %', NEW.currency, p.currency
      USING ERRCODE = 'check_violation';
  END IF;
  SELECT coalesce(sum(amount_micros), 0) INTO taken FROM paysaga.refunds
   WHERE tenant_id = NEW.tenant_id AND payment_id = NEW.payment_id AND status IN ('pending', 'succeeded');
  IF taken + NEW.amount_micros > p.amount_micros THEN
    RAISE EXCEPTION 'refund of % exceeds the refundable % of payment %', NEW.amount_micros,
      p.amount_micros - taken, NEW.payment_id USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refunds_cap BEFORE INSERT ON paysaga.refunds
  FOR EACH ROW EXECUTE FUNCTION paysaga.guard_refund_insert();

CREATE FUNCTION paysaga.guard_refund_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status <> 'pending' THEN
    RAISE EXCEPTION 'refund % is % (terminal) and cannot change', OLD.refund_id, OLD.status
      USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.amount_micros <> OLD.amount_micros OR NEW.payment_id <> OLD.payment_id OR NEW.tenant_id <> OLD.tenant_id THEN
    RAISE EXCEPTION 'refund identity and amount are immutable' USING ERRCODE = 'check_violation';
  END IF;
  NEW.updated_at := now();
  RETURN NEW;
END $$;
CREATE TRIGGER refunds_guard BEFORE UPDATE ON paysaga.refunds
  FOR EACH ROW EXECUTE FUNCTION paysaga.guard_refund_update();
SELECT paysaga.make_never_deleted('paysaga.refunds');
SELECT paysaga.make_tenant_table('paysaga.refunds');
SELECT paysaga.make_tenant_table('paysaga.refund_events');
GRANT SELECT, INSERT, UPDATE ON paysaga.refunds TO paysaga_app;
GRANT SELECT, INSERT ON paysaga.refund_events TO paysaga_app;

-- The sandbox provider's refunds settle asynchronously, like Stripe's can.
ALTER TABLE sandbox.refunds ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}';
ALTER TABLE sandbox.refunds ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE sandbox.refunds ADD COLUMN failure_reason text;

-- migrate:down
ALTER TABLE sandbox.refunds DROP COLUMN metadata, DROP COLUMN updated_at, DROP COLUMN failure_reason;
DROP TABLE paysaga.refund_events;
DROP TABLE paysaga.refunds;
DROP FUNCTION paysaga.guard_refund_insert();
DROP FUNCTION paysaga.guard_refund_update();
