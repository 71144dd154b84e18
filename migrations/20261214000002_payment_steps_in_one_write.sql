-- migrate:up

-- One write may record more than one transition of a payment, each its own lifecycle event (event_seq advances
-- once per event): a charge the provider answers as confirmed and succeeded goes created → processing →
-- completed, stored as one UPDATE to its last state. The guard lets a write skip the state between only so, with
-- both events: created → completed with event_seq advanced by two or more.
CREATE OR REPLACE FUNCTION paysaga.guard_payment_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status IN ('completed', 'failed', 'canceled') THEN
    RAISE EXCEPTION 'payment % is % (terminal) and cannot change', OLD.payment_id, OLD.status
      USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.status <> OLD.status AND NOT (
       (OLD.status = 'created'    AND NEW.status IN ('pending', 'processing', 'failed', 'canceled')) OR
       (OLD.status = 'pending'    AND NEW.status IN ('processing', 'completed', 'failed', 'canceled')) OR
       (OLD.status = 'processing' AND NEW.status IN ('pending', 'completed', 'failed')) OR
       (OLD.status = 'created'    AND NEW.status = 'completed' AND NEW.event_seq >= OLD.event_seq + 2)) THEN
    RAISE EXCEPTION 'invalid payment transition % -> % for %', OLD.status, NEW.status, OLD.payment_id
      USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.payment_id <> OLD.payment_id OR NEW.tenant_id <> OLD.tenant_id OR NEW.amount_micros <> OLD.amount_micros
     OR NEW.currency <> OLD.currency THEN
    RAISE EXCEPTION 'payment identity and amount are immutable' USING ERRCODE = 'check_violation';
  END IF;
  NEW.updated_at := now();
  RETURN NEW;
END $$;

-- migrate:down
CREATE OR REPLACE FUNCTION paysaga.guard_payment_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status IN ('completed', 'failed', 'canceled') THEN
    RAISE EXCEPTION 'payment % is % (terminal) and cannot change', OLD.payment_id, OLD.status
      USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.status <> OLD.status AND NOT (
       (OLD.status = 'created'    AND NEW.status IN ('pending', 'processing', 'failed', 'canceled')) OR
       (OLD.status = 'pending'    AND NEW.status IN ('processing', 'completed', 'failed', 'canceled')) OR
       (OLD.status = 'processing' AND NEW.status IN ('pending', 'completed', 'failed'))) THEN
    RAISE EXCEPTION 'invalid payment transition % -> % for %', OLD.status, NEW.status, OLD.payment_id
      USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.payment_id <> OLD.payment_id OR NEW.tenant_id <> OLD.tenant_id OR NEW.amount_micros <> OLD.amount_micros
     OR NEW.currency <> OLD.currency THEN
    RAISE EXCEPTION 'payment identity and amount are immutable' USING ERRCODE = 'check_violation';
  END IF;
  NEW.updated_at := now();
  RETURN NEW;
END $$;
