-- migrate:up

-- Disputes (chargebacks). One row per provider dispute, driven by its DisputeWorkflow (workflows/dispute.py).
--
--   needs_response ──► under_review ──► won | lost
--         │  ╲──► won | lost            (closed by the provider without our evidence: withdrawn, deadline)
--         └────► accepted               (finance conceded; a loss)
--
-- won, lost and accepted are terminal: the row never changes again, in any column. The payment row itself is
-- never touched (payments are immutable once terminal, see guard_payment_update): whether a payment was lost to
-- a dispute is read from this table (GET /v1/payments/{id}/disputes → dispute_status).
CREATE TABLE paysaga.disputes (
  dispute_id              text NOT NULL,            -- dsp_…, derived from (provider, provider_dispute_id)
  tenant_id               uuid NOT NULL,
  payment_id              text NOT NULL,
  provider                text NOT NULL,
  provider_dispute_id     text NOT NULL UNIQUE,
  amount_micros           bigint NOT NULL CHECK (amount_micros > 0),
  currency                char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  reason                  text,
  status                  text NOT NULL DEFAULT 'needs_response'
                          CHECK (status IN ('needs_response', 'under_review', 'won', 'lost', 'accepted')),
  evidence_due_by         timestamptz,
  funds_withdrawn_micros  bigint NOT NULL DEFAULT 0 CHECK (funds_withdrawn_micros >= 0),
  funds_reinstated_micros bigint NOT NULL DEFAULT 0 CHECK (funds_reinstated_micros >= 0),
  evidence                jsonb NOT NULL DEFAULT '{}',
  evidence_submitted_at   timestamptz,
  workflow_id             text NOT NULL,
  event_seq               integer NOT NULL DEFAULT 1,
  created_at              timestamptz NOT NULL DEFAULT now(),
  updated_at              timestamptz NOT NULL DEFAULT now(),
  closed_at               timestamptz,
  PRIMARY KEY (tenant_id, dispute_id),
  FOREIGN KEY (tenant_id, payment_id) REFERENCES paysaga.payments,
  CHECK (funds_withdrawn_micros <= amount_micros AND funds_reinstated_micros <= amount_micros)
);
CREATE INDEX disputes_by_payment ON paysaga.disputes (tenant_id, payment_id, created_at);

CREATE TABLE paysaga.dispute_events (
  transition_id  text PRIMARY KEY,
  tenant_id      uuid NOT NULL,
  dispute_id     text NOT NULL,
  seq            integer NOT NULL,
  type           text NOT NULL,
  old_status     text,
  new_status     text NOT NULL,
  metadata       jsonb NOT NULL DEFAULT '{}',
  actor          text NOT NULL,
  correlation_id text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, dispute_id, seq),
  FOREIGN KEY (tenant_id, dispute_id) REFERENCES paysaga.disputes
);
SELECT paysaga.make_append_only('paysaga.dispute_events');

CREATE FUNCTION paysaga.guard_dispute_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status IN ('won', 'lost', 'accepted') THEN
    RAISE EXCEPTION 'dispute % is % (terminal) and cannot change', OLD.dispute_id, OLD.status
      USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.status <> OLD.status AND NOT (
       (OLD.status = 'needs_response' AND NEW.status IN ('under_review', 'won', 'lost', 'accepted')) OR
       (OLD.status = 'under_review'   AND NEW.status IN ('won', 'lost'))) THEN
    RAISE EXCEPTION 'invalid dispute transition % -> % for %', OLD.status, NEW.status, OLD.dispute_id
      USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.dispute_id <> OLD.dispute_id OR NEW.tenant_id <> OLD.tenant_id OR NEW.payment_id <> OLD.payment_id
     OR NEW.provider_dispute_id <> OLD.provider_dispute_id OR NEW.amount_micros <> OLD.amount_micros
     OR NEW.currency <> OLD.currency THEN
    RAISE EXCEPTION 'dispute identity and amount are immutable' USING ERRCODE = 'check_violation';
  END IF;
  NEW.updated_at := now();
  IF NEW.status IN ('won', 'lost', 'accepted') THEN
    NEW.closed_at := now();
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER disputes_guard BEFORE UPDATE ON paysaga.disputes
  FOR EACH ROW EXECUTE FUNCTION paysaga.guard_dispute_update();
SELECT paysaga.make_never_deleted('paysaga.disputes');
SELECT paysaga.make_tenant_table('paysaga.disputes');
SELECT paysaga.make_tenant_table('paysaga.dispute_events');
GRANT SELECT, INSERT, UPDATE ON paysaga.disputes TO paysaga_app;
GRANT SELECT, INSERT ON paysaga.dispute_events TO paysaga_app;

-- A provider's dispute webhook names the PaymentIntent, not our tenant (Stripe copies no metadata of ours onto
-- disputes). Like authenticate(), one narrow owner function answers the only question asked before the tenant is
-- known: whose payment is this intent? Ids only; everything afterwards runs in that tenant's transaction.
CREATE INDEX payments_by_intent ON paysaga.payments (provider_intent_id) WHERE provider_intent_id IS NOT NULL;
CREATE FUNCTION paysaga.payment_by_intent(p_intent_id text)
  RETURNS TABLE (tenant_id uuid, payment_id text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
    SELECT p.tenant_id, p.payment_id FROM paysaga.payments p WHERE p.provider_intent_id = p_intent_id LIMIT 2
$$;
ALTER FUNCTION paysaga.payment_by_intent(text) OWNER TO CURRENT_USER;
REVOKE ALL ON FUNCTION paysaga.payment_by_intent(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paysaga.payment_by_intent(text) TO paysaga_app;

-- The sandbox provider's disputes (pm_card_createDispute): the emulated provider's storage, no RLS (see
-- sandbox.payment_intents).
CREATE TABLE sandbox.disputes (
  dispute_id       text PRIMARY KEY,
  tenant_id        uuid NOT NULL,
  intent_id        text NOT NULL UNIQUE REFERENCES sandbox.payment_intents,
  amount_minor     bigint NOT NULL,
  currency         char(3) NOT NULL,
  reason           text NOT NULL,
  status           text NOT NULL,
  evidence         jsonb NOT NULL DEFAULT '{}',
  pending_outcome  text,                      -- won | lost once decisive evidence was submitted
  submission_count integer NOT NULL DEFAULT 0,
  evidence_due_by  timestamptz NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON sandbox.disputes TO paysaga_app;

-- migrate:down
DROP TABLE sandbox.disputes;
DROP FUNCTION paysaga.payment_by_intent(text);
DROP INDEX paysaga.payments_by_intent;
DROP TABLE paysaga.dispute_events;
DROP TABLE paysaga.disputes;
DROP FUNCTION paysaga.guard_dispute_update();
