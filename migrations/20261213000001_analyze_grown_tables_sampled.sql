-- migrate:up

-- The statistics a bulk writer asks for are about size, not shape: a plan goes wrong when the planner believes
-- a grown table still holds a handful of rows. A small sample (statistics target 10: 3,000 rows instead of
-- 30,000) gives the row counts and coarse distributions that fix such plans at a fifth to an eighth of the cost,
-- and autovacuum's next analysis brings back the full statistics. Columns with a target of their own keep it.
ALTER FUNCTION paysaga.analyze_grown_tables(bigint) SET default_statistics_target = 10;

-- migrate:down
ALTER FUNCTION paysaga.analyze_grown_tables(bigint) RESET default_statistics_target;
