"""Billing periods: boundaries come from the anchor (no drift after a short month), a 29 February anchor comes back
in leap years, periods are contiguous and half-open, and a first period up to a later anchor is partial."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.billing_cycle import (
    BillingCycle,
    BillingCycleRefused,
    Interval,
    Period,
    add_months,
    days_in_month,
    iso,
    next_period,
    require_instant,
    seconds_between,
)


def at(y: int, m: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, s, tzinfo=UTC)


def test_a_31st_anchor_bills_on_the_last_day_of_shorter_months_and_returns_to_the_31st() -> None:
    cycle = BillingCycle(at(2026, 1, 31, 9, 30), Interval.MONTH)
    assert [cycle.boundary(n).date() for n in range(13)] == [
        date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 30), date(2026, 5, 31),
        date(2026, 6, 30), date(2026, 7, 31), date(2026, 8, 31), date(2026, 9, 30), date(2026, 10, 31),
        date(2026, 11, 30), date(2026, 12, 31), date(2027, 1, 31)]
    assert {cycle.boundary(n).time() for n in range(13)} == {at(2026, 1, 31, 9, 30).time()}
    # Leap year: 29 February, and the anchor's day again in March.
    leap = BillingCycle(at(2028, 1, 31), Interval.MONTH)
    assert leap.boundary(1) == at(2028, 2, 29) and leap.boundary(2) == at(2028, 3, 31)


def test_renewing_period_by_period_lands_where_the_anchor_says() -> None:
    cycle = BillingCycle(at(2026, 1, 31), Interval.MONTH)
    period = cycle.first_period(cycle.anchor)
    for n in range(1, 40):
        assert period.end == cycle.boundary(n)
        period = cycle.period_after(period)
    assert period.start == at(2029, 4, 30) and period.end == at(2029, 5, 31)


def test_a_29_february_yearly_anchor() -> None:
    cycle = BillingCycle(at(2028, 2, 29, 12), Interval.YEAR)
    assert [cycle.boundary(n) for n in range(-1, 6)] == [
        at(2027, 2, 28, 12), at(2028, 2, 29, 12), at(2029, 2, 28, 12), at(2030, 2, 28, 12), at(2031, 2, 28, 12),
        at(2032, 2, 29, 12), at(2033, 2, 28, 12)]
    # A calendar anchor asking for 29 February in a common year lands on the 28th and keeps aiming for the 29th.
    calendar = BillingCycle.calendar(at(2027, 1, 10), "year", day_of_month=29, month=2)
    assert calendar.anchor == at(2027, 2, 28) and calendar.day_of_month == 29
    assert calendar.boundary(1) == at(2028, 2, 29)


def test_interval_count() -> None:
    quarterly = BillingCycle(at(2026, 1, 31), Interval.MONTH, 3)
    monthly = BillingCycle(at(2026, 1, 31), Interval.MONTH)
    assert [quarterly.boundary(n) for n in range(8)] == [monthly.boundary(3 * n) for n in range(8)]
    assert quarterly.boundary(1) == at(2026, 4, 30) and quarterly.boundary(2) == at(2026, 7, 31)
    assert BillingCycle(at(2026, 5, 1), Interval.YEAR, 2).boundary(1) == at(2028, 5, 1)
    assert BillingCycle(at(2026, 5, 1), Interval.MONTH, 36).months == 36


@pytest.mark.parametrize("interval, count", [("month", 0), ("month", 37), ("year", 4), ("month", -1),
                                             ("month", True)])
def test_interval_counts_are_1_up_to_three_years(interval: str, count: int) -> None:
    with pytest.raises(BillingCycleRefused) as refused:
        BillingCycle(at(2026, 1, 1), interval, count)  # type: ignore[arg-type]
    assert refused.value.code == "invalid-interval-count"


def test_only_months_and_years() -> None:
    with pytest.raises(BillingCycleRefused) as refused:
        BillingCycle(at(2026, 1, 1), "week")  # type: ignore[arg-type]
    assert refused.value.code == "invalid-interval"


def test_calendar_anchors() -> None:
    # The first 1st of a month on or after the start; a start on the 1st at midnight is its own anchor.
    assert BillingCycle.calendar(at(2026, 3, 14, 8), "month").anchor == at(2026, 4, 1)
    assert BillingCycle.calendar(at(2026, 3, 1), "month").anchor == at(2026, 3, 1)
    assert BillingCycle.calendar(at(2026, 3, 1, 0, 0, 1), "month").anchor == at(2026, 4, 1)
    # The 31st, asked for in April: the 30th, and the cycle still aims for the 31st.
    cycle = BillingCycle.calendar(at(2026, 4, 5), "month", day_of_month=31)
    assert (cycle.anchor, cycle.boundary(1), cycle.boundary(2)) == (at(2026, 4, 30), at(2026, 5, 31), at(2026, 6, 30))
    # Yearly on 1 January at 06:00.
    assert BillingCycle.calendar(at(2026, 3, 14), "year", month=1, hour=6).anchor == at(2027, 1, 1, 6)
    with pytest.raises(BillingCycleRefused):
        BillingCycle.calendar(at(2026, 3, 14), "month", month=1)  # a month only for yearly cycles
    with pytest.raises(BillingCycleRefused):
        BillingCycle.calendar(at(2026, 3, 14), "month", day_of_month=32)


def test_an_anchor_must_sit_on_its_day() -> None:
    with pytest.raises(BillingCycleRefused) as refused:
        BillingCycle(at(2026, 4, 12), Interval.MONTH, day_of_month=31)
    assert refused.value.code == "invalid-day-of-month"
    assert BillingCycle(at(2026, 4, 30), Interval.MONTH, day_of_month=31).boundary(1) == at(2026, 5, 31)


def test_a_later_anchor_makes_the_first_period_partial() -> None:
    cycle = BillingCycle.calendar(at(2026, 3, 14, 12), "month")
    first = cycle.first_period(at(2026, 3, 14, 12))
    assert (first.start, first.end, first.basis_start) == (at(2026, 3, 14, 12), at(2026, 4, 1), at(2026, 3, 1))
    assert first.is_partial
    assert first.seconds == (17 * 24 + 12) * 3600 and first.basis_seconds == 31 * 24 * 3600
    assert cycle.period_after(first) == Period(at(2026, 4, 1), at(2026, 5, 1))
    # On the anchor itself: a full first period.
    full = cycle.first_period(at(2026, 4, 1))
    assert not full.is_partial and full == Period(at(2026, 4, 1), at(2026, 5, 1))


def test_an_anchor_more_than_one_interval_away_is_refused() -> None:
    cycle = BillingCycle(at(2026, 6, 1), Interval.MONTH)
    assert cycle.first_period(at(2026, 5, 1)).basis_start == at(2026, 5, 1)  # exactly one interval: a full period
    with pytest.raises(BillingCycleRefused) as refused:
        cycle.first_period(at(2026, 4, 30, 23, 59, 59))
    assert refused.value.code == "anchor-too-far"


def test_next_period() -> None:
    anchor = at(2026, 1, 31)
    assert next_period(anchor, at(2026, 1, 31), "month") == Period(at(2026, 2, 28), at(2026, 3, 31))
    assert next_period(anchor, at(2026, 2, 28), "month") == Period(at(2026, 3, 31), at(2026, 4, 30))
    # From a partial first period's start: the next period begins at the anchor.
    assert next_period(anchor, at(2026, 1, 20, 15), "month") == Period(at(2026, 1, 31), at(2026, 2, 28))
    assert next_period(at(2026, 3, 1), at(2026, 3, 1), "month", 3) == Period(at(2026, 6, 1), at(2026, 9, 1))


def test_the_period_not_a_boundary_is_refused() -> None:
    cycle = BillingCycle(at(2026, 1, 1), Interval.MONTH)
    with pytest.raises(BillingCycleRefused) as refused:
        cycle.period_after(Period(at(2026, 1, 1), at(2026, 1, 15)))
    assert refused.value.code == "not-a-boundary"


@pytest.mark.parametrize("value", [datetime(2026, 1, 1), datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=1))),
                                   datetime(2026, 1, 1, 0, 0, 0, 500, tzinfo=UTC), "2026-01-01T00:00:00Z", 1767225600])
def test_instants_are_utc_aware_whole_seconds(value: object) -> None:
    with pytest.raises(BillingCycleRefused) as refused:
        require_instant(value)
    assert refused.value.code == "invalid-instant"


def test_instants_and_periods() -> None:
    assert iso(at(2026, 1, 31, 7, 5, 9)) == "2026-01-31T07:05:09Z"
    assert require_instant(datetime(2026, 1, 1, tzinfo=timezone(timedelta(0)))) == at(2026, 1, 1)
    assert seconds_between(at(2026, 1, 1), at(2026, 1, 2)) == 86_400
    assert seconds_between(at(2026, 1, 2), at(2026, 1, 1)) == -86_400
    period = Period(at(2026, 1, 1), at(2026, 2, 1))
    assert period.contains(at(2026, 1, 1)) and not period.contains(at(2026, 2, 1))  # half-open
    with pytest.raises(BillingCycleRefused):
        Period(at(2026, 2, 1), at(2026, 2, 1))
    with pytest.raises(BillingCycleRefused):
        Period(at(2026, 2, 1), at(2026, 3, 1), basis_start=at(2026, 2, 2))


# --- properties ---------------------------------------------------------------------------------------------
INSTANTS = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2200, 1, 1),
                        timezones=st.just(UTC)).map(lambda d: d.replace(microsecond=0))
CYCLES = st.builds(
    lambda instant, day, interval, count: BillingCycle(add_months(instant, 0, day), interval, count, day),
    INSTANTS, st.integers(1, 31), st.sampled_from(list(Interval)), st.integers(1, 3))


@given(CYCLES, st.integers(-30, 60))
def test_boundaries_are_on_the_day_rule_increasing_and_keep_the_time_of_day(cycle: BillingCycle, n: int) -> None:
    here, there = cycle.boundary(n), cycle.boundary(n + 1)
    assert here < there
    assert cycle.day_of_month is not None
    assert here.day == min(cycle.day_of_month, days_in_month(here.year, here.month))
    assert here.time() == cycle.anchor.time()
    months = (there.year - here.year) * 12 + there.month - here.month
    assert months == cycle.months
    assert cycle.index_at(here) == n and cycle.is_boundary(here)


@given(CYCLES, INSTANTS)
def test_the_period_at_an_instant_contains_it_and_periods_are_contiguous(cycle: BillingCycle, t: datetime) -> None:
    period = cycle.period_at(t)
    assert period.contains(t)
    after = cycle.period_after(period)
    assert after.start == period.end
    following = next_period(cycle.anchor, period.start, cycle.interval, cycle.interval_count,
                            day_of_month=cycle.day_of_month)
    assert following == after
    # A monthly period lasts 28..31 days; a yearly one 365 or 366 (times the count).
    days = period.seconds // 86_400
    assert period.seconds % 86_400 == 0
    if cycle.interval is Interval.MONTH:
        assert 28 * cycle.interval_count <= days <= 31 * cycle.interval_count
    else:
        assert 365 * cycle.interval_count <= days <= 366 * cycle.interval_count


@given(CYCLES, st.integers(1, 10**7))
def test_a_first_period_before_the_anchor_is_a_part_of_the_full_period_ending_there(
        cycle: BillingCycle, seconds_before: int) -> None:
    start = cycle.anchor - timedelta(seconds=seconds_before)
    if start < cycle.boundary(-1):
        with pytest.raises(BillingCycleRefused):
            cycle.first_period(start)
        return
    first = cycle.first_period(start)
    assert first.end == cycle.anchor and first.basis_start == cycle.boundary(-1)
    assert 0 < first.seconds <= first.basis_seconds
    assert first.is_partial == (start != cycle.boundary(-1))
