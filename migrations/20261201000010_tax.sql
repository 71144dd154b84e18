-- migrate:up

-- The tenant as a seller: the legal name and address an invoice prints, its own tax ids (an EU invoice shows the
-- seller's VAT number), and the country the tax rules start from. One row per tenant, kept apart from
-- paysaga.tenants, which only the owner writes.
CREATE TABLE paysaga.tenant_profiles (
  tenant_id   uuid PRIMARY KEY REFERENCES paysaga.tenants,
  legal_name  text NOT NULL CHECK (legal_name <> ''),
  country     char(2) NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
  state       text,
  postal_code text,
  city        text,
  line1       text,
  line2       text,
  tax_ids     jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(tax_ids) = 'array'),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Where the tenant collects tax (Stripe Tax's registrations): a country, a US state (nexus), or the EU One-Stop
-- Shop. Dated, because a quote is made for its tax date; a registration that ends gets its active_until (the
-- first day it no longer applies) and is never deleted, so past quotes can still be explained.
CREATE TABLE paysaga.tax_registrations (
  registration_id text NOT NULL,
  tenant_id       uuid NOT NULL REFERENCES paysaga.tenants,
  country         char(2) NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
  state           text,
  type            text NOT NULL DEFAULT 'standard',
  active_from     date NOT NULL,
  active_until    date,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, registration_id),
  CHECK (active_until IS NULL OR active_until > active_from),
  CHECK (country <> 'US' OR state ~ '^[A-Z]{2}$')
);
CREATE UNIQUE INDEX tax_registrations_once
  ON paysaga.tax_registrations (tenant_id, country, coalesce(state, ''), type, active_from);

-- A committed quote: the tax the tenant owes for one invoice (`reference`), per line and jurisdiction. Written
-- once (INSERT … ON CONFLICT DO NOTHING, then read by reference), never changed: a correction is a reversal.
CREATE TABLE paysaga.tax_transactions (
  tenant_id         uuid NOT NULL REFERENCES paysaga.tenants,
  reference         text NOT NULL,
  transaction_id    text NOT NULL,                 -- ours (taxtxn_…) or the provider's (Stripe's tax_…)
  provider          text NOT NULL,
  quote_id          text NOT NULL,
  currency          char(3) NOT NULL,
  tax_date          date NOT NULL,
  tax_micros        bigint NOT NULL CHECK (tax_micros >= 0),
  lines             jsonb NOT NULL CHECK (jsonb_typeof(lines) = 'array'),
  notes             jsonb NOT NULL DEFAULT '[]',
  provider_line_ids jsonb NOT NULL DEFAULT '{}',   -- line_id → the provider's line item id (partial reversals)
  created_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, reference),
  UNIQUE (tenant_id, transaction_id)
);

-- A void or a credit note: what was taken back of a transaction. `credits` is line_id → the part of the line's
-- amount credited (tax excluded); the tax parts are rounded cumulatively by the domain so they sum to the
-- original exactly. Idempotent by (tenant_id, reference).
CREATE TABLE paysaga.tax_reversals (
  tenant_id            uuid NOT NULL,
  reference            text NOT NULL,
  reversal_id          text NOT NULL,                -- ours (taxrev_…) or the provider's (Stripe's tax_…)
  original_reference   text NOT NULL,
  provider             text NOT NULL,
  amount_micros        bigint NOT NULL CHECK (amount_micros > 0),
  tax_micros           bigint NOT NULL CHECK (tax_micros >= 0),
  credits              jsonb NOT NULL CHECK (jsonb_typeof(credits) = 'object'),
  lines                jsonb NOT NULL CHECK (jsonb_typeof(lines) = 'array'),
  created_at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, reference),
  UNIQUE (tenant_id, reversal_id),
  FOREIGN KEY (tenant_id, original_reference) REFERENCES paysaga.tax_transactions (tenant_id, reference)
);
CREATE INDEX tax_reversals_by_original ON paysaga.tax_reversals (tenant_id, original_reference, created_at);

-- The key of the lock every reversal of one transaction takes, so reversals of the same invoice queue and each
-- sees the ones before it (an advisory lock: the rows themselves are append-only and cannot be locked FOR
-- UPDATE by a role without UPDATE).
CREATE FUNCTION paysaga.tax_reversal_lock_key(p_tenant uuid, p_reference text) RETURNS bigint
  LANGUAGE sql IMMUTABLE AS $$ SELECT hashtextextended('tax_reversal/' || p_tenant::text || '/' || p_reference, 0) $$;

-- Never more reversed than was committed: per line (credits ≤ the line's amount) and in total (tax ≤ the
-- transaction's tax), checked under the lock, whoever inserts.
CREATE FUNCTION paysaga.guard_tax_reversal_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  t record;
  reversed bigint;
  over text;
BEGIN
  PERFORM pg_advisory_xact_lock(paysaga.tax_reversal_lock_key(NEW.tenant_id, NEW.original_reference));
  SELECT tax_micros, lines INTO t FROM paysaga.tax_transactions
   WHERE tenant_id = NEW.tenant_id AND reference = NEW.original_reference;
  SELECT coalesce(sum(tax_micros), 0) INTO reversed FROM paysaga.tax_reversals
   WHERE tenant_id = NEW.tenant_id AND original_reference = NEW.original_reference;
  IF reversed + NEW.tax_micros > t.tax_micros THEN
    RAISE EXCEPTION 'reversing % micros of tax exceeds the % micros left of %', NEW.tax_micros,
      t.tax_micros - reversed, NEW.original_reference USING ERRCODE = 'check_violation';
  END IF;
  SELECT c.line_id INTO over FROM jsonb_each_text(NEW.credits) AS c(line_id, credit)
   WHERE c.credit::bigint <= 0
      OR c.credit::bigint + coalesce((SELECT sum((r.credits ->> c.line_id)::bigint) FROM paysaga.tax_reversals r
                                       WHERE r.tenant_id = NEW.tenant_id
                                         AND r.original_reference = NEW.original_reference), 0)
         > coalesce((SELECT max((l ->> 'amount_micros')::bigint) FROM jsonb_array_elements(t.lines) AS l
                      WHERE l ->> 'line_id' = c.line_id), 0)
   LIMIT 1;
  IF over IS NOT NULL THEN
    RAISE EXCEPTION 'credit of line % exceeds what is left of it in %', over, NEW.original_reference
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER tax_reversals_cap BEFORE INSERT ON paysaga.tax_reversals
  FOR EACH ROW EXECUTE FUNCTION paysaga.guard_tax_reversal_insert();

SELECT paysaga.make_tenant_table(t::regclass) FROM unnest(ARRAY[
  'paysaga.tenant_profiles', 'paysaga.tax_registrations', 'paysaga.tax_transactions',
  'paysaga.tax_reversals']) AS t;
SELECT paysaga.make_never_deleted('paysaga.tax_registrations');
SELECT paysaga.make_append_only('paysaga.tax_transactions');
SELECT paysaga.make_append_only('paysaga.tax_reversals');

GRANT SELECT, INSERT, UPDATE ON paysaga.tenant_profiles, paysaga.tax_registrations TO paysaga_app;
GRANT SELECT, INSERT ON paysaga.tax_transactions, paysaga.tax_reversals TO paysaga_app;

-- migrate:down
DROP TABLE paysaga.tax_reversals;
DROP TABLE paysaga.tax_transactions;
DROP TABLE paysaga.tax_registrations;
DROP TABLE paysaga.tenant_profiles;
DROP FUNCTION paysaga.guard_tax_reversal_insert();
DROP FUNCTION paysaga.tax_reversal_lock_key(uuid, text);
