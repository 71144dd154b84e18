-- migrate:up

-- A tenant's settings for money across borders and out to sellers (one row per tenant, written by finance):
--   settlement_currency        the currency the provider settles the tenant's charges in (a charge in another
--                              currency is converted at the provider's rate); NULL: each charge settles in its
--                              own currency, nothing is converted
--   payout_approval_required   a payout run computes, then waits for finance to approve or reject it
--   payout_approval_hours      how long it waits; then it expires and moves no money
--   payout_reminder_hours      finance is reminded this long before that deadline
CREATE TABLE paysaga.tenant_settings (
  tenant_id                uuid PRIMARY KEY REFERENCES paysaga.tenants,
  settlement_currency      char(3) CHECK (settlement_currency ~ '^[A-Z]{3}$'),
  payout_approval_required boolean NOT NULL DEFAULT false,
  payout_approval_hours    integer NOT NULL DEFAULT 48 CHECK (payout_approval_hours BETWEEN 1 AND 720),
  payout_reminder_hours    integer NOT NULL DEFAULT 24 CHECK (payout_reminder_hours BETWEEN 0 AND 719),
  updated_at               timestamptz NOT NULL DEFAULT now(),
  CHECK (payout_reminder_hours < payout_approval_hours)
);

-- Connected accounts: the sellers (or service providers) a tenant pays out to, as domain/connect.py describes
-- them. The payout method is the provider's token for a bank account or card, never the account number: a CHECK
-- refuses digit runs and IBAN shapes, whoever writes. Minimum and fixed reserve are in the settlement currency.
CREATE TABLE paysaga.connected_accounts (
  account_id            text NOT NULL CHECK (account_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
  tenant_id             uuid NOT NULL REFERENCES paysaga.tenants,
  provider              text NOT NULL,
  provider_account_id   text,
  display_name          text CHECK (length(display_name) <= 200),
  email                 text CHECK (length(email) <= 320),
  country               char(2) NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
  settlement_currency   char(3) NOT NULL CHECK (settlement_currency ~ '^[A-Z]{3}$'),
  onboarding_status     text NOT NULL DEFAULT 'pending'
                        CHECK (onboarding_status IN ('pending', 'restricted', 'enabled', 'rejected')),
  payout_interval       text NOT NULL DEFAULT 'weekly' CHECK (payout_interval IN ('weekly', 'daily', 'manual')),
  payout_weekday        smallint NOT NULL DEFAULT 0 CHECK (payout_weekday BETWEEN 0 AND 6),
  payout_delay_days     smallint NOT NULL DEFAULT 7 CHECK (payout_delay_days BETWEEN 0 AND 365),
  payout_minimum_micros bigint CHECK (payout_minimum_micros >= 0),
  reserve_basis_points  integer NOT NULL DEFAULT 0 CHECK (reserve_basis_points BETWEEN 0 AND 10000),
  reserve_hold_days     integer NOT NULL DEFAULT 0 CHECK (reserve_hold_days BETWEEN 0 AND 3650),
  reserve_fixed_micros  bigint CHECK (reserve_fixed_micros >= 0),
  payout_method_token   text CHECK (payout_method_token !~ '[0-9]{9,}'
                                    AND payout_method_token !~ '[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}'),
  payout_method_last4   text CHECK (payout_method_last4 ~ '^[0-9A-Za-z]{4}$'),
  metadata              jsonb NOT NULL DEFAULT '{}',
  idempotency_key       text,
  event_seq             integer NOT NULL DEFAULT 1,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, account_id),
  CHECK (reserve_basis_points = 0 OR reserve_hold_days > 0)
);
CREATE UNIQUE INDEX connected_accounts_idempotency_key ON paysaga.connected_accounts (tenant_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX connected_accounts_newest ON paysaga.connected_accounts (tenant_id, created_at DESC, account_id DESC);

CREATE TABLE paysaga.connected_account_events (
  transition_id  text PRIMARY KEY,
  tenant_id      uuid NOT NULL,
  account_id     text NOT NULL,
  seq            integer NOT NULL,
  type           text NOT NULL,
  old_status     text,
  new_status     text NOT NULL,
  metadata       jsonb NOT NULL DEFAULT '{}',
  actor          text NOT NULL,
  correlation_id text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, account_id, seq),
  FOREIGN KEY (tenant_id, account_id) REFERENCES paysaga.connected_accounts
);

-- A payment may be a split charge: for a connected account (its destination), of which the platform keeps an
-- application fee. Both are fixed when the payment is created, like its amount.
ALTER TABLE paysaga.payments
  ADD COLUMN destination_account_id text,
  ADD COLUMN application_fee_micros bigint,
  ADD CONSTRAINT payments_split CHECK (
    (destination_account_id IS NULL AND application_fee_micros IS NULL)
    OR (destination_account_id IS NOT NULL AND application_fee_micros BETWEEN 0 AND amount_micros)),
  ADD CONSTRAINT payments_destination FOREIGN KEY (tenant_id, destination_account_id)
    REFERENCES paysaga.connected_accounts (tenant_id, account_id);

CREATE FUNCTION paysaga.guard_payment_split() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.destination_account_id IS DISTINCT FROM OLD.destination_account_id
     OR NEW.application_fee_micros IS DISTINCT FROM OLD.application_fee_micros THEN
    RAISE EXCEPTION 'the split of payment % is immutable', OLD.payment_id USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER payments_split_guard BEFORE UPDATE ON paysaga.payments
  FOR EACH ROW EXECUTE FUNCTION paysaga.guard_payment_split();

-- What the provider said it settled for a money movement, as its balance transaction: the settled amount and fee
-- in the settlement currency, the customer-facing amount and the rate applied. Recorded in the transaction that
-- posts the movement's entries (the fee, the conversion), so the ledger and this record never disagree; payouts
-- read a charge's `available_on` from here, the settlement reconciliation reads the fee and the settled amount.
CREATE TABLE paysaga.provider_balance_transactions (
  tenant_id                 uuid NOT NULL,
  balance_transaction_id    text NOT NULL,
  provider                  text NOT NULL,
  source_type               text NOT NULL,         -- payment | refund | dispute | payout
  source_id                 text NOT NULL,         -- ours (pay_…, re_…, dsp_…, po_…)
  event                     text NOT NULL,         -- the business event: payment.completed, refund.succeeded, …
  reporting_category        text NOT NULL,
  provider_source_id        text NOT NULL,         -- the provider's object (ch_…, re_…, du_…, tr_…)
  currency                  char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  amount_micros             bigint NOT NULL,
  fee_micros                bigint NOT NULL,
  net_micros                bigint NOT NULL,
  presentment_amount_micros bigint,
  presentment_currency      char(3),
  exchange_rate             text CHECK (exchange_rate ~ '^[0-9]+(\.[0-9]+)?$'),
  created_at                timestamptz NOT NULL,
  available_on              date NOT NULL,
  recorded_at               timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, balance_transaction_id),
  CHECK (amount_micros - fee_micros = net_micros),
  CHECK ((presentment_amount_micros IS NULL) = (presentment_currency IS NULL))
);
CREATE INDEX provider_balance_transactions_by_source
  ON paysaga.provider_balance_transactions (tenant_id, source_type, source_id);

SELECT paysaga.make_append_only(t::regclass)
  FROM unnest(ARRAY['paysaga.connected_account_events', 'paysaga.provider_balance_transactions']) AS t;
SELECT paysaga.make_never_deleted(t::regclass)
  FROM unnest(ARRAY['paysaga.connected_accounts', 'paysaga.tenant_settings']) AS t;
SELECT paysaga.make_tenant_table(t::regclass) FROM unnest(ARRAY[
  'paysaga.tenant_settings', 'paysaga.connected_accounts', 'paysaga.connected_account_events',
  'paysaga.provider_balance_transactions']) AS t;
GRANT SELECT, INSERT, UPDATE ON paysaga.tenant_settings, paysaga.connected_accounts TO paysaga_app;
GRANT SELECT, INSERT ON paysaga.connected_account_events, paysaga.provider_balance_transactions TO paysaga_app;

-- The sandbox provider's Connect: accounts, transfers (and their reversals), payouts, and every balance
-- transaction it makes (its settlement data, exported in the shape of Stripe's itemized payout reconciliation
-- report). The emulated provider's own storage: no tenant RLS (see sandbox.payment_intents).
ALTER TABLE sandbox.payment_intents
  ADD COLUMN settlement_currency char(3),
  ADD COLUMN transfer_group text,
  ADD COLUMN destination text,
  ADD COLUMN application_fee_minor bigint;

CREATE TABLE sandbox.accounts (
  account_id       text PRIMARY KEY,
  tenant_id        uuid NOT NULL,
  idempotency_key  text NOT NULL,
  country          char(2) NOT NULL,
  default_currency char(3) NOT NULL,
  email            text,
  external_account text,
  metadata         jsonb NOT NULL DEFAULT '{}',
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, idempotency_key)
);

CREATE TABLE sandbox.transfers (
  transfer_id              text PRIMARY KEY,
  tenant_id                uuid NOT NULL,
  idempotency_key          text NOT NULL,
  destination              text NOT NULL REFERENCES sandbox.accounts,
  amount_minor             bigint NOT NULL CHECK (amount_minor > 0),
  currency                 char(3) NOT NULL,
  source_amount_minor      bigint NOT NULL,       -- what left the platform balance, in its currency
  source_currency          char(3) NOT NULL,
  destination_amount_minor bigint NOT NULL,       -- what reached the connected account, in its currency
  destination_currency     char(3) NOT NULL,
  transfer_group           text,
  metadata                 jsonb NOT NULL DEFAULT '{}',
  reversed                 boolean NOT NULL DEFAULT false,
  created_at               timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, idempotency_key)
);

CREATE TABLE sandbox.payouts (
  payout_id       text PRIMARY KEY,
  tenant_id       uuid NOT NULL,
  account_id      text NOT NULL REFERENCES sandbox.accounts,
  idempotency_key text NOT NULL,
  amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
  currency        char(3) NOT NULL,
  status          text NOT NULL CHECK (status IN ('pending', 'in_transit', 'paid', 'failed', 'canceled')),
  outcome         text NOT NULL CHECK (outcome IN ('paid', 'failed', 'canceled', 'paid_then_failed')),
  failure_code    text,
  failure_message text,
  metadata        jsonb NOT NULL DEFAULT '{}',
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX sandbox_payouts_moving ON sandbox.payouts (updated_at)
  WHERE status IN ('pending', 'in_transit') OR (status = 'paid' AND outcome = 'paid_then_failed');

CREATE TABLE sandbox.balance_transactions (
  balance_transaction_id       text PRIMARY KEY,
  seq                          bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  tenant_id                    uuid NOT NULL,
  account_id                   text,                -- NULL: the platform's balance; else a connected account's
  type                         text NOT NULL,
  reporting_category           text NOT NULL,
  source_id                    text NOT NULL,
  currency                     char(3) NOT NULL,
  amount_minor                 bigint NOT NULL,
  fee_minor                    bigint NOT NULL DEFAULT 0,
  net_minor                    bigint NOT NULL,
  exchange_rate                text,
  customer_facing_amount_minor bigint,
  customer_facing_currency     char(3),
  charge_id                    text,
  payment_intent_id            text,
  description                  text NOT NULL DEFAULT '',
  created_at                   timestamptz NOT NULL DEFAULT now(),
  available_on                 date NOT NULL,
  CHECK (amount_minor - fee_minor = net_minor)
);
CREATE INDEX sandbox_balance_transactions_by_tenant ON sandbox.balance_transactions (tenant_id, created_at);
CREATE INDEX sandbox_balance_transactions_by_source ON sandbox.balance_transactions (source_id);

GRANT SELECT, INSERT, UPDATE ON sandbox.accounts, sandbox.transfers, sandbox.payouts, sandbox.balance_transactions
  TO paysaga_app;

-- migrate:down
DROP TABLE sandbox.balance_transactions;
DROP TABLE sandbox.payouts;
DROP TABLE sandbox.transfers;
DROP TABLE sandbox.accounts;
ALTER TABLE sandbox.payment_intents DROP COLUMN settlement_currency, DROP COLUMN transfer_group,
  DROP COLUMN destination, DROP COLUMN application_fee_minor;
DROP TABLE paysaga.provider_balance_transactions;
DROP TRIGGER payments_split_guard ON paysaga.payments;
DROP FUNCTION paysaga.guard_payment_split();
ALTER TABLE paysaga.payments DROP CONSTRAINT payments_destination, DROP CONSTRAINT payments_split,
  DROP COLUMN destination_account_id, DROP COLUMN application_fee_micros;
DROP TABLE paysaga.connected_account_events;
DROP TABLE paysaga.connected_accounts;
DROP TABLE paysaga.tenant_settings;
