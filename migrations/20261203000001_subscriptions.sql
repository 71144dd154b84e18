-- migrate:up

-- The catalogue: products and their prices, each price one version of a price family (`<family>.v<n>`). A price
-- never changes once written except for being archived (`active`); a new version is a new row. Subscriptions
-- hold the version they were sold.
CREATE TABLE paysaga.products (
  tenant_id   uuid NOT NULL REFERENCES paysaga.tenants,
  product_id  text NOT NULL CHECK (product_id ~ '^[A-Za-z0-9_-]{1,100}$'),
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 250),
  active      boolean NOT NULL DEFAULT true,
  metadata    jsonb NOT NULL DEFAULT '{}',
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, product_id)
);
CREATE INDEX products_newest ON paysaga.products (tenant_id, created_at DESC, product_id DESC);

CREATE TABLE paysaga.prices (
  tenant_id          uuid NOT NULL,
  price_id           text NOT NULL,
  family             text NOT NULL CHECK (family ~ '^[A-Za-z0-9_-]{1,100}$'),
  version            integer NOT NULL CHECK (version >= 1),
  product_id         text NOT NULL,
  currency           char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  billing_scheme     text NOT NULL CHECK (billing_scheme IN ('flat', 'per_unit')),
  unit_amount_micros bigint NOT NULL CHECK (unit_amount_micros >= 0),
  interval           text NOT NULL CHECK (interval IN ('month', 'year')),
  interval_count     integer NOT NULL CHECK (interval_count BETWEEN 1 AND 36),
  nickname           text NOT NULL DEFAULT '',
  supersedes         text,
  tax_code           text NOT NULL DEFAULT 'txcd_10000000',
  active             boolean NOT NULL DEFAULT true,
  created_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, price_id),
  UNIQUE (tenant_id, family, version),
  FOREIGN KEY (tenant_id, product_id) REFERENCES paysaga.products,
  FOREIGN KEY (tenant_id, supersedes) REFERENCES paysaga.prices,
  CHECK (price_id = family || '.v' || version),
  CHECK ((version = 1) = (supersedes IS NULL))
);
CREATE INDEX prices_by_product ON paysaga.prices (tenant_id, product_id, price_id);

-- A price is a promise to the subscriptions on it: only archiving may change it (and never back).
CREATE FUNCTION paysaga.guard_price_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (NEW.price_id, NEW.family, NEW.version, NEW.product_id, NEW.currency, NEW.billing_scheme,
      NEW.unit_amount_micros, NEW.interval, NEW.interval_count, NEW.nickname, NEW.supersedes, NEW.tax_code)
     IS DISTINCT FROM
     (OLD.price_id, OLD.family, OLD.version, OLD.product_id, OLD.currency, OLD.billing_scheme,
      OLD.unit_amount_micros, OLD.interval, OLD.interval_count, OLD.nickname, OLD.supersedes, OLD.tax_code)
     OR (NEW.active AND NOT OLD.active) THEN
    RAISE EXCEPTION 'price % never changes: revise it into a new version', OLD.price_id
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER prices_immutable BEFORE UPDATE ON paysaga.prices
  FOR EACH ROW EXECUTE FUNCTION paysaga.guard_price_update();

-- Per-tenant billing policy: when price and quantity changes apply and how they are prorated
-- (domain.proration.ChangePolicy), what a trial ending without a payment method does, and the dunning policy
-- (read by the dunning workflow; NULL: the default policy).
CREATE TABLE paysaga.tenant_billing_policies (
  tenant_id          uuid PRIMARY KEY REFERENCES paysaga.tenants,
  change_policy      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(change_policy) = 'object'),
  trial_end_behavior text NOT NULL DEFAULT 'pause' CHECK (trial_end_behavior IN ('pause', 'cancel')),
  dunning_policy     jsonb CHECK (dunning_policy IS NULL OR jsonb_typeof(dunning_policy) = 'object'),
  updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Subscriptions: the domain aggregate (domain/subscription.py), one row. `next_action_at` is when the renewal run
-- must next look at it (a renewal, a trial's end or its "will end" notice, an unpaid first invoice's expiry, a
-- paused collection's resumption); NULL when nothing is due (paused, ended).
CREATE TABLE paysaga.subscriptions (
  subscription_id           text NOT NULL CHECK (subscription_id ~ '^[A-Za-z0-9_-]{1,100}$'),
  tenant_id                 uuid NOT NULL,
  customer_id               text NOT NULL,
  price_id                  text NOT NULL,
  quantity                  integer NOT NULL CHECK (quantity >= 1),
  status                    text NOT NULL CHECK (status IN ('incomplete', 'incomplete_expired', 'trialing', 'active',
                                                            'past_due', 'unpaid', 'canceled', 'paused')),
  collection_method         text NOT NULL DEFAULT 'charge_automatically'
                            CHECK (collection_method IN ('charge_automatically', 'send_invoice')),
  days_until_due            integer CHECK (days_until_due BETWEEN 0 AND 365),
  default_payment_method_id text,
  cycle_anchor              timestamptz NOT NULL,
  cycle_interval            text NOT NULL CHECK (cycle_interval IN ('month', 'year')),
  cycle_interval_count      integer NOT NULL CHECK (cycle_interval_count BETWEEN 1 AND 36),
  cycle_day_of_month        integer NOT NULL CHECK (cycle_day_of_month BETWEEN 1 AND 31),
  period_start              timestamptz NOT NULL,
  period_end                timestamptz NOT NULL,
  period_basis_start        timestamptz NOT NULL,
  started_at                timestamptz NOT NULL,
  trial_start               timestamptz,
  trial_end                 timestamptz,
  trial_end_behavior        text NOT NULL DEFAULT 'pause' CHECK (trial_end_behavior IN ('pause', 'cancel')),
  trial_notified            boolean NOT NULL DEFAULT false,
  prorate_first_period      boolean NOT NULL DEFAULT true,
  cancel_at_period_end      boolean NOT NULL DEFAULT false,
  canceled_at               timestamptz,
  ended_at                  timestamptz,
  pause_behavior            text CHECK (pause_behavior IN ('keep_as_draft', 'mark_uncollectible', 'void')),
  pause_resumes_at          timestamptz,
  scheduled_price_id        text,
  scheduled_quantity        integer CHECK (scheduled_quantity >= 1),
  event_seq                 integer NOT NULL,
  next_action_at            timestamptz,
  latest_invoice_id         text,
  metadata                  jsonb NOT NULL DEFAULT '{}',
  idempotency_key           text,
  created_at                timestamptz NOT NULL DEFAULT now(),
  updated_at                timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, subscription_id),
  FOREIGN KEY (tenant_id, customer_id) REFERENCES paysaga.customers,
  FOREIGN KEY (tenant_id, price_id) REFERENCES paysaga.prices,
  FOREIGN KEY (tenant_id, scheduled_price_id) REFERENCES paysaga.prices,
  CHECK (period_basis_start <= period_start AND period_start < period_end),
  CHECK ((scheduled_price_id IS NULL) = (scheduled_quantity IS NULL)),
  CHECK ((pause_behavior IS NOT NULL) OR (pause_resumes_at IS NULL)),
  CHECK ((trial_end IS NULL) = (trial_start IS NULL))
);
-- The renewal run pages through what is due by this key (keyset pagination), across tenants.
CREATE INDEX subscriptions_due ON paysaga.subscriptions (next_action_at, tenant_id, subscription_id)
  WHERE next_action_at IS NOT NULL;
CREATE INDEX subscriptions_newest ON paysaga.subscriptions (tenant_id, created_at DESC, subscription_id DESC);
CREATE INDEX subscriptions_by_customer ON paysaga.subscriptions (tenant_id, customer_id, created_at DESC);
CREATE INDEX subscriptions_by_status ON paysaga.subscriptions (tenant_id, status, created_at DESC);
CREATE INDEX subscriptions_by_price ON paysaga.subscriptions (tenant_id, price_id, created_at DESC);
CREATE UNIQUE INDEX subscriptions_idempotency_key ON paysaga.subscriptions (tenant_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;

-- One row per state change; `event_id` is the domain's deterministic id (subscription, seq), so a retried write
-- is the same event. Append-only.
CREATE TABLE paysaga.subscription_events (
  event_id        text PRIMARY KEY,
  tenant_id       uuid NOT NULL,
  subscription_id text NOT NULL,
  seq             integer NOT NULL,
  type            text NOT NULL,
  old_status      text,
  new_status      text NOT NULL,
  occurred_at     timestamptz NOT NULL,
  data            jsonb NOT NULL DEFAULT '{}',
  actor           text NOT NULL,
  correlation_id  text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, subscription_id, seq),
  FOREIGN KEY (tenant_id, subscription_id) REFERENCES paysaga.subscriptions
);

-- Invoices of subscriptions handed to dunning: written with the failure of the invoice's first charge, in its
-- transaction; `started_at` once its DunningWorkflow was started (NULL: the start is owed, and the renewal run
-- makes it). What a new payment method of the customer is signalled to.
CREATE TABLE paysaga.subscription_dunning (
  tenant_id       uuid NOT NULL,
  invoice_id      text NOT NULL,
  subscription_id text NOT NULL,
  customer_id     text NOT NULL,
  payment_id      text,
  period_start    timestamptz,
  decline_code    text,
  failed_at       timestamptz NOT NULL,
  started_at      timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, invoice_id),
  FOREIGN KEY (tenant_id, subscription_id) REFERENCES paysaga.subscriptions,
  FOREIGN KEY (tenant_id, invoice_id) REFERENCES paysaga.invoices
);
CREATE INDEX subscription_dunning_owed ON paysaga.subscription_dunning (created_at) WHERE started_at IS NULL;
CREATE INDEX subscription_dunning_by_customer ON paysaga.subscription_dunning (tenant_id, customer_id);

-- Proration charges kept for the next invoice (proration_behavior=create_prorations); `invoice_id` says which
-- invoice billed them. Credits are never lines (an invoice line is never negative): see subscription_credits.
CREATE TABLE paysaga.subscription_pending_lines (
  tenant_id       uuid NOT NULL,
  line_id         text NOT NULL,
  subscription_id text NOT NULL,
  kind            text NOT NULL CHECK (kind IN ('period', 'partial_period', 'remaining_time')),
  description     text NOT NULL,
  amount_micros   bigint NOT NULL CHECK (amount_micros > 0),
  currency        char(3) NOT NULL,
  price_id        text NOT NULL,
  quantity        integer NOT NULL,
  period_start    timestamptz NOT NULL,
  period_end      timestamptz NOT NULL,
  invoice_id      text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, line_id),
  FOREIGN KEY (tenant_id, subscription_id) REFERENCES paysaga.subscriptions
);
CREATE INDEX subscription_pending_lines_open ON paysaga.subscription_pending_lines (tenant_id, subscription_id)
  WHERE invoice_id IS NULL;

-- Unused time credited: a credit note on the invoice line that billed that time (before payment it reduces what
-- is due; after payment it goes to the customer's credit balance, applied to the next invoice). Written in the
-- change's transaction as owed, then issued through the invoice's workflow (durably: the renewal run issues
-- whatever is still owed); `state` says which.
CREATE TABLE paysaga.subscription_credits (
  tenant_id       uuid NOT NULL,
  credit_note_id  text NOT NULL,
  subscription_id text NOT NULL,
  invoice_id      text NOT NULL,
  line_id         text NOT NULL,
  amount_micros   bigint NOT NULL CHECK (amount_micros > 0),  -- tax excluded, like the line it credits
  description     text NOT NULL,
  state           text NOT NULL DEFAULT 'owed' CHECK (state IN ('owed', 'issued', 'refused')),
  refusal         text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  issued_at       timestamptz,
  PRIMARY KEY (tenant_id, credit_note_id),
  FOREIGN KEY (tenant_id, subscription_id) REFERENCES paysaga.subscriptions,
  FOREIGN KEY (tenant_id, invoice_id) REFERENCES paysaga.invoices
);
CREATE INDEX subscription_credits_owed ON paysaga.subscription_credits (tenant_id, subscription_id)
  WHERE state = 'owed';

-- The renewal run's charges: one row per payment a batch created, so the batch's charging step (and its retry
-- after a crash) finds exactly its own payments, and a webhook knows a payment has no workflow of its own.
--   created      payment row written with the invoice, not yet sent to the provider
--   submitted    the provider has the intent; the outcome comes by the run's poll or by webhook
--   handed_over  the customer must act (3-D Secure): the payment's own PaymentWorkflow took it
--   settled      completed or failed
CREATE TABLE paysaga.renewal_charges (
  tenant_id       uuid NOT NULL,
  payment_id      text NOT NULL,
  invoice_id      text NOT NULL,
  subscription_id text NOT NULL,
  period_start    timestamptz NOT NULL,
  attempt         integer NOT NULL DEFAULT 1,
  run_id          text NOT NULL,
  batch_no        integer NOT NULL,
  state           text NOT NULL DEFAULT 'created'
                  CHECK (state IN ('created', 'submitted', 'handed_over', 'settled')),
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, payment_id),
  UNIQUE (tenant_id, invoice_id, attempt),
  FOREIGN KEY (tenant_id, payment_id) REFERENCES paysaga.payments
);
CREATE INDEX renewal_charges_of_batch ON paysaga.renewal_charges (tenant_id, run_id, batch_no, state);
CREATE INDEX renewal_charges_open ON paysaga.renewal_charges (run_id, state) WHERE state IN ('created', 'submitted');

-- What each tenant's part of a renewal batch did, written in that part's transaction: a batch retried after its
-- commit (the worker died before reporting) answers the same counts and still charges what it invoiced.
CREATE TABLE paysaga.renewal_batch_results (
  tenant_id   uuid NOT NULL,
  run_id      text NOT NULL,
  batch_no    integer NOT NULL,
  counts      jsonb NOT NULL CHECK (jsonb_typeof(counts) = 'object'),
  has_charges boolean NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, run_id, batch_no)
);

-- Provider pacing shared by every worker: a token bucket per provider account. Not a tenant table: the provider
-- account (and its rate limit) is the platform's.
CREATE TABLE paysaga.provider_rate_buckets (
  account     text PRIMARY KEY,
  tokens      double precision NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Take up to `p_want` tokens at `p_rate` per second (burst `p_burst`); returns how many were granted and, when
-- fewer than wanted, how long until the rest would be there. One row lock per call: callers take tokens for a
-- chunk of charges, not one by one.
CREATE FUNCTION paysaga.take_provider_tokens(p_account text, p_want integer, p_rate double precision,
                                             p_burst double precision)
  RETURNS TABLE (granted integer, wait_seconds double precision)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
DECLARE
  have double precision;
  now_ts timestamptz := clock_timestamp();
BEGIN
  INSERT INTO paysaga.provider_rate_buckets (account, tokens, updated_at) VALUES (p_account, p_burst, now_ts)
    ON CONFLICT (account) DO NOTHING;
  SELECT least(p_burst, b.tokens + extract(epoch FROM now_ts - b.updated_at) * p_rate) INTO have
    FROM paysaga.provider_rate_buckets b WHERE b.account = p_account FOR UPDATE;
  granted := least(p_want, floor(have)::integer);
  UPDATE paysaga.provider_rate_buckets SET tokens = have - granted, updated_at = now_ts WHERE account = p_account;
  wait_seconds := CASE WHEN granted >= p_want THEN 0 ELSE (p_want - granted - (have - granted)) / p_rate END;
  RETURN NEXT;
END $$;
REVOKE ALL ON FUNCTION paysaga.take_provider_tokens(text, integer, double precision, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paysaga.take_provider_tokens(text, integer, double precision, double precision)
  TO paysaga_app;

-- What the renewal run must look at, across tenants, in keyset order: the upper key of every batch of
-- `p_batch` due subscriptions after the key (p_after_at, p_after_tenant, p_after_id), at most `p_batches`
-- batches, with the tenants each batch holds. Keys and tenant ids only: the batches read the rows themselves,
-- each in its tenant's transaction.
CREATE FUNCTION paysaga.due_subscription_batches(p_at timestamptz, p_after_at timestamptz, p_after_tenant uuid,
                                                 p_after_id text, p_batch integer, p_batches integer)
  RETURNS TABLE (batch integer, last_at timestamptz, last_tenant uuid, last_id text, tenants uuid[], n integer)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
    WITH due AS (
      SELECT s.next_action_at, s.tenant_id, s.subscription_id, row_number() OVER w AS rn,
             (row_number() OVER w - 1) / p_batch AS b
        FROM (SELECT next_action_at, tenant_id, subscription_id FROM paysaga.subscriptions
               WHERE next_action_at IS NOT NULL AND next_action_at <= p_at
                 AND (p_after_at IS NULL
                      OR (next_action_at, tenant_id, subscription_id) > (p_after_at, p_after_tenant, p_after_id))
               ORDER BY next_action_at, tenant_id, subscription_id
               LIMIT p_batch * p_batches) s
      WINDOW w AS (ORDER BY s.next_action_at, s.tenant_id, s.subscription_id)),
    last AS (SELECT DISTINCT ON (b) b, next_action_at, tenant_id, subscription_id FROM due ORDER BY b, rn DESC),
    agg AS (SELECT b, array_agg(DISTINCT tenant_id) AS tenants, count(*) AS n FROM due GROUP BY b)
    SELECT last.b::integer, last.next_action_at, last.tenant_id, last.subscription_id, agg.tenants, agg.n::integer
      FROM last JOIN agg USING (b) ORDER BY last.b
$$;
REVOKE ALL ON FUNCTION paysaga.due_subscription_batches(timestamptz, timestamptz, uuid, text, integer, integer)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paysaga.due_subscription_batches(timestamptz, timestamptz, uuid, text, integer, integer)
  TO paysaga_app;

-- What a dry run reports: the subscriptions due at `p_at`, by status and whether they end at the period's end.
CREATE FUNCTION paysaga.due_subscription_summary(p_at timestamptz)
  RETURNS TABLE (status text, cancel_at_period_end boolean, n bigint)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
    SELECT s.status, s.cancel_at_period_end, count(*) FROM paysaga.subscriptions s
     WHERE s.next_action_at IS NOT NULL AND s.next_action_at <= p_at
     GROUP BY s.status, s.cancel_at_period_end ORDER BY 1, 2
$$;
REVOKE ALL ON FUNCTION paysaga.due_subscription_summary(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paysaga.due_subscription_summary(timestamptz) TO paysaga_app;

-- Dunning workflows still owed a start (the failure was recorded, the start did not happen yet), across tenants.
CREATE FUNCTION paysaga.owed_dunning_starts(p_limit integer)
  RETURNS TABLE (tenant_id uuid, invoice_id text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
    SELECT d.tenant_id, d.invoice_id FROM paysaga.subscription_dunning d WHERE d.started_at IS NULL
     ORDER BY d.created_at LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION paysaga.owed_dunning_starts(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paysaga.owed_dunning_starts(integer) TO paysaga_app;

-- Credits owed (unused time to be credited by a credit note), across tenants.
CREATE FUNCTION paysaga.owed_subscription_credits(p_limit integer)
  RETURNS TABLE (tenant_id uuid, credit_note_id text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
    SELECT c.tenant_id, c.credit_note_id FROM paysaga.subscription_credits c WHERE c.state = 'owed'
     ORDER BY c.created_at LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION paysaga.owed_subscription_credits(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paysaga.owed_subscription_credits(integer) TO paysaga_app;

-- Renewal charges still waiting for the provider's outcome, across tenants (the run's bulk poll of what is left).
CREATE FUNCTION paysaga.open_renewal_charges(p_run_id text, p_limit integer)
  RETURNS TABLE (tenant_id uuid, payment_id text, state text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
    SELECT c.tenant_id, c.payment_id, c.state FROM paysaga.renewal_charges c
     WHERE c.state IN ('created', 'submitted') AND (p_run_id IS NULL OR c.run_id = p_run_id)
     ORDER BY c.created_at LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION paysaga.open_renewal_charges(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paysaga.open_renewal_charges(text, integer) TO paysaga_app;

-- Fleet-wide billing numbers for the dashboards (all tenants, no tenant's detail): renewals by outcome, dunning
-- recoveries by the stage that recovered them, and the revenue dunning recovered per currency (micro-units).
CREATE FUNCTION paysaga.billing_metrics()
  RETURNS TABLE (metric text, label text, value bigint)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
    SELECT 'renewals', e.type, count(*) FROM paysaga.subscription_events e
     WHERE e.type IN ('renewed', 'renewal_paid', 'renewal_failed', 'recovered', 'dunning_exhausted_unpaid',
                      'dunning_exhausted_canceled')
     GROUP BY e.type
    UNION ALL
    SELECT 'dunning_recoveries', coalesce(e.metadata->>'stage', 'new_payment_method'), count(*)
      FROM paysaga.invoice_events e WHERE e.type = 'invoice.dunning_recovered' GROUP BY 2
    UNION ALL
    SELECT 'dunning_revenue_recovered_micros', i.currency, sum((e.metadata->>'amount_micros')::bigint)::bigint
      FROM paysaga.invoice_events e JOIN paysaga.invoices i USING (tenant_id, invoice_id)
     WHERE e.type = 'invoice.dunning_recovered' AND e.metadata ? 'amount_micros' GROUP BY i.currency
$$;
REVOKE ALL ON FUNCTION paysaga.billing_metrics() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paysaga.billing_metrics() TO paysaga_app;

-- Customer credit applied when an invoice is finalized (the customer's credit balance, e.g. unused time credited
-- by a credit note after payment): it reduces what is due, and is frozen like the rest of a finalized invoice.
ALTER TABLE paysaga.invoices
  ADD COLUMN credit_applied_micros bigint NOT NULL DEFAULT 0 CHECK (credit_applied_micros >= 0);

CREATE OR REPLACE FUNCTION paysaga.guard_invoice_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status <> NEW.status AND (OLD.status, NEW.status) NOT IN (
       ('draft', 'open'), ('draft', 'paid'), ('open', 'paid'), ('open', 'void'), ('open', 'uncollectible'),
       ('uncollectible', 'paid'), ('uncollectible', 'void')) THEN
    RAISE EXCEPTION 'invoice % cannot go from % to %', OLD.invoice_id, OLD.status, NEW.status
      USING ERRCODE = 'check_violation';
  END IF;
  IF OLD.status <> 'draft' AND (
       NEW.customer_id, NEW.currency, NEW.collection_method, NEW.days_until_due, NEW.due_date, NEW.series,
       NEW.number, NEW.description, NEW.period_start, NEW.period_end, NEW.customer_snapshot, NEW.seller_snapshot,
       NEW.tax_quote, NEW.locale, NEW.finalized_at, NEW.subscription_id, NEW.credit_applied_micros)
     IS DISTINCT FROM (
       OLD.customer_id, OLD.currency, OLD.collection_method, OLD.days_until_due, OLD.due_date, OLD.series,
       OLD.number, OLD.description, OLD.period_start, OLD.period_end, OLD.customer_snapshot, OLD.seller_snapshot,
       OLD.tax_quote, OLD.locale, OLD.finalized_at, OLD.subscription_id, OLD.credit_applied_micros) THEN
    RAISE EXCEPTION 'invoice % is finalized: only its lifecycle may change', OLD.invoice_id
      USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.amount_paid_micros < OLD.amount_paid_micros THEN
    RAISE EXCEPTION 'what was paid on invoice % cannot shrink', OLD.invoice_id USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE INDEX invoices_by_subscription ON paysaga.invoices (tenant_id, subscription_id, created_at DESC)
  WHERE subscription_id IS NOT NULL;

SELECT paysaga.make_append_only('paysaga.subscription_events');
SELECT paysaga.make_never_deleted(t::regclass) FROM unnest(ARRAY[
  'paysaga.products', 'paysaga.prices', 'paysaga.subscriptions', 'paysaga.subscription_pending_lines',
  'paysaga.subscription_credits', 'paysaga.renewal_charges', 'paysaga.subscription_dunning',
  'paysaga.renewal_batch_results']) AS t;
SELECT paysaga.make_tenant_table(t::regclass) FROM unnest(ARRAY[
  'paysaga.products', 'paysaga.prices', 'paysaga.tenant_billing_policies', 'paysaga.subscriptions',
  'paysaga.subscription_events', 'paysaga.subscription_pending_lines', 'paysaga.subscription_credits',
  'paysaga.renewal_charges', 'paysaga.subscription_dunning', 'paysaga.renewal_batch_results']) AS t;
GRANT SELECT, INSERT ON paysaga.renewal_batch_results TO paysaga_app;
GRANT SELECT, INSERT, UPDATE ON paysaga.products, paysaga.prices, paysaga.tenant_billing_policies,
  paysaga.subscriptions, paysaga.subscription_pending_lines, paysaga.subscription_credits,
  paysaga.renewal_charges, paysaga.subscription_dunning TO paysaga_app;
GRANT SELECT, INSERT ON paysaga.subscription_events TO paysaga_app;

-- migrate:down
DROP FUNCTION paysaga.billing_metrics();
DROP FUNCTION paysaga.open_renewal_charges(text, integer);
DROP FUNCTION paysaga.owed_subscription_credits(integer);
DROP FUNCTION paysaga.owed_dunning_starts(integer);
DROP FUNCTION paysaga.due_subscription_summary(timestamptz);
DROP FUNCTION paysaga.due_subscription_batches(timestamptz, timestamptz, uuid, text, integer, integer);
DROP FUNCTION paysaga.take_provider_tokens(text, integer, double precision, double precision);
DROP INDEX paysaga.invoices_by_subscription;
DROP TABLE paysaga.provider_rate_buckets;
DROP TABLE paysaga.renewal_batch_results;
DROP TABLE paysaga.renewal_charges;
DROP TABLE paysaga.subscription_credits;
DROP TABLE paysaga.subscription_pending_lines;
DROP TABLE paysaga.subscription_dunning;
DROP TABLE paysaga.subscription_events;
DROP TABLE paysaga.subscriptions;
DROP TABLE paysaga.tenant_billing_policies;
DROP TABLE paysaga.prices;
DROP FUNCTION paysaga.guard_price_update();
DROP TABLE paysaga.products;
ALTER TABLE paysaga.invoices DROP COLUMN credit_applied_micros;
