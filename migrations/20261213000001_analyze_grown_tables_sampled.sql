-- migrate:up

-- The statistics a bulk writer asks for are about size, not shape: a plan goes wrong when the planner believes
-- a grown table still holds a handful of rows. A small sample (statistics target 10: 3,000 rows instead of
-- 30,000) gives the row counts and coarse distributions that fix such plans at a fifth to an eighth of the cost,
-- and autovacuum's next analysis brings back the full statistics. Columns with a target of their own keep it.
CREATE OR REPLACE FUNCTION paysaga.analyze_grown_tables(p_min_rows bigint DEFAULT 1000) RETURNS SETOF text
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = paysaga, pg_temp SET default_statistics_target = 10 AS $$
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

-- migrate:down
CREATE OR REPLACE FUNCTION paysaga.analyze_grown_tables(p_min_rows bigint DEFAULT 1000) RETURNS SETOF text
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
