"""What a subscription bills: an item (a price version and a quantity) and the lines that charge or credit a span
of time of it.

Amounts
-------
An item's ``exact_amount`` is the price's unit amount x quantity, in micro-units, unrounded (a per-unit price may
have sub-minor digits). Every line is rounded ONCE, half-even, to the currency's minor unit, straight from that
exact amount (``Money.scale_to_minor``), never from an already rounded amount:

    full period line       round_half_even(exact)
    share of a period      round_half_even(exact * part_seconds / basis_seconds)

so a full period billed here is the same amount an invoice line ``quantity x unit_amount`` gives, and the share
of the whole period is exactly the full period line.

Time is counted in whole seconds of the actual period (a day of February weighs more than a day of March), as a
card processor's prorations are; a partial first period is measured against the full cycle period it is a part
of (``Period.basis_seconds``).

Lines
-----
``BillingLine`` is invoice-line-like: a description, a signed ``amount`` (a credit is negative), the price and
quantity it bills, the period ``[period_start, period_end)`` it covers (instants; the end is exclusive), and
``proration`` (true for shares of a period: a partial first period, unused time credited, remaining time charged).
An invoice line carries dates: ``period_start.date()`` and ``period_end.date()``.

Public API
----------
``Item`` (``exact_amount``, ``period_amount``, ``monthly_rate_vs``), ``LineKind``, ``BillingLine``,
``time_share(exact, part_seconds, basis_seconds)``, ``period_line(item, period)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.billing_cycle import Period, require_instant
from domain.catalogue import Price, check_quantity
from domain.money import Money, RoundingMode

ROUNDING = RoundingMode.HALF_EVEN


@dataclass(frozen=True)
class Item:
    """A price version and a quantity: what a subscription is billed for each period."""

    price: Price
    quantity: int = 1

    def __post_init__(self) -> None:
        check_quantity(self.price.billing_scheme, self.quantity)

    @property
    def exact_amount(self) -> Money:
        """One full period, unrounded (micro-units)."""
        return self.price.amount_for(self.quantity)

    @property
    def period_amount(self) -> Money:
        """One full period as billed: rounded half-even to the minor unit."""
        return self.exact_amount.round_to_minor(ROUNDING)

    @property
    def currency(self) -> str:
        return self.price.currency

    def same_as(self, other: Item) -> bool:
        """Same price version and quantity (whether the catalogue has archived the price since does not matter)."""
        return (self.price.price_id, self.quantity) == (other.price.price_id, other.quantity)

    def monthly_rate_vs(self, other: Item) -> int:
        """-1, 0 or 1 as this item costs less than, as much as or more than ``other`` per month, exactly
        (amount / months compared by cross-multiplying: no division, no rounding). Same currency only."""
        if self.currency != other.currency:
            raise ValueError("items in different currencies cannot be compared")
        mine = self.exact_amount.micros * other.price.months
        theirs = other.exact_amount.micros * self.price.months
        return (mine > theirs) - (mine < theirs)

    def describe(self) -> str:
        return f"{self.quantity} x {self.price.label}"


class LineKind(StrEnum):
    PERIOD = "period"  # a full period, billed in advance
    PARTIAL_PERIOD = "partial_period"  # the first period up to the billing cycle anchor
    UNUSED_TIME = "unused_time"  # a credit for what was paid and will not be used
    REMAINING_TIME = "remaining_time"  # a charge for the rest of the period on the new price or quantity


@dataclass(frozen=True)
class BillingLine:
    kind: LineKind
    description: str
    amount: Money  # whole minor units; negative for a credit
    price_id: str
    quantity: int
    period_start: datetime
    period_end: datetime

    def __post_init__(self) -> None:
        require_instant(self.period_start, "period start")
        require_instant(self.period_end, "period end")

    @property
    def proration(self) -> bool:
        return self.kind is not LineKind.PERIOD

    @property
    def is_credit(self) -> bool:
        return self.amount.is_negative()


def time_share(exact: Money, part_seconds: int, basis_seconds: int) -> Money:
    """``exact x part / basis``, rounded once, half-even, to the minor unit."""
    if not 0 <= part_seconds <= basis_seconds or basis_seconds <= 0:
        raise ValueError(f"a share is 0..{basis_seconds} seconds of a positive period, not {part_seconds}")
    return exact.scale_to_minor(part_seconds, basis_seconds, ROUNDING)


def period_line(item: Item, period: Period) -> BillingLine:
    """The line billing ``item`` for ``period``: the full amount, or for a partial period its share of time."""
    if not period.is_partial:
        return BillingLine(LineKind.PERIOD, f"{item.describe()} ({_span(period.start, period.end)})",
                           item.period_amount, item.price.price_id, item.quantity, period.start, period.end)
    amount = time_share(item.exact_amount, period.seconds, period.basis_seconds)
    return BillingLine(LineKind.PARTIAL_PERIOD, f"{item.describe()} ({_span(period.start, period.end)}, prorated)",
                       amount, item.price.price_id, item.quantity, period.start, period.end)


def _span(start: datetime, end: datetime) -> str:
    return f"{start.date().isoformat()} to {end.date().isoformat()}"
