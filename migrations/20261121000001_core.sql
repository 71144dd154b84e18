-- migrate:up

-- The application role: not the owner of any table, not superuser, NOBYPASSRLS. Login and password are given
-- by whoever operates the database (`paysaga dev` does it for the embedded stack).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paysaga_app') THEN
    CREATE ROLE paysaga_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  END IF;
END $$;

CREATE SCHEMA IF NOT EXISTS paysaga;
GRANT USAGE ON SCHEMA paysaga TO paysaga_app;

-- The tenant of the current transaction, set with set_config('app.tenant_id', ..., true). Unset → NULL → no rows.
CREATE FUNCTION paysaga.current_tenant() RETURNS uuid
  LANGUAGE sql STABLE AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$;

CREATE TABLE paysaga.tenants (
  tenant_id  uuid PRIMARY KEY,
  name       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE paysaga.api_keys (
  key_id     text PRIMARY KEY,
  tenant_id  uuid NOT NULL REFERENCES paysaga.tenants,
  key_hash   bytea NOT NULL UNIQUE,          -- sha256 of the secret; the secret itself is never stored
  roles      text[] NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);

CREATE TABLE paysaga.customers (
  customer_id text NOT NULL,
  tenant_id   uuid NOT NULL REFERENCES paysaga.tenants,
  email       text,
  name        text,
  country     char(2),
  metadata    jsonb NOT NULL DEFAULT '{}',
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, customer_id)
);

-- Tokens only: a provider payment-method id, brand, last4 and expiry. Never a PAN.
CREATE TABLE paysaga.payment_methods (
  payment_method_id text NOT NULL,
  tenant_id         uuid NOT NULL,
  customer_id       text NOT NULL,
  provider          text NOT NULL,
  provider_token    text NOT NULL,
  brand             text,
  last4             char(4),
  exp_month         smallint,
  exp_year          smallint,
  created_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, payment_method_id),
  FOREIGN KEY (tenant_id, customer_id) REFERENCES paysaga.customers,
  CHECK (provider_token !~ '[0-9]{13,19}')
);

CREATE TABLE paysaga.payments (
  payment_id         text NOT NULL,
  tenant_id          uuid NOT NULL,
  customer_id        text NOT NULL,
  payment_method_id  text NOT NULL,
  amount_micros      bigint NOT NULL CHECK (amount_micros > 0),
  currency           char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  status             text NOT NULL DEFAULT 'created'
                     CHECK (status IN ('created', 'pending', 'processing', 'completed', 'failed', 'canceled')),
  idempotency_key    text,
  description        text,
  metadata           jsonb NOT NULL DEFAULT '{}',
  provider           text NOT NULL,
  provider_intent_id text,
  attempt            integer NOT NULL DEFAULT 1,
  failure_code       text,
  failure_message    text,
  next_action        jsonb,
  risk_score         integer,
  risk_reasons       text[],
  workflow_id        text NOT NULL,
  event_seq          integer NOT NULL DEFAULT 0,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, payment_id),
  FOREIGN KEY (tenant_id, customer_id) REFERENCES paysaga.customers,
  FOREIGN KEY (tenant_id, payment_method_id) REFERENCES paysaga.payment_methods
);
CREATE UNIQUE INDEX payments_idempotency_key ON paysaga.payments (tenant_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX payments_newest_first ON paysaga.payments (tenant_id, created_at DESC, payment_id DESC);
CREATE INDEX payments_velocity ON paysaga.payments (tenant_id, customer_id, created_at);
CREATE INDEX payments_open ON paysaga.payments (status, updated_at) WHERE status IN ('pending', 'processing');

-- Append-only lifecycle store: one row per transition, transition_id = sha256(payment_id || ':' || seq).
CREATE TABLE paysaga.payment_events (
  transition_id  text PRIMARY KEY,
  tenant_id      uuid NOT NULL,
  payment_id     text NOT NULL,
  seq            integer NOT NULL,
  type           text NOT NULL,
  old_status     text,
  new_status     text NOT NULL,
  metadata       jsonb NOT NULL DEFAULT '{}',
  actor          text NOT NULL,
  correlation_id text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, payment_id, seq),
  FOREIGN KEY (tenant_id, payment_id) REFERENCES paysaga.payments
);

CREATE TABLE paysaga.outbox (
  outbox_id    bigserial PRIMARY KEY,
  tenant_id    uuid NOT NULL,
  event_id     text NOT NULL UNIQUE,
  event_type   text NOT NULL,
  subject      text NOT NULL,
  payload      jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz
);
CREATE INDEX outbox_unpublished ON paysaga.outbox (outbox_id) WHERE published_at IS NULL;

-- De-duplication of inbound messages (webhooks now, consumed events later) by their id.
CREATE TABLE paysaga.inbox (
  tenant_id   uuid NOT NULL,
  source      text NOT NULL,
  event_id    text NOT NULL,
  event_type  text NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, source, event_id)
);

CREATE TABLE paysaga.idempotency_keys (
  tenant_id       uuid NOT NULL,
  idem_key        text NOT NULL,
  request_method  text NOT NULL,
  request_path    text NOT NULL,
  request_hash    text NOT NULL,
  state           text NOT NULL CHECK (state IN ('in_flight', 'done')),
  locked_until    timestamptz,
  response_status integer,
  response_body   jsonb,
  resource_id     text NOT NULL,          -- the payment this key created: a retry after a crash resumes it
  created_at      timestamptz NOT NULL DEFAULT now(),
  expires_at      timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, idem_key)
);

-- Valid transitions (seed 003): created → pending → processing → completed | failed; processing → pending
-- (asynchronous settlement / customer action); created | pending → canceled; created → processing and
-- created → failed (a risk decline before any provider call). Terminal rows never change, in any column.
CREATE FUNCTION paysaga.guard_payment_update() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE TRIGGER payments_guard BEFORE UPDATE ON paysaga.payments
  FOR EACH ROW EXECUTE FUNCTION paysaga.guard_payment_update();
SELECT paysaga.make_never_deleted('paysaga.payments');
SELECT paysaga.make_append_only('paysaga.payment_events');

-- Row-level security, forced, on every tenant table.
SELECT paysaga.make_tenant_table(t::regclass) FROM unnest(ARRAY[
  'paysaga.tenants', 'paysaga.api_keys', 'paysaga.customers', 'paysaga.payment_methods', 'paysaga.payments',
  'paysaga.payment_events', 'paysaga.outbox', 'paysaga.inbox', 'paysaga.idempotency_keys']) AS t;

GRANT SELECT ON paysaga.tenants, paysaga.api_keys TO paysaga_app;
GRANT SELECT, INSERT, UPDATE ON paysaga.customers, paysaga.payment_methods, paysaga.payments,
  paysaga.idempotency_keys, paysaga.outbox TO paysaga_app;
GRANT SELECT, INSERT ON paysaga.payment_events, paysaga.inbox TO paysaga_app;
GRANT DELETE ON paysaga.idempotency_keys TO paysaga_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA paysaga TO paysaga_app;

-- Authentication happens before the tenant is known, so it runs as the owner through one narrow function:
-- given the hash of a presented key it returns that key's tenant and roles, and nothing else.
CREATE FUNCTION paysaga.authenticate(p_key_hash bytea)
  RETURNS TABLE (tenant_id uuid, key_id text, roles text[])
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
    SELECT k.tenant_id, k.key_id, k.roles FROM paysaga.api_keys k
     WHERE k.key_hash = p_key_hash AND k.revoked_at IS NULL
$$;
ALTER FUNCTION paysaga.authenticate(bytea) OWNER TO CURRENT_USER;
REVOKE ALL ON FUNCTION paysaga.authenticate(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paysaga.authenticate(bytea) TO paysaga_app;

-- Fleet-wide counts for /metrics (no tenant data beyond a number per status).
CREATE FUNCTION paysaga.payment_status_counts()
  RETURNS TABLE (status text, n bigint)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
    SELECT p.status, count(*) FROM paysaga.payments p GROUP BY p.status
$$;
REVOKE ALL ON FUNCTION paysaga.payment_status_counts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paysaga.payment_status_counts() TO paysaga_app;

-- migrate:down
DROP SCHEMA paysaga CASCADE;
