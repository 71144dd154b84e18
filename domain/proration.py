"""Changing a subscription's price or quantity within a period: what is credited, what is charged, and when.

Prorations
----------
For a change at instant ``t`` (the ``proration_date``) inside the current period ``P = [start, end)`` whose full
cycle period lasts ``B = P.basis_seconds`` seconds (``B = end - start`` unless ``P`` is a partial first period),
with ``remaining = end - t`` in whole seconds:

    unused time on the old item      credit  -round(old.exact x remaining / B)
    remaining time on the new item   charge  +round(new.exact x remaining / B)

``round`` is half-even to the currency's minor unit, applied once to the exact (micro-unit) amount; seconds, not
days, so a change at 18:00 is not billed as a whole day. A quantity change (seats) is the same thing with the
same price on both sides.

What that guarantees, to the minor unit (tested exactly):

- a change at the period's start credits exactly what the period was billed (``period_line``), and a change
  undone at the same instant (A -> B, then B -> A) nets to exactly zero;
- the used part is the complement of the unused credit, ``used_time_amount = billed - unused``, so
  ``unused + used == billed`` always: nothing is created or lost. (Rounding the used share on its own instead
  would miss by one minor unit when both shares are exact halves, since half-even may round both down.)
- a sequence of changes within a period bills each item for the time it was held, each line within half a minor
  unit of its exact share.

Behaviours (``ProrationBehavior``)
----------------------------------
- ``create_prorations``: the credit and the charge are returned as pending lines, for the next invoice;
- ``always_invoice``: the same lines, to be invoiced now;
- ``none``: no lines; the new item is simply billed from the next renewal.

When the new price's period length (in months) differs from the old one's, the billing cycle restarts at ``t``:
the unused time of the old item is credited (except with ``none``) and the new item is charged a full new period
``[t, t + its interval)``, invoiced now whatever the behaviour (a period is billed in advance).

Upgrades, downgrades and when a change applies
----------------------------------------------
``classify_change`` compares the exact amount per month of the old and new items (cross-multiplied, no rounding):
more is an upgrade, less a downgrade, the same lateral. When each kind applies is a per-tenant ``ChangePolicy``
(``now`` or ``period_end``, and the proration behaviour of changes applied now); ``decide_change`` applies it and
says why. Changing currency is refused (``currency-change``): a subscription bills in one currency.

Refusals (``ProrationRefused.code``): ``currency-change``, ``no-change``, ``proration-date-outside-period``,
``invalid-proration-behavior``, ``invalid-timing``.

Public API
----------
``ProrationBehavior``, ``ChangeKind``, ``Timing``, ``ChangePolicy``, ``ChangeDecision``, ``ProrationPlan``,
``classify_change(old, new)``, ``decide_change(policy, old, new, *, proration_behavior=None, timing=None)``,
``unused_time_credit(item, period, at)``, ``remaining_time_charge(item, period, at)``,
``used_time_amount(item, period, at)``, ``plan_change(period, old, new, proration_date, behavior)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from domain.billing_cycle import BillingCycle, Period, require_instant, seconds_between
from domain.billing_line import BillingLine, Item, LineKind, period_line, time_share
from domain.money import Money
from domain.refusal import Refused

E = TypeVar("E", bound=StrEnum)


class ProrationRefused(Refused):
    """A proration rule refused the change."""


class ProrationBehavior(StrEnum):
    CREATE_PRORATIONS = "create_prorations"
    ALWAYS_INVOICE = "always_invoice"
    NONE = "none"


class ChangeKind(StrEnum):
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    LATERAL = "lateral"


class Timing(StrEnum):
    NOW = "now"
    PERIOD_END = "period_end"


def _enum(kind: type[E], value: object, code: str) -> E:
    try:
        return kind(value)
    except ValueError:
        raise ProrationRefused(code, f"{value!r} is not one of {', '.join(k.value for k in kind)}") from None


@dataclass(frozen=True)
class ChangePolicy:
    """A tenant's rule for when price and quantity changes apply (the default: upgrades at once and prorated,
    downgrades at the end of the period, so a customer never loses paid-for time by downgrading)."""

    upgrades: Timing = Timing.NOW
    downgrades: Timing = Timing.PERIOD_END
    lateral: Timing = Timing.NOW
    proration_behavior: ProrationBehavior = ProrationBehavior.CREATE_PRORATIONS

    def __post_init__(self) -> None:
        for name in ("upgrades", "downgrades", "lateral"):
            object.__setattr__(self, name, _enum(Timing, getattr(self, name), "invalid-timing"))
        object.__setattr__(self, "proration_behavior",
                           _enum(ProrationBehavior, self.proration_behavior, "invalid-proration-behavior"))

    def timing_for(self, kind: ChangeKind) -> Timing:
        return {ChangeKind.UPGRADE: self.upgrades, ChangeKind.DOWNGRADE: self.downgrades,
                ChangeKind.LATERAL: self.lateral}[kind]


@dataclass(frozen=True)
class ChangeDecision:
    kind: ChangeKind
    timing: Timing
    behavior: ProrationBehavior
    explanation: str


def _check_change(old: Item, new: Item) -> None:
    if old.currency != new.currency:
        raise ProrationRefused("currency-change", f"the subscription bills in {old.currency}; a {new.currency} "
                                                  "price needs a new subscription")
    if old.same_as(new):
        raise ProrationRefused("no-change", "the new price and quantity are the current ones")


def classify_change(old: Item, new: Item) -> ChangeKind:
    """Upgrade if the new item costs more per month (exactly), downgrade if less, lateral if the same."""
    _check_change(old, new)
    return {1: ChangeKind.UPGRADE, -1: ChangeKind.DOWNGRADE, 0: ChangeKind.LATERAL}[new.monthly_rate_vs(old)]


def decide_change(policy: ChangePolicy, old: Item, new: Item, *,
                  proration_behavior: ProrationBehavior | str | None = None,
                  timing: Timing | str | None = None) -> ChangeDecision:
    """When ``old -> new`` applies and how it is prorated: the policy's answer, unless the request names a timing
    or a behaviour itself."""
    kind = classify_change(old, new)
    chosen_timing = policy.timing_for(kind) if timing is None else _enum(Timing, timing, "invalid-timing")
    behavior = (policy.proration_behavior if proration_behavior is None
                else _enum(ProrationBehavior, proration_behavior, "invalid-proration-behavior"))
    old_rate, new_rate = _per_month(old), _per_month(new)
    why = (f"{kind}: {new.describe()} is {new_rate} per month against {old_rate} for {old.describe()}; "
           + (f"the policy applies {kind}s {chosen_timing}" if timing is None else f"requested {chosen_timing}")
           + (f", {behavior}" if chosen_timing is Timing.NOW else ""))
    return ChangeDecision(kind, chosen_timing, behavior, why)


def _per_month(item: Item) -> str:
    # For the explanation only: the exact amount per month, to the micro-unit, truncated.
    micros = item.exact_amount.micros // item.price.months
    return f"{Money(micros, item.currency).to_decimal_string()} {item.currency}"


@dataclass(frozen=True)
class ProrationPlan:
    """What a change applied now bills. ``lines`` are pending for the next invoice unless ``invoice_now``.
    With ``resets_cycle`` the subscription continues on ``new_cycle`` from ``new_period``."""

    behavior: ProrationBehavior
    proration_date: datetime
    lines: tuple[BillingLine, ...]
    invoice_now: bool
    resets_cycle: bool = False
    new_cycle: BillingCycle | None = None
    new_period: Period | None = None

    @property
    def net(self) -> Money | None:
        """Sum of the lines (None when there are none)."""
        if not self.lines:
            return None
        return sum((line.amount for line in self.lines), Money.zero(self.lines[0].amount.currency))


def _remaining(period: Period, at: datetime) -> int:
    at = require_instant(at, "proration_date")
    if not period.contains(at):
        raise ProrationRefused("proration-date-outside-period",
                               "the proration date lies within the current period [start, end)")
    return seconds_between(at, period.end)


def unused_time_credit(item: Item, period: Period, at: datetime) -> BillingLine:
    """The credit for ``item`` from ``at`` to the end of ``period`` (a negative amount)."""
    share = time_share(item.exact_amount, _remaining(period, at), period.basis_seconds)
    return BillingLine(LineKind.UNUSED_TIME, f"Unused time on {item.describe()} after {_day(at)}", -share,
                       item.price.price_id, item.quantity, require_instant(at), period.end)


def remaining_time_charge(item: Item, period: Period, at: datetime) -> BillingLine:
    """The charge for ``item`` from ``at`` to the end of ``period``."""
    share = time_share(item.exact_amount, _remaining(period, at), period.basis_seconds)
    return BillingLine(LineKind.REMAINING_TIME, f"Remaining time on {item.describe()} after {_day(at)}", share,
                       item.price.price_id, item.quantity, require_instant(at), period.end)


def used_time_amount(item: Item, period: Period, at: datetime) -> Money:
    """What the time from the period's start to ``at`` cost: what the period was billed less the unused credit,
    so used + unused is exactly what was billed."""
    return period_line(item, period).amount + unused_time_credit(item, period, at).amount


def plan_change(period: Period, old: Item, new: Item, proration_date: datetime,
                behavior: ProrationBehavior | str) -> ProrationPlan:
    """The lines of changing ``old -> new`` at ``proration_date`` within ``period`` (see the module's rules)."""
    _check_change(old, new)
    behavior = _enum(ProrationBehavior, behavior, "invalid-proration-behavior")
    at = require_instant(proration_date, "proration_date")
    _remaining(period, at)
    if new.price.months != old.price.months:
        cycle = BillingCycle.anniversary(at, new.price.interval, new.price.interval_count)
        new_period = cycle.first_period(at)
        credit = () if behavior is ProrationBehavior.NONE else (unused_time_credit(old, period, at),)
        lines = (*credit, period_line(new, new_period))
        return ProrationPlan(behavior, at, _nonzero(lines), True, True, cycle, new_period)
    if behavior is ProrationBehavior.NONE:
        return ProrationPlan(behavior, at, (), False)
    lines = (unused_time_credit(old, period, at), remaining_time_charge(new, period, at))
    return ProrationPlan(behavior, at, _nonzero(lines), behavior is ProrationBehavior.ALWAYS_INVOICE)


def _nonzero(lines: tuple[BillingLine, ...]) -> tuple[BillingLine, ...]:
    # A line of nothing tells the customer nothing (a change in the period's last seconds credits 0.00).
    return tuple(line for line in lines if not line.amount.is_zero())


def _day(at: datetime) -> str:
    return at.date().isoformat()
