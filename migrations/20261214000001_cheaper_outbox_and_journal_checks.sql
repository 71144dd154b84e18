-- migrate:up

-- An outbox message is published as it was written: its payload is kept as that text (json, checked as JSON but
-- not converted to jsonb's tree) and not compressed (a message is read once, by the relay). A renewal writes
-- about nine messages carrying whole invoices and subscriptions; converting and compressing each was most of
-- what its outbox rows cost.
ALTER TABLE paysaga.outbox ALTER COLUMN payload TYPE json USING payload::json;
ALTER TABLE paysaga.outbox SET (toast_tuple_target = 8160);

-- A journal entry balances and has lines: checked at commit, once per entry. The entry's own deferred trigger
-- checks it; a line checks its entry again only when that entry was not posted by this transaction (a line added
-- to an older entry): the four lines of an entry posted with it no longer check it four more times. Inside a
-- savepoint the entry's xmin is the subtransaction's, so the line checks too: it fails closed.
CREATE OR REPLACE FUNCTION paysaga.check_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  groups bigint;
  off_currency text;
  off_total numeric;
BEGIN
  IF TG_TABLE_NAME = 'journal_lines' AND EXISTS (
      SELECT 1 FROM paysaga.journal_entries
       WHERE tenant_id = NEW.tenant_id AND entry_id = NEW.entry_id
         AND xmin = pg_current_xact_id()::xid AND posted_at = now()) THEN
    RETURN NULL;
  END IF;
  SELECT count(*), min(currency) FILTER (WHERE total <> 0), min(total) FILTER (WHERE total <> 0)
    INTO groups, off_currency, off_total
    FROM (SELECT currency, sum(amount_micros) AS total FROM paysaga.journal_lines
           WHERE tenant_id = NEW.tenant_id AND entry_id = NEW.entry_id GROUP BY currency) AS g;
  IF off_currency IS NOT NULL THEN
    RAISE EXCEPTION 'journal entry % does not balance: % lines sum to %', NEW.entry_id, off_currency, off_total
      USING ERRCODE = 'check_violation';
  END IF;
  IF groups = 0 THEN
    RAISE EXCEPTION 'journal entry % has no lines', NEW.entry_id USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$;

-- migrate:down
CREATE OR REPLACE FUNCTION paysaga.check_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  off record;
BEGIN
  SELECT currency, sum(amount_micros) AS total INTO off FROM paysaga.journal_lines
   WHERE tenant_id = NEW.tenant_id AND entry_id = NEW.entry_id
   GROUP BY currency HAVING sum(amount_micros) <> 0 LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'journal entry % does not balance: % lines sum to %', NEW.entry_id, off.currency, off.total
      USING ERRCODE = 'check_violation';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM paysaga.journal_lines WHERE tenant_id = NEW.tenant_id AND entry_id = NEW.entry_id)
  THEN
    RAISE EXCEPTION 'journal entry % has no lines', NEW.entry_id USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$;
ALTER TABLE paysaga.outbox RESET (toast_tuple_target);
ALTER TABLE paysaga.outbox ALTER COLUMN payload TYPE jsonb USING payload::jsonb;
