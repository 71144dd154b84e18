-- migrate:up

-- A finalized invoice's lines never change. An invoice may also be born finalized: written with its number,
-- status and lines in one transaction (a renewal run writes a period's invoices so), which saves rewriting every
-- row from draft to open. Lines may therefore be added to a non-draft invoice only by the transaction that
-- inserted it: its row's version is this transaction's own (xmin) and its creation time is this transaction's
-- start. Inside a savepoint the row's xmin is the subtransaction's, so the guard refuses there: it fails closed.
CREATE OR REPLACE FUNCTION paysaga.guard_invoice_lines() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  line record := coalesce(NEW, OLD);
  state text;
  born_here boolean;
BEGIN
  SELECT status, xmin = pg_current_xact_id()::xid AND created_at = now() INTO state, born_here
    FROM paysaga.invoices WHERE tenant_id = line.tenant_id AND invoice_id = line.invoice_id;
  IF state IS DISTINCT FROM 'draft' AND NOT (TG_OP = 'INSERT' AND coalesce(born_here, false)) THEN
    RAISE EXCEPTION 'invoice % is %: its lines cannot change', line.invoice_id, state
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN coalesce(NEW, OLD);
END $$;

-- migrate:down
CREATE OR REPLACE FUNCTION paysaga.guard_invoice_lines() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  line record := coalesce(NEW, OLD);
  state text;
BEGIN
  SELECT status INTO state FROM paysaga.invoices WHERE tenant_id = line.tenant_id AND invoice_id = line.invoice_id;
  IF state IS DISTINCT FROM 'draft' THEN
    RAISE EXCEPTION 'invoice % is %: its lines cannot change', line.invoice_id, state
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN coalesce(NEW, OLD);
END $$;
