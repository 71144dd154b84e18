-- migrate:up

-- Advisory fraud score (domain/fraud.py): 0..100, its reasons (largest contribution first, each
-- {"code", "contribution", "explanation"}) and the advised action. Never a decline: declines come only from the
-- hard risk rules (risk_score / risk_reasons, domain/risk.py). All three are NULL until scored, then set together.
ALTER TABLE paysaga.payments
  ADD COLUMN fraud_score   smallint CHECK (fraud_score BETWEEN 0 AND 100),
  ADD COLUMN fraud_reasons jsonb CHECK (jsonb_typeof(fraud_reasons) = 'array'),
  ADD COLUMN fraud_action  text CHECK (fraud_action IN ('allow', 'require_3ds', 'review')),
  ADD CONSTRAINT payments_fraud_all_or_none
    CHECK ((fraud_score IS NULL) = (fraud_action IS NULL) AND (fraud_score IS NULL) = (fraud_reasons IS NULL));

-- Written once, while the payment is `created`: the score a payment shows is the score the saga acted on.
-- (Terminal rows cannot change at all anyway: payments_guard.)
CREATE FUNCTION paysaga.guard_fraud_assessment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (NEW.fraud_score, NEW.fraud_reasons, NEW.fraud_action) IS DISTINCT FROM
     (OLD.fraud_score, OLD.fraud_reasons, OLD.fraud_action) THEN
    IF OLD.fraud_score IS NOT NULL THEN
      RAISE EXCEPTION 'the fraud assessment of payment % is written once', OLD.payment_id
        USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.status <> 'created' THEN
      RAISE EXCEPTION 'payment % is %: a fraud assessment is written while it is created', OLD.payment_id,
        OLD.status USING ERRCODE = 'check_violation';
    END IF;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER payments_fraud_once BEFORE UPDATE OF fraud_score, fraud_reasons, fraud_action ON paysaga.payments
  FOR EACH ROW EXECUTE FUNCTION paysaga.guard_fraud_assessment();

-- The bias report scans one quarter of payments across every tenant. Rows arrive in created_at order, so a BRIN
-- index answers the range for almost nothing on writes (a B-tree on the hot table would cost every insert).
CREATE INDEX payments_created_brin ON paysaga.payments USING brin (created_at);

-- Bias report: per segment, how the fraud score and the outcomes are distributed, so that a feature that falls
-- disproportionately on one group of customers (a country, a currency, a card brand, an issuing country) shows.
-- Fleet-wide, hence run as the owner (like payment_status_counts: the owner must bypass RLS, as superuser or
-- BYPASSRLS); it returns aggregates only: a segment value and counts, shares and score percentiles, never a
-- tenant, customer or payment id. Segment 'all'/'all' is the baseline the others are compared with.
--   country       the customer's country          currency   the payment's currency
--   card_brand    the payment method's brand       card_country  the card's issuing country, if recorded
-- Shares of flagged payments are over scored payments; shares of outcomes are over all payments of the segment.
-- The card's country is read through to_jsonb(pm) so this function does not depend on the column existing.
CREATE FUNCTION paysaga.risk_bias_report(p_from timestamptz, p_to timestamptz)
  RETURNS TABLE (segment_type text, segment text, n bigint, scored bigint, mean_score numeric, p50_score integer,
                 p90_score integer, share_flagged numeric, share_review numeric, share_completed numeric,
                 share_failed numeric)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
    WITH base AS (
      SELECT p.status, p.fraud_score, p.fraud_action, p.currency::text AS currency,
             coalesce(NULLIF(upper(btrim(c.country)), ''), 'unknown') AS country,
             coalesce(NULLIF(lower(btrim(pm.brand)), ''), 'unknown') AS card_brand,
             coalesce(NULLIF(upper(btrim(to_jsonb(pm)->>'country')), ''), 'unknown') AS card_country
        FROM paysaga.payments p
        LEFT JOIN paysaga.customers c ON c.tenant_id = p.tenant_id AND c.customer_id = p.customer_id
        LEFT JOIN paysaga.payment_methods pm
               ON pm.tenant_id = p.tenant_id AND pm.payment_method_id = p.payment_method_id
       WHERE p.created_at >= p_from AND p.created_at < p_to
    ), segmented AS (
      SELECT s.segment_type, s.segment, b.status, b.fraud_score, b.fraud_action
        FROM base b
       CROSS JOIN LATERAL (VALUES ('all', 'all'), ('country', b.country), ('currency', b.currency),
                                  ('card_brand', b.card_brand), ('card_country', b.card_country))
             AS s(segment_type, segment)
    )
    SELECT segment_type, segment, count(*), count(fraud_score),
           round(avg(fraud_score), 2),
           percentile_disc(0.5) WITHIN GROUP (ORDER BY fraud_score)::integer,
           percentile_disc(0.9) WITHIN GROUP (ORDER BY fraud_score)::integer,
           round(count(*) FILTER (WHERE fraud_action <> 'allow')::numeric / NULLIF(count(fraud_score), 0), 4),
           round(count(*) FILTER (WHERE fraud_action = 'review')::numeric / NULLIF(count(fraud_score), 0), 4),
           round(count(*) FILTER (WHERE status = 'completed')::numeric / count(*), 4),
           round(count(*) FILTER (WHERE status = 'failed')::numeric / count(*), 4)
      FROM segmented
     GROUP BY segment_type, segment
     ORDER BY segment_type, count(*) DESC, segment
$$;
ALTER FUNCTION paysaga.risk_bias_report(timestamptz, timestamptz) OWNER TO CURRENT_USER;
REVOKE ALL ON FUNCTION paysaga.risk_bias_report(timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paysaga.risk_bias_report(timestamptz, timestamptz) TO paysaga_app;

-- The stored quarterly bias reports (one per quarter; a re-run replaces it). This is the one table in the schema
-- without tenant_id and without row-level security, on purpose: a report is fleet-wide — it is computed across
-- all tenants by the owner-run function above and holds only aggregates (segment values, counts, shares, score
-- percentiles), no tenant, customer or payment identifier, so there is no tenant to isolate. Anything
-- tenant-specific must not be stored here.
CREATE TABLE paysaga.risk_reports (
  report_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  quarter      text NOT NULL UNIQUE CHECK (quarter ~ '^[0-9]{4}Q[1-4]$'),
  generated_at timestamptz NOT NULL DEFAULT now(),
  body         jsonb NOT NULL CHECK (jsonb_typeof(body) = 'object')
);
-- UPDATE only of the two columns the idempotent upsert (INSERT … ON CONFLICT (quarter) DO UPDATE) rewrites.
GRANT SELECT, INSERT ON paysaga.risk_reports TO paysaga_app;
GRANT UPDATE (generated_at, body) ON paysaga.risk_reports TO paysaga_app;

-- migrate:down
DROP TABLE paysaga.risk_reports;
DROP FUNCTION paysaga.risk_bias_report(timestamptz, timestamptz);
DROP INDEX paysaga.payments_created_brin;
DROP TRIGGER payments_fraud_once ON paysaga.payments;
DROP FUNCTION paysaga.guard_fraud_assessment();
ALTER TABLE paysaga.payments DROP CONSTRAINT payments_fraud_all_or_none,
  DROP COLUMN fraud_action, DROP COLUMN fraud_reasons, DROP COLUMN fraud_score;
