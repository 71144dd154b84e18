-- migrate:up

-- A batch job can grow a table many times over in minutes (a renewal run writes a month's invoices, payments and
-- their events at once). The planner's statistics then still describe the table as it was, and a plan made on
-- them (a nested loop that rescans a "one-row" table per outer row) turns a batch quadratic until autovacuum's
-- next visit. This lets the service ask for fresh statistics of the tables that grew past theirs — those whose
-- rows changed since their last analysis outnumber the rows the statistics know of (and at least p_min_rows) —
-- without holding the owner's privileges itself. Tables being analyzed already (autovacuum) are skipped.
CREATE FUNCTION paysaga.analyze_grown_tables(p_min_rows bigint DEFAULT 1000) RETURNS SETOF text
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
DECLARE
  t text;
BEGIN
  FOR t IN
    SELECT format('%I.%I', s.schemaname, s.relname)
      FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
     WHERE s.schemaname IN ('paysaga', 'sandbox')
       AND s.n_mod_since_analyze > greatest(p_min_rows, c.reltuples)
     ORDER BY 1
  LOOP
    EXECUTE 'ANALYZE (SKIP_LOCKED) ' || t;
    RETURN NEXT t;
  END LOOP;
END $$;
ALTER FUNCTION paysaga.analyze_grown_tables(bigint) OWNER TO CURRENT_USER;
REVOKE ALL ON FUNCTION paysaga.analyze_grown_tables(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paysaga.analyze_grown_tables(bigint) TO paysaga_app;

-- migrate:down
DROP FUNCTION paysaga.analyze_grown_tables(bigint);
