-- migrate:up

-- Settlement reconciliation reports (domain/settlement.py): our records of a window against the provider's
-- settlement data, per settlement currency, every difference stored with the records and lines behind it.
-- Written once by the reconciliation (append-only); a scheduled report of a window exists once
-- (kind + window), a manual one as often as it is asked for.
CREATE TABLE paysaga.settlement_reports (
  report_id     text NOT NULL,
  tenant_id     uuid NOT NULL REFERENCES paysaga.tenants,
  kind          text NOT NULL CHECK (kind IN ('daily', 'weekly', 'manual')),
  window_start  timestamptz NOT NULL,
  window_end    timestamptz NOT NULL,
  provider      text NOT NULL,
  source_key    text,                     -- the provider's settlement file, as read, in object storage
  lines         integer NOT NULL CHECK (lines >= 0),
  records       integer NOT NULL CHECK (records >= 0),
  matched       integer NOT NULL CHECK (matched >= 0),
  discrepancies integer NOT NULL CHECK (discrepancies >= 0),
  exceeds       boolean NOT NULL,         -- some currency's variance is at or above the objective
  generated_by  text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, report_id),
  CHECK (window_end > window_start)
);
CREATE UNIQUE INDEX settlement_reports_once ON paysaga.settlement_reports (tenant_id, kind, window_start, window_end)
  WHERE kind <> 'manual';
CREATE INDEX settlement_reports_newest ON paysaga.settlement_reports (tenant_id, created_at DESC, report_id DESC);

-- The variance per settlement currency: unexplained ÷ volume, kept exact (numerator and denominator in micros).
CREATE TABLE paysaga.settlement_report_currencies (
  tenant_id           uuid NOT NULL,
  report_id           text NOT NULL,
  currency            char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  volume_micros       bigint NOT NULL CHECK (volume_micros >= 0),
  unexplained_micros  bigint NOT NULL CHECK (unexplained_micros >= 0),
  variance_numerator  numeric NOT NULL CHECK (variance_numerator >= 0),
  variance_denominator numeric NOT NULL CHECK (variance_denominator > 0),
  variance_ppm        integer NOT NULL CHECK (variance_ppm >= 0),
  matched             integer NOT NULL,
  discrepancies       integer NOT NULL,
  in_flight           integer NOT NULL,
  exceeds             boolean NOT NULL,
  PRIMARY KEY (tenant_id, report_id, currency),
  FOREIGN KEY (tenant_id, report_id) REFERENCES paysaga.settlement_reports
);

CREATE TABLE paysaga.settlement_discrepancies (
  tenant_id       uuid NOT NULL,
  report_id       text NOT NULL,
  seq             integer NOT NULL,
  currency        char(3) NOT NULL,
  kind            text NOT NULL CHECK (kind IN ('missing_internal', 'missing_at_provider', 'amount', 'currency',
                                                'fee', 'timing')),
  key             text NOT NULL,
  expected_micros bigint,
  actual_micros   bigint,
  variance_micros bigint NOT NULL CHECK (variance_micros >= 0),
  explained       boolean NOT NULL,
  detail          text NOT NULL,
  records         jsonb NOT NULL CHECK (jsonb_typeof(records) = 'array'),
  lines           jsonb NOT NULL CHECK (jsonb_typeof(lines) = 'array'),
  PRIMARY KEY (tenant_id, report_id, seq),
  FOREIGN KEY (tenant_id, report_id, currency) REFERENCES paysaga.settlement_report_currencies
);
CREATE INDEX settlement_discrepancies_by_kind ON paysaga.settlement_discrepancies (tenant_id, report_id, kind);

SELECT paysaga.make_append_only(t::regclass) FROM unnest(ARRAY[
  'paysaga.settlement_reports', 'paysaga.settlement_report_currencies', 'paysaga.settlement_discrepancies']) AS t;
SELECT paysaga.make_tenant_table(t::regclass) FROM unnest(ARRAY[
  'paysaga.settlement_reports', 'paysaga.settlement_report_currencies', 'paysaga.settlement_discrepancies']) AS t;
GRANT SELECT, INSERT ON paysaga.settlement_reports, paysaga.settlement_report_currencies,
  paysaga.settlement_discrepancies TO paysaga_app;

-- The scheduled reconciliation reconciles every tenant: ids only, through one owner function.
CREATE FUNCTION paysaga.tenant_ids()
  RETURNS TABLE (tenant_id uuid)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
    SELECT t.tenant_id FROM paysaga.tenants t ORDER BY t.tenant_id
$$;
ALTER FUNCTION paysaga.tenant_ids() OWNER TO CURRENT_USER;
REVOKE ALL ON FUNCTION paysaga.tenant_ids() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paysaga.tenant_ids() TO paysaga_app;

-- /metrics: the variance of each tenant's latest report per currency (a number per tenant and currency, nothing
-- of the tenant's data beyond it).
CREATE FUNCTION paysaga.latest_settlement_variance()
  RETURNS TABLE (tenant_id uuid, currency char(3), variance_numerator numeric, variance_denominator numeric,
                 unexplained_micros bigint, window_end timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
    SELECT DISTINCT ON (c.tenant_id, c.currency) c.tenant_id, c.currency, c.variance_numerator,
           c.variance_denominator, c.unexplained_micros, r.window_end
      FROM paysaga.settlement_report_currencies c
      JOIN paysaga.settlement_reports r USING (tenant_id, report_id)
     ORDER BY c.tenant_id, c.currency, r.window_end DESC, r.created_at DESC
$$;
ALTER FUNCTION paysaga.latest_settlement_variance() OWNER TO CURRENT_USER;
REVOKE ALL ON FUNCTION paysaga.latest_settlement_variance() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paysaga.latest_settlement_variance() TO paysaga_app;

-- migrate:down
DROP FUNCTION paysaga.latest_settlement_variance();
DROP FUNCTION paysaga.tenant_ids();
DROP TABLE paysaga.settlement_discrepancies;
DROP TABLE paysaga.settlement_report_currencies;
DROP TABLE paysaga.settlement_reports;
