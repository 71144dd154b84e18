"""The double-entry ledger: accounts, balanced journal entries, and what each money movement posts.

Every entry balances to the micro-unit in each currency it touches (debits positive, credits negative, the lines
of one currency sum to zero); nothing posts to an account in another currency than the account's; entries are
never changed — a correction is a reversing entry. Each entry is named by the business event that caused it
(`entry_id(source_type, source_id, event)`), so a retried step posts it once.

Accounts, per tenant and currency:

    receivable:<customer>     asset       what a customer owes on finalized invoices
    cash:<provider>           asset       funds at the payment provider (or `out_of_band` for wire, cheque, cash)
    revenue                   revenue     what was sold, tax excluded
    tax_payable:<jurisdiction> liability  tax collected for a jurisdiction (e.g. DE, US-CA)
    refunds                   contra-rev. money given back
    chargebacks               expense     funds withdrawn by disputes (reinstated when a dispute is won)
    fees                      expense     provider fees
    customer_credit:<customer> liability  credit a customer holds against future invoices
    bad_debt                  expense     invoices written off as uncollectible
    seller_payable:<account>  liability   what the platform owes a connected account (its available balance)
    platform_fees             revenue     application fees the platform keeps from split charges
    payouts_in_transit:<account> liability a connected account's funds committed to a payout not yet paid
    fx_clearing               asset       one leg per currency of each conversion (domain/fx.py): per currency the
                                          conversion balances, across currencies the pair nets to zero at the
                                          quoted rate
    fx_gain_loss              expense     what a conversion settled at versus the quoted rate (a credit is a gain)
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from domain.money import Money


class AccountType(StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    REVENUE = "revenue"
    CONTRA_REVENUE = "contra_revenue"
    EXPENSE = "expense"


class AccountCode(StrEnum):
    RECEIVABLE = "receivable"
    CASH = "cash"
    REVENUE = "revenue"
    TAX_PAYABLE = "tax_payable"
    REFUNDS = "refunds"
    CHARGEBACKS = "chargebacks"
    FEES = "fees"
    CUSTOMER_CREDIT = "customer_credit"
    BAD_DEBT = "bad_debt"
    SELLER_PAYABLE = "seller_payable"
    PLATFORM_FEES = "platform_fees"
    PAYOUTS_IN_TRANSIT = "payouts_in_transit"
    FX_CLEARING = "fx_clearing"
    FX_GAIN_LOSS = "fx_gain_loss"


ACCOUNT_TYPES: dict[AccountCode, AccountType] = {
    AccountCode.RECEIVABLE: AccountType.ASSET,
    AccountCode.CASH: AccountType.ASSET,
    AccountCode.REVENUE: AccountType.REVENUE,
    AccountCode.TAX_PAYABLE: AccountType.LIABILITY,
    AccountCode.REFUNDS: AccountType.CONTRA_REVENUE,
    AccountCode.CHARGEBACKS: AccountType.EXPENSE,
    AccountCode.FEES: AccountType.EXPENSE,
    AccountCode.CUSTOMER_CREDIT: AccountType.LIABILITY,
    AccountCode.BAD_DEBT: AccountType.EXPENSE,
    AccountCode.SELLER_PAYABLE: AccountType.LIABILITY,
    AccountCode.PLATFORM_FEES: AccountType.REVENUE,
    AccountCode.PAYOUTS_IN_TRANSIT: AccountType.LIABILITY,
    AccountCode.FX_CLEARING: AccountType.ASSET,
    AccountCode.FX_GAIN_LOSS: AccountType.EXPENSE,
}
# Accounts kept apart per customer, provider, jurisdiction or connected account: the subject is part of the
# account's name.
PER_SUBJECT = frozenset({AccountCode.RECEIVABLE, AccountCode.CASH, AccountCode.TAX_PAYABLE,
                         AccountCode.CUSTOMER_CREDIT, AccountCode.SELLER_PAYABLE, AccountCode.PAYOUTS_IN_TRANSIT})
OUT_OF_BAND = "out_of_band"


class UnbalancedEntry(ValueError):
    pass


@dataclass(frozen=True)
class Account:
    code: AccountCode
    currency: str
    subject: str | None = None

    def __post_init__(self) -> None:
        if (self.code in PER_SUBJECT) != (self.subject is not None):
            raise ValueError(f"account {self.code} {'needs' if self.code in PER_SUBJECT else 'takes no'} subject")

    @property
    def account_id(self) -> str:
        """`receivable:cus_1:EUR`, `revenue:EUR`: readable, and unique per tenant."""
        parts = [self.code.value, *([self.subject] if self.subject is not None else []), self.currency]
        return ":".join(parts)

    @property
    def type(self) -> AccountType:
        return ACCOUNT_TYPES[self.code]


@dataclass(frozen=True)
class Line:
    account: Account
    amount_micros: int  # debit > 0, credit < 0

    @property
    def currency(self) -> str:
        return self.account.currency


@dataclass(frozen=True)
class JournalEntry:
    entry_id: str
    source_type: str  # payment, refund, dispute, invoice, credit_note, …
    source_id: str
    event: str  # e.g. payment.completed
    lines: tuple[Line, ...]
    memo: str = ""
    reverses: str | None = None

    def __post_init__(self) -> None:
        lines = tuple(line for line in self.lines if line.amount_micros != 0)
        object.__setattr__(self, "lines", lines)
        if not lines:
            raise UnbalancedEntry(f"{self.entry_id}: an entry needs lines")
        for currency, total in totals_by_currency(lines).items():
            if total != 0:
                raise UnbalancedEntry(f"{self.entry_id}: {currency} lines sum to {total}, not 0")

    @property
    def currencies(self) -> set[str]:
        return {line.currency for line in self.lines}


def totals_by_currency(lines: Iterable[Line]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        totals[line.currency] += line.amount_micros
    return dict(totals)


def entry_id(source_type: str, source_id: str, event: str) -> str:
    """Deterministic: the same business event always names the same entry, so posting it twice posts once."""
    return "je_" + hashlib.sha256(f"{source_type}:{source_id}:{event}".encode()).hexdigest()[:32]


def entry(source_type: str, source_id: str, event: str, lines: Sequence[Line], memo: str = "",
          reverses: str | None = None) -> JournalEntry:
    return JournalEntry(entry_id(source_type, source_id, event), source_type, source_id, event, tuple(lines), memo,
                        reverses)


def move(amount: Money, debit: Account, credit: Account) -> list[Line]:
    """`amount` from `credit` to `debit`: two lines that balance."""
    if debit.currency != amount.currency or credit.currency != amount.currency:
        raise ValueError("both accounts must be in the amount's currency")
    return [Line(debit, amount.micros), Line(credit, -amount.micros)]


def reversal(original: JournalEntry, event: str) -> JournalEntry:
    """The correction of an entry: the same lines, negated, under an id of its own."""
    negated = [Line(line.account, -line.amount_micros) for line in original.lines]
    return entry(original.source_type, original.source_id, event, negated, memo=f"reverses {original.entry_id}",
                 reverses=original.entry_id)


def balances(lines: Iterable[Line]) -> dict[str, int]:
    """Account id → its balance (debits minus credits): the sum of its lines, nothing else."""
    out: dict[str, int] = defaultdict(int)
    for line in lines:
        out[line.account.account_id] += line.amount_micros
    return dict(out)


# --- what each money movement posts ---------------------------------------------------------------------------
def cash(provider: str, currency: str) -> Account:
    return Account(AccountCode.CASH, currency, provider)


def receivable(customer_id: str, currency: str) -> Account:
    return Account(AccountCode.RECEIVABLE, currency, customer_id)


def single(code: AccountCode, currency: str) -> Account:
    return Account(code, currency)


def payment_completed(payment_id: str, customer_id: str, provider: str, amount: Money,
                      invoice_id: str | None = None) -> JournalEntry:
    """Funds arrive at the provider. A payment for an invoice settles the customer's receivable; a payment on its
    own is revenue at once."""
    credit = receivable(customer_id, amount.currency) if invoice_id else single(AccountCode.REVENUE, amount.currency)
    return entry("payment", payment_id, "payment.completed", move(amount, cash(provider, amount.currency), credit),
                 memo=f"invoice {invoice_id}" if invoice_id else "")


def refund_succeeded(refund_id: str, provider: str, amount: Money) -> JournalEntry:
    return entry("refund", refund_id, "refund.succeeded",
                 move(amount, single(AccountCode.REFUNDS, amount.currency), cash(provider, amount.currency)))


def dispute_funds_withdrawn(dispute_id: str, provider: str, amount: Money) -> JournalEntry:
    return entry("dispute", dispute_id, "dispute.funds_withdrawn",
                 move(amount, single(AccountCode.CHARGEBACKS, amount.currency), cash(provider, amount.currency)))


def dispute_funds_reinstated(dispute_id: str, provider: str, amount: Money) -> JournalEntry:
    return entry("dispute", dispute_id, "dispute.funds_reinstated",
                 move(amount, cash(provider, amount.currency), single(AccountCode.CHARGEBACKS, amount.currency)))
