-- migrate:up

-- Ledger accounts for connected accounts, payouts and currency conversion (domain/ledger.py's AccountCode):
--   seller_payable:<account>      what the platform owes a connected account (its available balance)
--   platform_fees                 application fees the platform keeps from split charges
--   payouts_in_transit:<account>  a connected account's funds committed to a payout that is not yet paid
--   fx_clearing                   one leg per currency of each conversion, so every currency balances
--   fx_gain_loss                  the settled amount of a conversion versus the quoted rate
-- The list is the whole list: a code the application does not know is still refused.
ALTER TABLE paysaga.ledger_accounts
  DROP CONSTRAINT ledger_accounts_code_check,
  ADD CONSTRAINT ledger_accounts_code_check
    CHECK (code IN ('receivable', 'cash', 'revenue', 'tax_payable', 'refunds', 'chargebacks', 'fees',
                    'customer_credit', 'bad_debt', 'seller_payable', 'platform_fees', 'payouts_in_transit',
                    'fx_clearing', 'fx_gain_loss'));

-- migrate:down
-- Fails while an account with one of the new codes exists: ledger accounts are never deleted, so rolling back
-- past this migration needs those accounts' history dealt with first.
ALTER TABLE paysaga.ledger_accounts
  DROP CONSTRAINT ledger_accounts_code_check,
  ADD CONSTRAINT ledger_accounts_code_check
    CHECK (code IN ('receivable', 'cash', 'revenue', 'tax_payable', 'refunds', 'chargebacks', 'fees',
                    'customer_credit', 'bad_debt'));
