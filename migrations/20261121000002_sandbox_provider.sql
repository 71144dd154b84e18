-- migrate:up

-- State of the embedded sandbox payment provider. It plays Stripe's part in development and tests; its
-- state lives in Postgres so that a PaymentIntent survives a worker crash exactly as a real one would.
-- This schema is the emulated provider's own storage (Stripe's database, in production), not paysaga's: rows
-- carry tenant_id for tracing, but it is looked up by provider ids as Stripe would, so no tenant RLS here.
CREATE SCHEMA IF NOT EXISTS sandbox;
GRANT USAGE ON SCHEMA sandbox TO paysaga_app;

CREATE TABLE sandbox.payment_intents (
  intent_id        text PRIMARY KEY,
  tenant_id        uuid NOT NULL,
  idempotency_key  text NOT NULL,
  payment_id       text NOT NULL,
  attempt          integer NOT NULL,
  amount_minor     bigint NOT NULL,
  currency         char(3) NOT NULL,
  payment_method   text NOT NULL,
  status           text NOT NULL,
  decline_code     text,
  failure_message  text,
  metadata         jsonb NOT NULL,
  amount_refunded  bigint NOT NULL DEFAULT 0,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX sandbox_intents_by_payment ON sandbox.payment_intents (tenant_id, payment_id, attempt);

CREATE TABLE sandbox.refunds (
  refund_id       text PRIMARY KEY,
  tenant_id       uuid NOT NULL,
  intent_id       text NOT NULL REFERENCES sandbox.payment_intents,
  idempotency_key text NOT NULL,
  amount_minor    bigint NOT NULL,
  status          text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, idempotency_key)
);

GRANT SELECT, INSERT, UPDATE ON sandbox.payment_intents, sandbox.refunds TO paysaga_app;

-- migrate:down
DROP SCHEMA sandbox CASCADE;
