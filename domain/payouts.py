"""Payouts to connected accounts: the balance from the ledger, what is held back, what is paid, what it posts.

The balance of a connected account, per currency, is what ``seller_payable:<account>:<currency>`` owes it: the sum
of that account's ledger lines (credits are owed to the seller). Each line becomes a ``BalanceItem`` (see
``balance_items``), with the day its funds are payable (``available_on``): for a charge, the provider's
``available_on`` or ``schedule.available_on(charged_on)`` (the charge day plus the schedule's delay); for anything
else, the day it was posted. A payout for a period pays what is available at the period's end:

    balance   = the items available on or before the period's end (refunds, disputes and earlier payouts
                included, so a negative balance is carried forward and recovered from later charges)
    reserve   = the seller's share of the charges that became available in the last ``hold_days`` times
                ``basis_points`` (a rolling reserve), plus a ``fixed`` amount always held; never more than a
                positive balance. Not posted: it stays in seller_payable and is released by time passing.
    net       = balance - reserve when that is positive, at least the schedule's minimum (converted at the rate
                given when the minimum is in another currency) and the account can receive payouts; else nothing
                is paid and the whole balance is carried forward. A negative balance is never paid.

The period (``payout_period``): a weekly schedule pays on its weekday; the period is the 7 days of availability
ending on that payout day (``start`` .. ``end``, inclusive), i.e. charges made ``delay_days`` earlier. A daily
schedule's period is the day itself. A payout is named by (account, period, currency): ``transfer_key`` and
``payout_key`` are the provider idempotency keys, ``payout_key`` the ledger source id of its entries:

    transfer.created   Dr seller_payable:<acct>       net    Cr payouts_in_transit:<acct>   net
    payout.paid        Dr payouts_in_transit:<acct>   net    Cr cash:<provider>            net
    payout.failed      before paid: Dr payouts_in_transit, Cr seller_payable (the transfer, reversed)
                       after paid:  Dr cash:<provider>,   Cr seller_payable (the bank sent it back)

so a failed payout's funds are back in the seller's balance, and the next period pays them. The report of a run
is one ``PayoutLine`` per account and currency (``write_report_csv``). Recomputing a period whose transfer is
already posted gives the same line: that transfer is recognised by its entry id and set aside.

Pure; amounts in integer micros; CSV through the stdlib ``csv`` module onto a stream the caller owns.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import TextIO

from domain.connect import ConnectedAccount, ConnectError, PayoutInterval, PayoutSchedule, ReservePolicy, seller_payable
from domain.fx import Conversion, FxRate, convert
from domain.ledger import Account, AccountCode, JournalEntry, cash, entry, entry_id, move
from domain.money import Money, RoundingMode, get_currency


class ItemKind(StrEnum):
    CHARGE = "charge"
    REFUND = "refund"
    DISPUTE = "dispute"
    DISPUTE_REINSTATED = "dispute_reinstated"
    TRANSFER = "transfer"
    PAYOUT_FAILED = "payout_failed"
    ADJUSTMENT = "adjustment"


# The business events the connect and payout postings use, and what each is to a seller's balance.
EVENT_KINDS: dict[str, ItemKind] = {
    "payment.completed": ItemKind.CHARGE,
    "refund.succeeded": ItemKind.REFUND,
    "dispute.funds_withdrawn": ItemKind.DISPUTE,
    "dispute.funds_reinstated": ItemKind.DISPUTE_REINSTATED,
    "transfer.created": ItemKind.TRANSFER,
    "payout.failed": ItemKind.PAYOUT_FAILED,
}


@dataclass(frozen=True)
class BalanceItem:
    """One change of a seller's balance. ``amount`` is what the seller is owed more (+) or less (-); ``gross`` is
    the customer-facing amount behind it (a charge's whole amount, a refund's whole amount, negative) and ``fee``
    the application fee in it (taken: +, given back: -), so ``amount == gross - fee``."""

    entry_id: str
    kind: ItemKind
    amount: Money
    available_on: date
    gross: Money
    fee: Money

    def __post_init__(self) -> None:
        if self.gross - self.fee != self.amount:
            raise ValueError(f"{self.entry_id}: gross - fee must equal amount")

    @property
    def currency(self) -> str:
        return self.amount.currency


def balance_items(posted: JournalEntry, account_id: str, available_on: date) -> list[BalanceItem]:
    """The items an entry makes for ``account_id``: one per currency it touches that account's payable in."""
    items = []
    for line in posted.lines:
        a = line.account
        if a.code is not AccountCode.SELLER_PAYABLE or a.subject != account_id:
            continue
        fee_line = sum(x.amount_micros for x in posted.lines
                       if x.account.code is AccountCode.PLATFORM_FEES and x.currency == a.currency)
        amount = Money(-line.amount_micros, a.currency)
        fee = Money(-fee_line, a.currency)
        items.append(BalanceItem(posted.entry_id, EVENT_KINDS.get(posted.event, ItemKind.ADJUSTMENT), amount,
                                 available_on, amount + fee, fee))
    return items


# --- the period ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PayoutPeriod:
    """Funds that became available from ``start`` to ``end`` (inclusive) are paid on ``end``."""

    start: date
    end: date
    delay_days: int = 0

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise ValueError("a period starts before it ends")

    @property
    def payout_date(self) -> date:
        return self.end

    @property
    def charged_from(self) -> date:
        """The first charge day whose funds fall in this period (with the schedule's delay)."""
        return self.start - timedelta(days=self.delay_days)

    @property
    def charged_through(self) -> date:
        return self.end - timedelta(days=self.delay_days)

    @property
    def key(self) -> str:
        """Names the period in idempotency keys: its payout date (one payout per account, currency and day)."""
        return self.end.isoformat()


def payout_period(schedule: PayoutSchedule, on: date) -> PayoutPeriod:
    """The period a run on ``on`` pays: the latest payout day on or before ``on`` (so a late run pays the period it
    missed, not a new one)."""
    if schedule.interval is PayoutInterval.DAILY:
        return PayoutPeriod(on, on, schedule.delay_days)
    if schedule.interval is PayoutInterval.WEEKLY:
        end = on - timedelta(days=(on.weekday() - schedule.weekday) % 7)
        return PayoutPeriod(end - timedelta(days=6), end, schedule.delay_days)
    raise ConnectError("a manual schedule has no periods: name one with PayoutPeriod(start, end)")


# --- keys and entries ------------------------------------------------------------------------------------------
def transfer_key(account_id: str, period: PayoutPeriod, currency: str) -> str:
    """The provider idempotency key of the transfer to the account for this period and currency."""
    return f"transfer:{account_id}:{period.key}:{get_currency(currency).code}"


def payout_key(account_id: str, period: PayoutPeriod, currency: str) -> str:
    """The provider idempotency key of the payout, and the ledger source id of the payout's entries."""
    return f"payout:{account_id}:{period.key}:{get_currency(currency).code}"


def payouts_in_transit(account_id: str, currency: str) -> Account:
    return Account(AccountCode.PAYOUTS_IN_TRANSIT, currency, account_id)


def transfer_entry_id(account_id: str, period: PayoutPeriod, currency: str) -> str:
    return entry_id("payout", payout_key(account_id, period, currency), "transfer.created")


def _positive(amount: Money) -> None:
    if not amount.is_positive():
        raise ValueError("a payout moves a positive amount")


def transfer_created(account_id: str, period: PayoutPeriod, amount: Money) -> JournalEntry:
    """The net of a period leaves the seller's balance for a payout."""
    _positive(amount)
    c = amount.currency
    return entry("payout", payout_key(account_id, period, c), "transfer.created",
                 move(amount, seller_payable(account_id, c), payouts_in_transit(account_id, c)),
                 memo=transfer_key(account_id, period, c))


def payout_paid(account_id: str, period: PayoutPeriod, amount: Money, provider: str) -> JournalEntry:
    """The payout reached the seller's bank: the funds have left the provider balance."""
    _positive(amount)
    c = amount.currency
    return entry("payout", payout_key(account_id, period, c), "payout.paid",
                 move(amount, payouts_in_transit(account_id, c), cash(provider, c)))


def payout_failed(account_id: str, period: PayoutPeriod, amount: Money, provider: str, *, after_paid: bool
                  ) -> JournalEntry:
    """The payout failed: its funds go back to the seller's balance. ``after_paid``: it had been reported paid
    (banks can return a payout days later), so the funds come back from outside into the provider balance."""
    _positive(amount)
    c = amount.currency
    key = payout_key(account_id, period, c)
    if after_paid:
        return entry("payout", key, "payout.failed", move(amount, cash(provider, c), seller_payable(account_id, c)),
                     memo="returned after being paid")
    return entry("payout", key, "payout.failed",
                 move(amount, payouts_in_transit(account_id, c), seller_payable(account_id, c)),
                 memo=f"reverses {transfer_entry_id(account_id, period, c)}",
                 reverses=transfer_entry_id(account_id, period, c))


# --- the run ---------------------------------------------------------------------------------------------------
class PayoutDecision(StrEnum):
    PAY = "pay"
    NOTHING = "nothing"  # nothing available after the reserve
    NEGATIVE = "negative"  # the balance is negative: carried forward, recovered from later charges
    BELOW_MINIMUM = "below_minimum"
    NOT_ENABLED = "not_enabled"  # onboarding not finished or no payout method: carried forward


@dataclass(frozen=True)
class PayoutLine:
    """One account and currency in a payout run. Over the period: ``gross`` charged, ``fees`` kept by the
    platform (net of fees given back), ``refunds`` and ``disputes`` (net of reinstated) as customer-facing
    amounts, ``other`` (earlier payouts, returned payouts, adjustments), so that ``balance == brought_forward +
    gross - fees - refunds - disputes + other``; then ``reserve`` held, ``net`` paid, ``carried_forward`` left,
    ``pending`` not yet available. ``fx``: ``net`` in the settlement currency at the rate given, when it differs."""

    account_id: str
    currency: str
    period: PayoutPeriod
    brought_forward: Money
    gross: Money
    fees: Money
    refunds: Money
    disputes: Money
    other: Money
    balance: Money
    reserve: Money
    net: Money
    carried_forward: Money
    pending: Money
    decision: PayoutDecision
    fx: Conversion | None = None


def reserve_required(policy: ReservePolicy, items: Iterable[BalanceItem], currency: str, end: date) -> Money:
    """The rolling part (``basis_points`` of the charges' shares that became available in the ``hold_days``
    ending on ``end``, rounded once, half-even, to minor units) plus the fixed part when in ``currency``."""
    held_from = end - timedelta(days=policy.hold_days)
    recent = sum(i.amount.micros for i in items if i.currency == currency and i.kind is ItemKind.CHARGE
                 and held_from < i.available_on <= end)
    reserve = Money(recent, currency).scale_to_minor(policy.basis_points, 10_000, RoundingMode.HALF_EVEN)
    if policy.fixed is not None and policy.fixed.currency == currency:
        reserve = reserve + policy.fixed
    return reserve


def _meets_minimum(net: Money, minimum: Money | None, rate: FxRate | None) -> bool:
    if minimum is None:
        return True
    if minimum.currency == net.currency:
        return net >= minimum
    if rate is None or (rate.base, rate.quote) != (net.currency, minimum.currency):
        raise ConnectError(f"the minimum payout is in {minimum.currency}: a {net.currency}/{minimum.currency} rate "
                           "is needed to compare")
    return convert(net, rate).target >= minimum


def payout_line(account: ConnectedAccount, items: Sequence[BalanceItem], period: PayoutPeriod, currency: str,
                rate: FxRate | None = None) -> PayoutLine:
    """The payout of ``account`` in ``currency`` for ``period``. ``rate``: ``currency`` → the account's settlement
    currency, for the report's FX column and for a minimum set in another currency."""
    currency = get_currency(currency).code
    zero = Money.zero(currency)
    own_transfer = transfer_entry_id(account.account_id, period, currency)
    mine = [i for i in items if i.currency == currency]
    already = [i for i in mine if i.entry_id == own_transfer]
    counted = [i for i in mine if i.entry_id != own_transfer]

    def total(selected: Iterable[BalanceItem], value: str = "amount") -> Money:
        return sum((getattr(i, value) for i in selected), zero)

    available = [i for i in counted if i.available_on <= period.end]
    before = [i for i in available if i.available_on < period.start]
    during = [i for i in available if i.available_on >= period.start]
    of = {kind: [i for i in during if i.kind is kind] for kind in ItemKind}
    balance = total(available)
    gross = total(of[ItemKind.CHARGE], "gross")
    fees = total(during, "fee")
    refunds = -total(of[ItemKind.REFUND], "gross")
    disputes = -total(of[ItemKind.DISPUTE], "gross") - total(of[ItemKind.DISPUTE_REINSTATED], "gross")
    other = total(of[ItemKind.TRANSFER]) + total(of[ItemKind.PAYOUT_FAILED]) + total(of[ItemKind.ADJUSTMENT])
    reserve = min(reserve_required(account.reserve, counted, currency, period.end), max(balance, zero))
    payable = (balance - reserve).round_to_minor(RoundingMode.DOWN)  # never pay a fraction more than is owed

    if already:
        decision, net = PayoutDecision.PAY, -total(already)
    elif balance.is_negative():
        decision, net = PayoutDecision.NEGATIVE, zero
    elif not payable.is_positive():
        decision, net = PayoutDecision.NOTHING, zero
    elif not account.payouts_enabled:
        decision, net = PayoutDecision.NOT_ENABLED, zero
    elif not _meets_minimum(payable, account.schedule.minimum, rate):
        decision, net = PayoutDecision.BELOW_MINIMUM, zero
    else:
        decision, net = PayoutDecision.PAY, payable
    fx = None
    if rate is not None and currency != account.settlement_currency:
        if (rate.base, rate.quote) != (currency, account.settlement_currency):
            raise ConnectError(f"the rate for {currency} must be {currency}/{account.settlement_currency}")
        fx = convert(net, rate)
    return PayoutLine(account.account_id, currency, period, total(before), gross, fees, refunds, disputes, other,
                      balance, reserve, net, balance - net, total(i for i in counted if i.available_on > period.end),
                      decision, fx)


def payout_lines(account: ConnectedAccount, items: Sequence[BalanceItem], period: PayoutPeriod,
                 rates: Mapping[str, FxRate] | None = None) -> list[PayoutLine]:
    """One ``payout_line`` per currency the account has items in, sorted by currency. ``rates``: by currency."""
    rates = rates or {}
    return [payout_line(account, items, period, c, rates.get(c)) for c in sorted({i.currency for i in items})]


REPORT_COLUMNS = ("account_id", "currency", "period_start", "period_end", "payout_date", "brought_forward", "gross",
                  "fees", "refunds", "disputes", "other", "balance", "reserve", "net", "carried_forward", "pending",
                  "decision", "settlement_currency", "settlement_net", "fx_rate", "fx_as_of", "fx_source")


def report_row(line: PayoutLine) -> dict[str, str]:
    """A line as text: amounts as plain decimals in ``currency`` (settlement_net in settlement_currency)."""
    amounts = {name: getattr(line, name).to_decimal_string() for name in (
        "brought_forward", "gross", "fees", "refunds", "disputes", "other", "balance", "reserve", "net",
        "carried_forward", "pending")}
    fx = line.fx
    return {
        "account_id": line.account_id, "currency": line.currency, "period_start": line.period.start.isoformat(),
        "period_end": line.period.end.isoformat(), "payout_date": line.period.payout_date.isoformat(), **amounts,
        "decision": line.decision.value,
        "settlement_currency": fx.target.currency if fx else "",
        "settlement_net": fx.target.to_decimal_string() if fx else "",
        "fx_rate": fx.rate.decimal_string() if fx else "",
        "fx_as_of": fx.rate.as_of.isoformat() if fx else "",
        "fx_source": fx.rate.source if fx else "",
    }


def write_report_csv(lines: Iterable[PayoutLine], out: TextIO) -> None:
    """The run report as CSV (a header, then one row per line), written to ``out`` (open it with newline="")."""
    writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for line in lines:
        writer.writerow(report_row(line))
