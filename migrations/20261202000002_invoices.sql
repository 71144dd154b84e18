-- migrate:up

-- Customers as invoices need them: a billing address, tax ids (type + value, e.g. eu_vat DE123456789), a tax
-- exemption status (Stripe's none | exempt | reverse), a preferred locale for documents, and the payment method
-- an invoice is charged to.
ALTER TABLE paysaga.customers
  ADD COLUMN address jsonb CHECK (address IS NULL OR jsonb_typeof(address) = 'object'),
  ADD COLUMN tax_ids jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(tax_ids) = 'array'),
  ADD COLUMN tax_exempt text NOT NULL DEFAULT 'none' CHECK (tax_exempt IN ('none', 'exempt', 'reverse')),
  ADD COLUMN preferred_locale text,
  ADD COLUMN default_payment_method_id text,
  ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- Invoices. A draft's lines may change; finalizing freezes everything an accountant relies on (number, dates,
-- lines and their tax, who sold to whom) and from then on only the lifecycle moves: a payment, a credit note,
-- void, uncollectible. The rules are checked here too, whoever writes (see the triggers below).
CREATE TABLE paysaga.invoices (
  invoice_id         text NOT NULL,
  tenant_id          uuid NOT NULL,
  customer_id        text NOT NULL,
  currency           char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  status             text NOT NULL DEFAULT 'draft'
                     CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
  collection_method  text NOT NULL DEFAULT 'charge_automatically'
                     CHECK (collection_method IN ('charge_automatically', 'send_invoice')),
  days_until_due     integer CHECK (days_until_due BETWEEN 0 AND 365),
  due_date           date,
  series             text NOT NULL DEFAULT 'INV' CHECK (series ~ '^[A-Z0-9][A-Z0-9-]{0,15}$'),
  number             text,
  description        text,
  period_start       date,
  period_end         date,
  subscription_id    text,
  amount_paid_micros bigint NOT NULL DEFAULT 0 CHECK (amount_paid_micros >= 0),
  paid_out_of_band   boolean NOT NULL DEFAULT false,
  customer_snapshot  jsonb,                 -- the buyer as billed, frozen at finalization
  seller_snapshot    jsonb,                 -- the seller as billed, frozen at finalization
  tax_quote          jsonb,                 -- the quote the lines' tax came from (committed by the workflow)
  locale             text NOT NULL DEFAULT 'en_US',
  pdf_key            text,
  metadata           jsonb NOT NULL DEFAULT '{}',
  idempotency_key    text,
  workflow_id        text NOT NULL,
  event_seq          integer NOT NULL DEFAULT 1,
  finalized_at       timestamptz,
  paid_at            timestamptz,
  voided_at          timestamptz,
  void_reason        text,
  uncollectible_at   timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, invoice_id),
  FOREIGN KEY (tenant_id, customer_id) REFERENCES paysaga.customers,
  UNIQUE (tenant_id, series, number),
  CHECK ((status = 'draft') = (number IS NULL)),
  CHECK (status <> 'void' OR void_reason IS NOT NULL),
  CHECK (period_end IS NULL OR period_start IS NULL OR period_end >= period_start)
);
CREATE INDEX invoices_newest ON paysaga.invoices (tenant_id, created_at DESC, invoice_id DESC);
CREATE INDEX invoices_by_customer ON paysaga.invoices (tenant_id, customer_id, created_at DESC);
CREATE INDEX invoices_by_status ON paysaga.invoices (tenant_id, status, created_at DESC);
CREATE UNIQUE INDEX invoices_idempotency_key ON paysaga.invoices (tenant_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;

CREATE TABLE paysaga.invoice_lines (
  tenant_id     uuid NOT NULL,
  invoice_id    text NOT NULL,
  line_id       text NOT NULL,
  position      integer NOT NULL,
  description   text NOT NULL CHECK (length(description) BETWEEN 1 AND 500),
  quantity      text NOT NULL,
  unit_amount   text NOT NULL,
  amount_micros bigint NOT NULL CHECK (amount_micros >= 0),
  period_start  date,
  period_end    date,
  tax_code      text NOT NULL DEFAULT 'txcd_10000000',
  taxes         jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(taxes) = 'array'),
  price_id      text,
  proration     boolean NOT NULL DEFAULT false,
  PRIMARY KEY (tenant_id, invoice_id, line_id),
  FOREIGN KEY (tenant_id, invoice_id) REFERENCES paysaga.invoices
);
CREATE INDEX invoice_lines_in_order ON paysaga.invoice_lines (tenant_id, invoice_id, position);

-- Gapless numbers per tenant and series: the next number is taken by an UPDATE in the finalizing transaction, so
-- concurrent finalizations queue on the row and a rolled-back one gives its number back.
CREATE TABLE paysaga.invoice_sequences (
  tenant_id   uuid NOT NULL,
  series      text NOT NULL,
  last_number bigint NOT NULL CHECK (last_number > 0),
  PRIMARY KEY (tenant_id, series)
);

CREATE TABLE paysaga.credit_notes (
  credit_note_id     text NOT NULL,
  tenant_id          uuid NOT NULL,
  invoice_id         text NOT NULL,
  number             text NOT NULL,
  type               text NOT NULL CHECK (type IN ('pre_payment', 'post_payment')),
  reason             text NOT NULL
                     CHECK (reason IN ('duplicate', 'fraudulent', 'order_change', 'product_unsatisfactory')),
  memo               text NOT NULL DEFAULT '',
  amount_micros      bigint NOT NULL CHECK (amount_micros > 0),   -- tax excluded
  tax_micros         bigint NOT NULL CHECK (tax_micros >= 0),
  refund_micros      bigint NOT NULL DEFAULT 0 CHECK (refund_micros >= 0),
  credit_micros      bigint NOT NULL DEFAULT 0 CHECK (credit_micros >= 0),
  out_of_band_micros bigint NOT NULL DEFAULT 0 CHECK (out_of_band_micros >= 0),
  lines              jsonb NOT NULL CHECK (jsonb_typeof(lines) = 'array'),
  refund_id          text,                  -- the refund that gives the refund part back through the payment
  idempotency_key    text,
  created_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, credit_note_id),
  FOREIGN KEY (tenant_id, invoice_id) REFERENCES paysaga.invoices,
  UNIQUE (tenant_id, number),
  CHECK (type = 'post_payment' OR refund_micros + credit_micros + out_of_band_micros = 0),
  CHECK (type = 'pre_payment' OR refund_micros + credit_micros + out_of_band_micros = amount_micros + tax_micros),
  CHECK ((refund_micros > 0) = (refund_id IS NOT NULL))
);
CREATE INDEX credit_notes_by_invoice ON paysaga.credit_notes (tenant_id, invoice_id, created_at);

CREATE TABLE paysaga.invoice_events (
  transition_id  text PRIMARY KEY,
  tenant_id      uuid NOT NULL,
  invoice_id     text NOT NULL,
  seq            integer NOT NULL,
  type           text NOT NULL,
  old_status     text,
  new_status     text NOT NULL,
  metadata       jsonb NOT NULL DEFAULT '{}',
  actor          text NOT NULL,
  correlation_id text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, invoice_id, seq),
  FOREIGN KEY (tenant_id, invoice_id) REFERENCES paysaga.invoices
);

-- Stripe's lifecycle, and nothing but it changes a finalized invoice.
CREATE FUNCTION paysaga.guard_invoice_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status <> NEW.status AND (OLD.status, NEW.status) NOT IN (
       ('draft', 'open'), ('draft', 'paid'), ('open', 'paid'), ('open', 'void'), ('open', 'uncollectible'),
       ('uncollectible', 'paid'), ('uncollectible', 'void')) THEN
    RAISE EXCEPTION 'invoice % cannot go from % to %', OLD.invoice_id, OLD.status, NEW.status
      USING ERRCODE = 'check_violation';
  END IF;
  IF OLD.status <> 'draft' AND (
       NEW.customer_id, NEW.currency, NEW.collection_method, NEW.days_until_due, NEW.due_date, NEW.series,
       NEW.number, NEW.description, NEW.period_start, NEW.period_end, NEW.customer_snapshot, NEW.seller_snapshot,
       NEW.tax_quote, NEW.locale, NEW.finalized_at, NEW.subscription_id)
     IS DISTINCT FROM (
       OLD.customer_id, OLD.currency, OLD.collection_method, OLD.days_until_due, OLD.due_date, OLD.series,
       OLD.number, OLD.description, OLD.period_start, OLD.period_end, OLD.customer_snapshot, OLD.seller_snapshot,
       OLD.tax_quote, OLD.locale, OLD.finalized_at, OLD.subscription_id) THEN
    RAISE EXCEPTION 'invoice % is finalized: only its lifecycle may change', OLD.invoice_id
      USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.amount_paid_micros < OLD.amount_paid_micros THEN
    RAISE EXCEPTION 'what was paid on invoice % cannot shrink', OLD.invoice_id USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER invoices_lifecycle BEFORE UPDATE ON paysaga.invoices
  FOR EACH ROW EXECUTE FUNCTION paysaga.guard_invoice_update();

CREATE FUNCTION paysaga.guard_invoice_lines() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE TRIGGER invoice_lines_only_in_drafts BEFORE INSERT OR UPDATE OR DELETE ON paysaga.invoice_lines
  FOR EACH ROW EXECUTE FUNCTION paysaga.guard_invoice_lines();

-- One payment at a time collects an invoice, and once one has completed no other may start: an invoice is
-- never charged twice, whoever starts the payment (its workflow, "pay now", a retry).
CREATE UNIQUE INDEX payments_one_live_per_invoice ON paysaga.payments (tenant_id, invoice_id)
  WHERE invoice_id IS NOT NULL AND status IN ('created', 'pending', 'processing', 'completed');

SELECT paysaga.make_append_only(t::regclass)
  FROM unnest(ARRAY['paysaga.invoice_events', 'paysaga.credit_notes']) AS t;
SELECT paysaga.make_never_deleted('paysaga.invoices');
SELECT paysaga.make_tenant_table(t::regclass) FROM unnest(ARRAY[
  'paysaga.invoices', 'paysaga.invoice_lines', 'paysaga.invoice_sequences', 'paysaga.credit_notes',
  'paysaga.invoice_events']) AS t;
GRANT SELECT, INSERT, UPDATE ON paysaga.invoices, paysaga.invoice_sequences TO paysaga_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON paysaga.invoice_lines TO paysaga_app;
GRANT SELECT, INSERT ON paysaga.credit_notes, paysaga.invoice_events TO paysaga_app;

-- migrate:down
DROP INDEX paysaga.payments_one_live_per_invoice;
DROP TABLE paysaga.invoice_events;
DROP TABLE paysaga.credit_notes;
DROP TABLE paysaga.invoice_sequences;
DROP TABLE paysaga.invoice_lines;
DROP TABLE paysaga.invoices;
DROP FUNCTION paysaga.guard_invoice_lines();
DROP FUNCTION paysaga.guard_invoice_update();
ALTER TABLE paysaga.customers DROP COLUMN address, DROP COLUMN tax_ids, DROP COLUMN tax_exempt,
  DROP COLUMN preferred_locale, DROP COLUMN default_payment_method_id, DROP COLUMN updated_at;
