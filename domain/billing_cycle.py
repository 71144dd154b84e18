"""Billing periods: where each period of a subscription starts and ends.

Time
----
Every instant here is a timezone-aware ``datetime`` in UTC with whole seconds (``microsecond == 0``), like the
unix timestamps a card processor works with; anything else (naive, another offset, sub-second) is refused with
``invalid-instant``. Durations are counted in whole seconds, as ``int``, never as floats.

Periods are half-open: ``[start, end)``. A subscription renews at ``end``, which is the next period's ``start``.

Boundaries come from the anchor, never from the previous period
------------------------------------------------------------------
A ``BillingCycle`` is an anchor instant, an interval (``month`` or ``year``), an ``interval_count`` (every 3 months:
``month`` x 3) and the ``day_of_month`` its boundaries aim for. Boundary *n* is the anchor moved by
``n * interval_count`` months (12 per year), on ``day_of_month`` or, in a month too short for it, on that month's
last day, at the anchor's time of day. So a cycle anchored on 31 January bills on 28 (or 29) February, then on
31 March, 30 April, 31 May: each boundary is computed from the anchor, so a short month never drags the following
ones to an earlier day. A yearly cycle anchored on 29 February bills on 28 February in common years and on
29 February again in leap years.

Anchors
-------
- ``BillingCycle.anniversary(start, interval)``: the anchor is the start itself (a subscription started on the
  12th renews on the 12th).
- ``BillingCycle.calendar(start, interval, day_of_month=1, ...)``: the anchor is the first instant on or after
  ``start`` that falls on ``day_of_month`` (and ``month`` for yearly cycles) at the given time of day; a 31st
  anchor in a 30-day month lands on the 30th but the cycle keeps aiming for the 31st.
- ``BillingCycle(anchor, interval, ...)``: an explicit anchor (a ``billing_cycle_anchor`` timestamp).

When the anchor lies after the subscription's start, the first period is *partial*: ``[start, anchor)``. Its
``basis_start`` is the boundary one interval before the anchor, so ``Period.basis_seconds`` is the length of the
full period it is a part of and the first invoice can charge ``seconds / basis_seconds`` of the price. An anchor
more than one interval after the start is refused (``anchor-too-far``): a first period is at most one interval.

Public API
----------
``Interval``, ``Period``, ``BillingCycle`` (``anniversary``, ``calendar``, ``boundary``, ``index_at``,
``period_at``, ``first_period``, ``period_after``), ``next_period(anchor, period_start, interval, count)``,
``add_months``, ``days_in_month``, ``seconds_between``, ``require_instant``, ``iso``, ``BillingCycleRefused``.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from domain.refusal import Refused

SECOND = timedelta(seconds=1)
# The longest interval a price may have: three years, whichever way it is written (3 years or 36 months).
MAX_INTERVAL_MONTHS = 36


class BillingCycleRefused(Refused):
    """An instant or a cycle broke a rule of this module."""


class Interval(StrEnum):
    MONTH = "month"
    YEAR = "year"

    @property
    def months(self) -> int:
        return 12 if self is Interval.YEAR else 1


def parse_interval(value: object) -> Interval:
    """An ``Interval`` from its name as sent ("month" | "year"); anything else is ``invalid-interval``."""
    if isinstance(value, Interval):
        return value
    try:
        return Interval(value)
    except ValueError:
        raise BillingCycleRefused("invalid-interval", f"interval must be month or year, not {value!r}") from None


def interval_months(interval: Interval, interval_count: int) -> int:
    """The length of ``interval_count`` intervals in months, checked: 1 <= count and at most three years."""
    if not isinstance(interval_count, int) or isinstance(interval_count, bool) or interval_count < 1:
        raise BillingCycleRefused("invalid-interval-count", "interval_count is a whole number, at least 1")
    months = parse_interval(interval).months * interval_count
    if months > MAX_INTERVAL_MONTHS:
        raise BillingCycleRefused("invalid-interval-count", "an interval is at most three years (36 months)")
    return months


def require_instant(value: object, what: str = "instant") -> datetime:
    """``value`` if it is an aware UTC datetime with whole seconds; else ``invalid-instant``."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise BillingCycleRefused("invalid-instant", f"{what} must be a timezone-aware UTC datetime")
    if value.utcoffset() != timedelta(0):
        raise BillingCycleRefused("invalid-instant", f"{what} must be in UTC")
    if value.microsecond:
        raise BillingCycleRefused("invalid-instant", f"{what} must have whole seconds")
    # One tzinfo object for every instant, so equal instants are also equal as values and in reprs.
    return value.replace(tzinfo=UTC)


def iso(instant: datetime) -> str:
    """An instant as RFC 3339 with a ``Z`` ("2026-01-31T00:00:00Z"): the form used in keys and event data."""
    return require_instant(instant).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_between(start: datetime, end: datetime) -> int:
    """Whole seconds from ``start`` to ``end`` (negative if ``end`` is earlier); integer arithmetic only."""
    return (end - start) // SECOND


def days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def add_months(instant: datetime, months: int, day_of_month: int) -> datetime:
    """``instant`` moved by ``months`` calendar months onto ``day_of_month``, clamped to the month's last day; the
    time of day is kept."""
    if not 1 <= day_of_month <= 31:
        raise BillingCycleRefused("invalid-day-of-month", "day_of_month is 1..31")
    year, month0 = divmod(instant.year * 12 + instant.month - 1 + months, 12)
    if not 1 <= year <= 9999:
        raise BillingCycleRefused("instant-out-of-range", "that boundary is outside the supported years")
    return instant.replace(year=year, month=month0 + 1, day=min(day_of_month, days_in_month(year, month0 + 1)))


@dataclass(frozen=True)
class Period:
    """``[start, end)``. ``basis_start`` (default ``start``) begins the full cycle period this one is part of: a
    partial first period ``[start, anchor)`` has ``basis_start`` one interval before the anchor."""

    start: datetime
    end: datetime
    basis_start: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", require_instant(self.start, "period start"))
        object.__setattr__(self, "end", require_instant(self.end, "period end"))
        basis = self.start if self.basis_start is None else require_instant(self.basis_start, "basis start")
        object.__setattr__(self, "basis_start", basis)
        if not basis <= self.start < self.end:
            raise BillingCycleRefused("invalid-period", "a period needs basis_start <= start < end")

    @property
    def seconds(self) -> int:
        return seconds_between(self.start, self.end)

    @property
    def basis_seconds(self) -> int:
        """Length of the full period whose price applies: the denominator of every share of this period."""
        assert self.basis_start is not None
        return seconds_between(self.basis_start, self.end)

    @property
    def is_partial(self) -> bool:
        return self.basis_start != self.start

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


@dataclass(frozen=True)
class BillingCycle:
    """Boundaries ``anchor + n * interval_count`` intervals, on ``day_of_month`` (default: the anchor's day)."""

    anchor: datetime
    interval: Interval
    interval_count: int = 1
    day_of_month: int | None = None

    def __post_init__(self) -> None:
        anchor = require_instant(self.anchor, "billing cycle anchor")
        object.__setattr__(self, "anchor", anchor)
        object.__setattr__(self, "interval", parse_interval(self.interval))
        interval_months(self.interval, self.interval_count)
        day = anchor.day if self.day_of_month is None else self.day_of_month
        if not isinstance(day, int) or isinstance(day, bool) or not 1 <= day <= 31:
            raise BillingCycleRefused("invalid-day-of-month", "day_of_month is 1..31")
        # The anchor itself is boundary 0, so it must sit where the day rule puts it (31 -> 30 in April, never 12).
        if anchor.day != min(day, days_in_month(anchor.year, anchor.month)):
            raise BillingCycleRefused("invalid-day-of-month",
                                      f"an anchor on day {anchor.day} cannot aim for day {day}")
        object.__setattr__(self, "day_of_month", day)

    # --- constructors ---------------------------------------------------------------------------------------
    @classmethod
    def anniversary(cls, start: datetime, interval: Interval | str, interval_count: int = 1) -> BillingCycle:
        """Renews on the start's day and time of day."""
        return cls(start, parse_interval(interval), interval_count)

    @classmethod
    def calendar(cls, start: datetime, interval: Interval | str, interval_count: int = 1, *, day_of_month: int = 1,
                 month: int | None = None, hour: int = 0, minute: int = 0, second: int = 0) -> BillingCycle:
        """The first ``day_of_month`` (of ``month`` for yearly cycles; default the start's month) at
        ``hour:minute:second`` UTC on or after ``start``."""
        start = require_instant(start, "start")
        interval = parse_interval(interval)
        if not 1 <= day_of_month <= 31:
            raise BillingCycleRefused("invalid-day-of-month", "day_of_month is 1..31")
        if month is not None and (interval is not Interval.YEAR or not 1 <= month <= 12):
            raise BillingCycleRefused("invalid-month", "month is 1..12, and only for yearly cycles")
        if not (0 <= hour <= 23 and 0 <= minute <= 59 and 0 <= second <= 59):
            raise BillingCycleRefused("invalid-time-of-day", "hour 0..23, minute and second 0..59")
        first = start.replace(month=month or start.month, day=1, hour=hour, minute=minute, second=second)
        candidate = add_months(first, 0, day_of_month)
        step = 12 if interval is Interval.YEAR else 1
        # Walk forward one month (or year) at a time from the same first-of-month, so the day rule applies afresh.
        n = 0
        while candidate < start:
            n += 1
            candidate = add_months(first, n * step, day_of_month)
        return cls(candidate, interval, interval_count, day_of_month)

    # --- boundaries -----------------------------------------------------------------------------------------
    @property
    def months(self) -> int:
        """Months between two boundaries."""
        return interval_months(self.interval, self.interval_count)

    def boundary(self, n: int) -> datetime:
        """Boundary ``n`` (0 is the anchor; negative ones lie before it)."""
        assert self.day_of_month is not None
        return add_months(self.anchor, n * self.months, self.day_of_month)

    def index_at(self, instant: datetime) -> int:
        """The ``k`` with ``boundary(k) <= instant < boundary(k + 1)``."""
        instant = require_instant(instant)
        elapsed = (instant.year - self.anchor.year) * 12 + instant.month - self.anchor.month
        k = elapsed // self.months
        # The month count is off by at most one step either way (day and time of day); settle it exactly.
        while self.boundary(k) > instant:
            k -= 1
        while self.boundary(k + 1) <= instant:
            k += 1
        return k

    def is_boundary(self, instant: datetime) -> bool:
        return self.boundary(self.index_at(instant)) == instant

    def period_at(self, instant: datetime) -> Period:
        """The full cycle period containing ``instant``."""
        k = self.index_at(instant)
        return Period(self.boundary(k), self.boundary(k + 1))

    def first_period(self, start: datetime) -> Period:
        """The first period of a subscription starting at ``start``: from ``start`` to the next boundary, as a part
        of the full cycle period containing ``start`` (partial unless ``start`` is a boundary)."""
        start = require_instant(start, "start")
        k = self.index_at(start)
        if k < -1:
            raise BillingCycleRefused("anchor-too-far", "the billing cycle anchor is at most one interval after "
                                                        "the start")
        return Period(start, self.boundary(k + 1), basis_start=self.boundary(k))

    def period_after(self, period: Period) -> Period:
        """The full period that begins where ``period`` ends (its end must be a boundary of this cycle)."""
        k = self.index_at(period.end)
        if self.boundary(k) != period.end:
            raise BillingCycleRefused("not-a-boundary", f"{iso(period.end)} is not a boundary of this cycle")
        return Period(period.end, self.boundary(k + 1))


def next_period(anchor: datetime, period_start: datetime, interval: Interval | str, count: int = 1, *,
                day_of_month: int | None = None) -> Period:
    """The period after the one that contains ``period_start``, computed from the anchor: for a renewal, pass the
    current period's start (a partial first period's start works too: its next period begins at the anchor)."""
    cycle = BillingCycle(anchor, parse_interval(interval), count, day_of_month)
    k = cycle.index_at(period_start)
    return Period(cycle.boundary(k + 1), cycle.boundary(k + 2))
