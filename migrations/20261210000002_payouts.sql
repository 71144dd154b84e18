-- migrate:up

-- Payout runs: one PayoutWorkflow each (workflows/payout.py). A run computes one line per connected account and
-- currency (domain/payouts.py), waits for finance's approval when the tenant asks for it, then pays the lines
-- that pay and follows their payouts until each is paid, failed or canceled.
--
--   computing ──► awaiting_approval ──► paying ──► settling ──► completed
--       │               ╰──► rejected | expired      ╰────────────► completed (nothing in transit)
--       ╰──► paying | completed (nothing to pay)
CREATE TABLE paysaga.payout_runs (
  run_id               text NOT NULL,
  tenant_id            uuid NOT NULL REFERENCES paysaga.tenants,
  as_of                date NOT NULL,
  trigger              text NOT NULL CHECK (trigger IN ('schedule', 'api', 'cli')),
  requested_by         text NOT NULL,
  connected_account_id text,                      -- a run for one account; NULL: every account
  status               text NOT NULL DEFAULT 'computing' CHECK (status IN (
                         'computing', 'awaiting_approval', 'rejected', 'expired', 'paying', 'settling', 'completed')),
  approval_required    boolean NOT NULL,
  approval_deadline    timestamptz,
  decided_by           text,
  decided_at           timestamptz,
  decision_reason      text,
  accounts             integer NOT NULL DEFAULT 0,
  payable              integer NOT NULL DEFAULT 0,
  workflow_id          text NOT NULL,
  idempotency_key      text,
  event_seq            integer NOT NULL DEFAULT 1,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now(),
  completed_at         timestamptz,
  PRIMARY KEY (tenant_id, run_id),
  FOREIGN KEY (tenant_id, connected_account_id) REFERENCES paysaga.connected_accounts (tenant_id, account_id),
  -- A run that required approval but found nothing to pay completes without ever awaiting a decision.
  CHECK (NOT approval_required OR approval_deadline IS NOT NULL OR status IN ('computing', 'completed'))
);
CREATE INDEX payout_runs_newest ON paysaga.payout_runs (tenant_id, created_at DESC, run_id DESC);
CREATE UNIQUE INDEX payout_runs_idempotency_key ON paysaga.payout_runs (tenant_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;

CREATE TABLE paysaga.payout_run_events (
  transition_id  text PRIMARY KEY,
  tenant_id      uuid NOT NULL,
  run_id         text NOT NULL,
  seq            integer NOT NULL,
  type           text NOT NULL,
  old_status     text,
  new_status     text NOT NULL,
  metadata       jsonb NOT NULL DEFAULT '{}',
  actor          text NOT NULL,
  correlation_id text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, run_id, seq),
  FOREIGN KEY (tenant_id, run_id) REFERENCES paysaga.payout_runs
);

CREATE FUNCTION paysaga.guard_payout_run_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status IN ('rejected', 'expired', 'completed') THEN
    RAISE EXCEPTION 'payout run % is % (terminal) and cannot change', OLD.run_id, OLD.status
      USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.status <> OLD.status AND (OLD.status, NEW.status) NOT IN (
       ('computing', 'awaiting_approval'), ('computing', 'paying'), ('computing', 'completed'),
       ('awaiting_approval', 'paying'), ('awaiting_approval', 'rejected'), ('awaiting_approval', 'expired'),
       ('paying', 'settling'), ('paying', 'completed'), ('settling', 'completed')) THEN
    RAISE EXCEPTION 'payout run % cannot go from % to %', OLD.run_id, OLD.status, NEW.status
      USING ERRCODE = 'check_violation';
  END IF;
  IF (NEW.run_id, NEW.tenant_id, NEW.as_of, NEW.trigger, NEW.connected_account_id, NEW.approval_required)
     IS DISTINCT FROM (OLD.run_id, OLD.tenant_id, OLD.as_of, OLD.trigger, OLD.connected_account_id,
                       OLD.approval_required) THEN
    RAISE EXCEPTION 'what payout run % pays is fixed when it opens', OLD.run_id USING ERRCODE = 'check_violation';
  END IF;
  NEW.updated_at := now();
  IF NEW.status IN ('rejected', 'expired', 'completed') THEN
    NEW.completed_at := now();
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER payout_runs_guard BEFORE UPDATE ON paysaga.payout_runs
  FOR EACH ROW EXECUTE FUNCTION paysaga.guard_payout_run_update();

-- The run's report: one line per account and currency, as computed (written once, never changed).
CREATE TABLE paysaga.payout_run_lines (
  tenant_id              uuid NOT NULL,
  run_id                 text NOT NULL,
  account_id             text NOT NULL,
  currency               char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  period_start           date NOT NULL,
  period_end             date NOT NULL,
  payout_date            date NOT NULL,
  brought_forward_micros bigint NOT NULL,
  gross_micros           bigint NOT NULL,
  fees_micros            bigint NOT NULL,
  refunds_micros         bigint NOT NULL,
  disputes_micros        bigint NOT NULL,
  other_micros           bigint NOT NULL,
  balance_micros         bigint NOT NULL,
  reserve_micros         bigint NOT NULL CHECK (reserve_micros >= 0),
  net_micros             bigint NOT NULL CHECK (net_micros >= 0),
  carried_forward_micros bigint NOT NULL,
  pending_micros         bigint NOT NULL,
  decision               text NOT NULL
                         CHECK (decision IN ('pay', 'nothing', 'negative', 'below_minimum', 'not_enabled')),
  settlement_currency    char(3),
  settlement_net_micros  bigint,
  fx_rate                text,
  fx_as_of               date,
  fx_source              text,
  created_at             timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, run_id, account_id, currency),
  FOREIGN KEY (tenant_id, run_id) REFERENCES paysaga.payout_runs,
  FOREIGN KEY (tenant_id, account_id) REFERENCES paysaga.connected_accounts,
  CHECK (period_start <= period_end),
  CHECK (balance_micros = brought_forward_micros + gross_micros - fees_micros - refunds_micros - disputes_micros
                          + other_micros),
  CHECK ((decision = 'pay') = (net_micros > 0))
);

-- Payouts: one per (account, period, currency) whatever the runs (payout_key), so a period is never paid twice.
--
--   pending ──► in_transit ──► paid ──► failed (the bank returned it)
--      ╰──────────┴──► failed | canceled
-- failed and canceled are terminal; their funds are returned to the seller's balance once (funds_returned).
CREATE TABLE paysaga.payouts (
  payout_id                text NOT NULL,
  tenant_id                uuid NOT NULL,
  run_id                   text NOT NULL,
  account_id               text NOT NULL,
  currency                 char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  amount_micros            bigint NOT NULL CHECK (amount_micros > 0),
  period_start             date NOT NULL,
  period_end               date NOT NULL,
  payout_key               text NOT NULL,
  transfer_key             text NOT NULL,
  status                   text NOT NULL DEFAULT 'pending'
                           CHECK (status IN ('pending', 'in_transit', 'paid', 'failed', 'canceled')),
  provider                 text NOT NULL,
  provider_transfer_id     text,
  provider_payout_id       text,
  destination_amount_micros bigint,
  destination_currency     char(3),
  failure_code             text,
  failure_message          text,
  funds_returned           boolean NOT NULL DEFAULT false,
  workflow_id              text NOT NULL,
  event_seq                integer NOT NULL DEFAULT 1,
  created_at               timestamptz NOT NULL DEFAULT now(),
  updated_at               timestamptz NOT NULL DEFAULT now(),
  paid_at                  timestamptz,
  failed_at                timestamptz,
  PRIMARY KEY (tenant_id, payout_id),
  UNIQUE (tenant_id, payout_key),
  FOREIGN KEY (tenant_id, run_id) REFERENCES paysaga.payout_runs,
  FOREIGN KEY (tenant_id, account_id) REFERENCES paysaga.connected_accounts,
  CHECK (NOT funds_returned OR status IN ('failed', 'canceled'))
);
CREATE INDEX payouts_open ON paysaga.payouts (tenant_id, run_id) WHERE status IN ('pending', 'in_transit');
CREATE INDEX payouts_by_account ON paysaga.payouts (tenant_id, account_id, created_at DESC);
CREATE INDEX payouts_by_provider_id ON paysaga.payouts (provider_payout_id) WHERE provider_payout_id IS NOT NULL;

CREATE TABLE paysaga.payout_events (
  transition_id  text PRIMARY KEY,
  tenant_id      uuid NOT NULL,
  payout_id      text NOT NULL,
  seq            integer NOT NULL,
  type           text NOT NULL,
  old_status     text,
  new_status     text NOT NULL,
  metadata       jsonb NOT NULL DEFAULT '{}',
  actor          text NOT NULL,
  correlation_id text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, payout_id, seq),
  FOREIGN KEY (tenant_id, payout_id) REFERENCES paysaga.payouts
);

CREATE FUNCTION paysaga.guard_payout_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status IN ('failed', 'canceled') AND (NEW.status <> OLD.status OR OLD.funds_returned
       OR NOT NEW.funds_returned) THEN
    RAISE EXCEPTION 'payout % is % (terminal): only the return of its funds may follow', OLD.payout_id, OLD.status
      USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.status <> OLD.status AND (OLD.status, NEW.status) NOT IN (
       ('pending', 'in_transit'), ('pending', 'failed'), ('pending', 'canceled'), ('in_transit', 'paid'),
       ('in_transit', 'failed'), ('in_transit', 'canceled'), ('paid', 'failed')) THEN
    RAISE EXCEPTION 'payout % cannot go from % to %', OLD.payout_id, OLD.status, NEW.status
      USING ERRCODE = 'check_violation';
  END IF;
  IF (NEW.payout_id, NEW.tenant_id, NEW.account_id, NEW.currency, NEW.amount_micros, NEW.payout_key,
      NEW.transfer_key, NEW.run_id)
     IS DISTINCT FROM (OLD.payout_id, OLD.tenant_id, OLD.account_id, OLD.currency, OLD.amount_micros,
                       OLD.payout_key, OLD.transfer_key, OLD.run_id) THEN
    RAISE EXCEPTION 'payout identity and amount are immutable' USING ERRCODE = 'check_violation';
  END IF;
  IF OLD.provider_transfer_id IS NOT NULL AND NEW.provider_transfer_id IS DISTINCT FROM OLD.provider_transfer_id
     OR OLD.provider_payout_id IS NOT NULL AND NEW.provider_payout_id IS DISTINCT FROM OLD.provider_payout_id THEN
    RAISE EXCEPTION 'payout % keeps its provider ids', OLD.payout_id USING ERRCODE = 'check_violation';
  END IF;
  NEW.updated_at := now();
  RETURN NEW;
END $$;
CREATE TRIGGER payouts_guard BEFORE UPDATE ON paysaga.payouts
  FOR EACH ROW EXECUTE FUNCTION paysaga.guard_payout_update();

SELECT paysaga.make_append_only(t::regclass)
  FROM unnest(ARRAY['paysaga.payout_run_events', 'paysaga.payout_run_lines', 'paysaga.payout_events']) AS t;
SELECT paysaga.make_never_deleted(t::regclass) FROM unnest(ARRAY['paysaga.payout_runs', 'paysaga.payouts']) AS t;
SELECT paysaga.make_tenant_table(t::regclass) FROM unnest(ARRAY[
  'paysaga.payout_runs', 'paysaga.payout_run_events', 'paysaga.payout_run_lines', 'paysaga.payouts',
  'paysaga.payout_events']) AS t;
GRANT SELECT, INSERT, UPDATE ON paysaga.payout_runs, paysaga.payouts TO paysaga_app;
GRANT SELECT, INSERT ON paysaga.payout_run_events, paysaga.payout_run_lines, paysaga.payout_events TO paysaga_app;

-- The weekly Schedule opens a run for every tenant that has a connected account able to receive payouts. It runs
-- with the application role, so the question goes through one narrow owner function that answers ids only.
CREATE FUNCTION paysaga.payout_tenants()
  RETURNS TABLE (tenant_id uuid)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
    SELECT DISTINCT a.tenant_id FROM paysaga.connected_accounts a
     WHERE a.onboarding_status = 'enabled' AND a.payout_method_token IS NOT NULL AND a.payout_interval <> 'manual'
     ORDER BY a.tenant_id
$$;
ALTER FUNCTION paysaga.payout_tenants() OWNER TO CURRENT_USER;
REVOKE ALL ON FUNCTION paysaga.payout_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paysaga.payout_tenants() TO paysaga_app;

-- A payout webhook from a connected account may carry no metadata of ours (one made outside paysaga, or a
-- provider that drops it): whose payout is this? Ids only, like payment_by_intent().
CREATE FUNCTION paysaga.payout_by_provider_id(p_provider_payout_id text)
  RETURNS TABLE (tenant_id uuid, payout_id text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
    SELECT p.tenant_id, p.payout_id FROM paysaga.payouts p WHERE p.provider_payout_id = p_provider_payout_id LIMIT 2
$$;
ALTER FUNCTION paysaga.payout_by_provider_id(text) OWNER TO CURRENT_USER;
REVOKE ALL ON FUNCTION paysaga.payout_by_provider_id(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paysaga.payout_by_provider_id(text) TO paysaga_app;

-- migrate:down
DROP FUNCTION paysaga.payout_by_provider_id(text);
DROP FUNCTION paysaga.payout_tenants();
DROP TABLE paysaga.payout_events;
DROP TABLE paysaga.payouts;
DROP TABLE paysaga.payout_run_lines;
DROP TABLE paysaga.payout_run_events;
DROP TABLE paysaga.payout_runs;
DROP FUNCTION paysaga.guard_payout_update();
DROP FUNCTION paysaga.guard_payout_run_update();
