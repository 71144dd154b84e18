-- migrate:up

-- Two helpers every migration uses for its tables, so the rules are written once:
--   paysaga.make_tenant_table(t)  row-level security enabled and FORCED (the owner too) with one policy: a row
--                                 is visible and writable only in a transaction whose app.tenant_id is its own.
--   paysaga.make_append_only(t)   UPDATE, DELETE and TRUNCATE refused, even for the owner (lifecycle events, the
--                                 audit trail, journal entries): corrections are new rows.
--   paysaga.make_never_deleted(t) DELETE refused (aggregates whose rows change state but never disappear).
-- Idempotent (CREATE OR REPLACE, DROP … IF EXISTS), so a migration may re-apply them to an older table.
CREATE SCHEMA IF NOT EXISTS paysaga;

CREATE OR REPLACE FUNCTION paysaga.make_tenant_table(t regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
  EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
  EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %s', t);
  EXECUTE format('CREATE POLICY tenant_isolation ON %s USING (tenant_id = paysaga.current_tenant())'
                 ' WITH CHECK (tenant_id = paysaga.current_tenant())', t);
END $$;

CREATE OR REPLACE FUNCTION paysaga.append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'check_violation';
END $$;

CREATE OR REPLACE FUNCTION paysaga.never_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% rows are never deleted', TG_TABLE_NAME USING ERRCODE = 'check_violation';
END $$;

CREATE OR REPLACE FUNCTION paysaga.make_append_only(t regclass) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  name text := (SELECT relname FROM pg_class WHERE oid = t);
BEGIN
  EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE UPDATE OR DELETE ON %s'
                 ' FOR EACH ROW EXECUTE FUNCTION paysaga.append_only()', name || '_append_only', t);
  EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE TRUNCATE ON %s'
                 ' FOR EACH STATEMENT EXECUTE FUNCTION paysaga.append_only()', name || '_no_truncate', t);
END $$;

CREATE OR REPLACE FUNCTION paysaga.make_never_deleted(t regclass) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  name text := (SELECT relname FROM pg_class WHERE oid = t);
BEGIN
  EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE DELETE ON %s FOR EACH ROW EXECUTE FUNCTION paysaga.never_deleted()',
                 name || '_no_delete', t);
END $$;

-- migrate:down
DROP FUNCTION IF EXISTS paysaga.make_never_deleted(regclass);
DROP FUNCTION IF EXISTS paysaga.make_append_only(regclass);
DROP FUNCTION IF EXISTS paysaga.make_tenant_table(regclass);
