-- migrate:up

-- The double-entry ledger. Accounts per tenant and currency; journal entries with their lines; append-only
-- (a correction is a reversing entry). The invariants hold in the database too, whoever writes:
--   * every entry balances to the micro-unit in each currency it touches (checked at commit, so an entry's
--     lines may be inserted one by one within its transaction);
--   * a line posts in its account's currency (a foreign key on (account_id, currency));
--   * an account's balance is the sum of its lines (there is no stored balance to drift).
-- Entry ids are derived from the business event that caused them, so a retried step posts once.
CREATE TABLE paysaga.ledger_accounts (
  tenant_id  uuid NOT NULL,
  account_id text NOT NULL,                 -- e.g. receivable:cus_1:EUR, revenue:EUR
  code       text NOT NULL CHECK (code IN ('receivable', 'cash', 'revenue', 'tax_payable', 'refunds',
                                           'chargebacks', 'fees', 'customer_credit', 'bad_debt')),
  subject    text,                          -- the customer, provider or jurisdiction of a per-subject account
  currency   char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  type       text NOT NULL CHECK (type IN ('asset', 'liability', 'revenue', 'contra_revenue', 'expense')),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, account_id),
  UNIQUE (tenant_id, account_id, currency)
);

CREATE TABLE paysaga.journal_entries (
  tenant_id    uuid NOT NULL,
  entry_id     text NOT NULL,
  source_type  text NOT NULL,
  source_id    text NOT NULL,
  event        text NOT NULL,
  memo         text NOT NULL DEFAULT '',
  reverses     text,
  posted_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, entry_id),
  FOREIGN KEY (tenant_id, reverses) REFERENCES paysaga.journal_entries
);
CREATE INDEX journal_entries_by_source ON paysaga.journal_entries (tenant_id, source_type, source_id);

CREATE TABLE paysaga.journal_lines (
  tenant_id     uuid NOT NULL,
  entry_id      text NOT NULL,
  line_no       integer NOT NULL,
  account_id    text NOT NULL,
  currency      char(3) NOT NULL,
  amount_micros bigint NOT NULL CHECK (amount_micros <> 0),  -- debit > 0, credit < 0
  PRIMARY KEY (tenant_id, entry_id, line_no),
  FOREIGN KEY (tenant_id, entry_id) REFERENCES paysaga.journal_entries,
  FOREIGN KEY (tenant_id, account_id, currency) REFERENCES paysaga.ledger_accounts (tenant_id, account_id, currency)
);
CREATE INDEX journal_lines_by_account ON paysaga.journal_lines (tenant_id, account_id, entry_id);

CREATE FUNCTION paysaga.check_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE CONSTRAINT TRIGGER journal_lines_balanced AFTER INSERT ON paysaga.journal_lines
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION paysaga.check_entry_balanced();
CREATE CONSTRAINT TRIGGER journal_entries_have_lines AFTER INSERT ON paysaga.journal_entries
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION paysaga.check_entry_balanced();

SELECT paysaga.make_append_only(t::regclass)
  FROM unnest(ARRAY['paysaga.journal_entries', 'paysaga.journal_lines']) AS t;
SELECT paysaga.make_never_deleted('paysaga.ledger_accounts');
SELECT paysaga.make_tenant_table(t::regclass)
  FROM unnest(ARRAY['paysaga.ledger_accounts', 'paysaga.journal_entries', 'paysaga.journal_lines']) AS t;
GRANT SELECT, INSERT ON paysaga.ledger_accounts, paysaga.journal_entries, paysaga.journal_lines TO paysaga_app;

-- A payment may pay an invoice: its journal entry then settles the customer's receivable instead of booking
-- revenue.
ALTER TABLE paysaga.payments ADD COLUMN invoice_id text;

-- migrate:down
ALTER TABLE paysaga.payments DROP COLUMN invoice_id;
DROP TABLE paysaga.journal_lines;
DROP TABLE paysaga.journal_entries;
DROP TABLE paysaga.ledger_accounts;
DROP FUNCTION paysaga.check_entry_balanced();
