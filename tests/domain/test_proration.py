"""Prorations to the minor unit: a change never creates or loses money, a change at the period's start credits
exactly what the period was billed, a change undone at the same instant nets to zero; and whether a change is an
upgrade or a downgrade, and when it applies, is the tenant's policy."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from domain.billing_cycle import BillingCycle, Interval, Period
from domain.billing_line import BillingLine, Item, LineKind, period_line, time_share
from domain.catalogue import Price, make_price
from domain.invoice import make_line
from domain.money import Money, get_currency
from domain.proration import (
    ChangeKind,
    ChangePolicy,
    ProrationBehavior,
    ProrationRefused,
    Timing,
    classify_change,
    decide_change,
    plan_change,
    remaining_time_charge,
    unused_time_credit,
    used_time_amount,
)

B = ProrationBehavior


def at(y: int, m: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, s, tzinfo=UTC)


def price(family: str, amount: str, currency: str = "EUR", *, interval: str = "month", count: int = 1,
          scheme: str = "per_unit") -> Price:
    return make_price(family, "pro", currency, unit_amount=amount, interval=interval, interval_count=count,
                      billing_scheme=scheme)


APRIL = Period(at(2026, 4, 1), at(2026, 5, 1))  # 30 days
BASIC, PRO = Item(price("basic", "20.00")), Item(price("pro", "50.00"))


def test_an_upgrade_halfway_credits_the_unused_half_and_charges_the_remaining_half() -> None:
    plan = plan_change(APRIL, BASIC, PRO, at(2026, 4, 16), B.CREATE_PRORATIONS)
    assert [(line.kind, line.amount.to_decimal_string()) for line in plan.lines] == [
        (LineKind.UNUSED_TIME, "-10.00"), (LineKind.REMAINING_TIME, "25.00")]
    credit, charge = plan.lines
    assert credit.description == "Unused time on 1 x basic after 2026-04-16"
    assert charge.description == "Remaining time on 1 x pro after 2026-04-16"
    assert (credit.period_start, credit.period_end) == (at(2026, 4, 16), at(2026, 5, 1))
    assert credit.proration and charge.proration and credit.is_credit and not charge.is_credit
    assert plan.net == Money.parse("15.00", "EUR") and not plan.invoice_now and not plan.resets_cycle


def test_seconds_not_days() -> None:
    # 18:00 on 16 April leaves 14 days and 6 hours of 30 days: 20 x 342/720 = 9.50.
    line = unused_time_credit(BASIC, APRIL, at(2026, 4, 16, 18))
    assert line.amount == Money.parse("-9.50", "EUR")
    # One second before the end: 20 x 1/2,592,000 rounds to nothing.
    assert unused_time_credit(BASIC, APRIL, at(2026, 4, 30, 23, 59, 59)).amount.is_zero()


def test_behaviours() -> None:
    t = at(2026, 4, 10)
    created = plan_change(APRIL, BASIC, PRO, t, B.CREATE_PRORATIONS)
    invoiced = plan_change(APRIL, BASIC, PRO, t, "always_invoice")
    nothing = plan_change(APRIL, BASIC, PRO, t, B.NONE)
    assert created.lines == invoiced.lines and len(created.lines) == 2
    assert (created.invoice_now, invoiced.invoice_now) == (False, True)
    assert nothing.lines == () and not nothing.invoice_now and nothing.net is None
    with pytest.raises(ProrationRefused) as refused:
        plan_change(APRIL, BASIC, PRO, t, "sometimes")
    assert refused.value.code == "invalid-proration-behavior"


def test_seats() -> None:
    seat = price("seat", "12.00")
    five, eight = Item(seat, 5), Item(seat, 8)
    plan = plan_change(APRIL, five, eight, at(2026, 4, 21), B.ALWAYS_INVOICE)  # 10 of 30 days left
    assert [line.amount.to_decimal_string() for line in plan.lines] == ["-20.00", "32.00"]
    assert [line.quantity for line in plan.lines] == [5, 8]
    assert plan.lines[1].description == "Remaining time on 8 x seat after 2026-04-21"
    back = plan_change(APRIL, eight, five, at(2026, 4, 21), B.ALWAYS_INVOICE)
    assert plan.net is not None and back.net is not None and (plan.net + back.net).is_zero()


def test_changing_the_interval_restarts_the_cycle_and_invoices_a_full_new_period_now() -> None:
    yearly = Item(price("pro_yearly", "200.00", interval="year"))
    t = at(2026, 4, 16)
    plan = plan_change(APRIL, BASIC, yearly, t, B.CREATE_PRORATIONS)
    assert plan.resets_cycle and plan.invoice_now
    assert plan.new_cycle == BillingCycle(t, Interval.YEAR) and plan.new_period == Period(t, at(2027, 4, 16))
    assert [(line.kind, line.amount.to_decimal_string()) for line in plan.lines] == [
        (LineKind.UNUSED_TIME, "-10.00"), (LineKind.PERIOD, "200.00")]
    assert not plan.lines[1].proration
    none = plan_change(APRIL, BASIC, yearly, t, B.NONE)
    assert [line.kind for line in none.lines] == [LineKind.PERIOD] and none.invoice_now
    # Twelve months written either way is the same length: no restart.
    twelve = Item(price("pro_12m", "200.00", count=12))
    assert not plan_change(Period(at(2026, 1, 1), at(2027, 1, 1)), yearly, twelve, at(2026, 4, 1), B.NONE).resets_cycle


def test_refusals() -> None:
    with pytest.raises(ProrationRefused) as refused:
        plan_change(APRIL, BASIC, Item(price("usd", "20.00", "USD")), at(2026, 4, 2), B.NONE)
    assert refused.value.code == "currency-change"
    with pytest.raises(ProrationRefused) as refused:
        plan_change(APRIL, BASIC, Item(BASIC.price), at(2026, 4, 2), B.NONE)
    assert refused.value.code == "no-change"
    for outside in (at(2026, 5, 1), at(2026, 3, 31, 23, 59, 59)):
        with pytest.raises(ProrationRefused) as refused:
            plan_change(APRIL, BASIC, PRO, outside, B.CREATE_PRORATIONS)
        assert refused.value.code == "proration-date-outside-period"


def test_a_partial_first_period_is_prorated_against_the_full_period_it_is_part_of() -> None:
    cycle = BillingCycle.calendar(at(2026, 3, 14, 12), "month")
    first = cycle.first_period(at(2026, 3, 14, 12))
    line = period_line(BASIC, first)
    # 17.5 of March's 31 days: 20 x 17.5/31 = 11.2903... -> 11.29
    assert line.kind is LineKind.PARTIAL_PERIOD and line.proration
    assert line.amount == Money.parse("11.29", "EUR")
    assert line.description == "1 x basic (2026-03-14 to 2026-04-01, prorated)"
    # A change at its start credits exactly what it was billed.
    assert unused_time_credit(BASIC, first, first.start).amount == -line.amount


def test_used_is_the_complement_so_exact_halves_lose_nothing() -> None:
    # 0.01 over two seconds, changed after one: both shares are exactly half a cent, and half-even rounds both
    # down; taking "used" as billed - unused keeps the cent.
    cent = Item(price("cent", "0.01"))
    period = Period(at(2026, 1, 1), at(2026, 1, 1, 0, 0, 2))
    unused = unused_time_credit(cent, period, at(2026, 1, 1, 0, 0, 1)).amount
    independent = time_share(cent.exact_amount, 1, 2)
    assert unused.is_zero() and independent.is_zero()
    assert used_time_amount(cent, period, at(2026, 1, 1, 0, 0, 1)) == Money.parse("0.01", "EUR")


def test_a_full_period_is_billed_as_the_invoice_bills_quantity_times_unit_amount() -> None:
    seat = Item(price("seat", "0.125"), 3)  # 0.375 -> 0.38 (half-even: 37.5 cents -> 38)
    assert period_line(seat, APRIL).amount == Money.parse("0.38", "EUR")
    assert period_line(seat, APRIL).description == "3 x seat (2026-04-01 to 2026-05-01)"


# --- classification and policy ------------------------------------------------------------------------------
def test_what_counts_as_an_upgrade_is_the_amount_per_month() -> None:
    yearly = Item(price("y", "200.00", interval="year"))  # 16.67 a month
    assert classify_change(BASIC, PRO) is ChangeKind.UPGRADE
    assert classify_change(PRO, BASIC) is ChangeKind.DOWNGRADE
    assert classify_change(BASIC, yearly) is ChangeKind.DOWNGRADE
    assert classify_change(BASIC, Item(price("y240", "240.00", interval="year"))) is ChangeKind.LATERAL
    assert classify_change(Item(price("s", "5"), 4), Item(price("s", "5"), 5)) is ChangeKind.UPGRADE
    assert classify_change(BASIC, Item(price("q", "60.00", count=3))) is ChangeKind.LATERAL


def test_the_policy_decides_when_and_says_why() -> None:
    default = ChangePolicy()
    up = decide_change(default, BASIC, PRO)
    assert (up.kind, up.timing, up.behavior) == (ChangeKind.UPGRADE, Timing.NOW, B.CREATE_PRORATIONS)
    assert up.explanation == ("upgrade: 1 x pro is 50.00 EUR per month against 20.00 EUR for 1 x basic; "
                              "the policy applies upgrades now, create_prorations")
    down = decide_change(default, PRO, BASIC)
    assert (down.kind, down.timing) == (ChangeKind.DOWNGRADE, Timing.PERIOD_END)
    assert down.explanation.endswith("the policy applies downgrades period_end")
    everything_now = ChangePolicy(downgrades="now", proration_behavior="always_invoice")  # type: ignore[arg-type]
    assert decide_change(everything_now, PRO, BASIC).timing is Timing.NOW
    assert decide_change(everything_now, PRO, BASIC).behavior is B.ALWAYS_INVOICE
    forced = decide_change(default, BASIC, PRO, timing="period_end", proration_behavior="none")
    assert (forced.timing, forced.behavior) == (Timing.PERIOD_END, B.NONE)
    assert "requested period_end" in forced.explanation
    with pytest.raises(ProrationRefused) as refused:
        ChangePolicy(upgrades="later")  # type: ignore[arg-type]
    assert refused.value.code == "invalid-timing"


# --- properties ---------------------------------------------------------------------------------------------
CURRENCY = st.sampled_from(["EUR", "JPY", "KWD", "USD"])


@st.composite
def items(draw: st.DrawFn, currency: str, family: str) -> Item:
    if draw(st.booleans()):
        per_minor = get_currency(currency).micros_per_minor
        amount = Money(draw(st.integers(0, 10**7)) * per_minor, currency)
        p = make_price(family, "pro", currency, unit_amount_micros=amount.micros, billing_scheme="flat",
                       interval=draw(st.sampled_from(["month", "year"])))
        return Item(p, 1)
    p = make_price(family, "pro", currency, unit_amount_micros=draw(st.integers(0, 10**9)),
                   interval=draw(st.sampled_from(["month", "year"])))
    return Item(p, draw(st.integers(1, 500)))


@st.composite
def periods(draw: st.DrawFn, interval: Interval) -> Period:
    start = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                              timezones=st.just(UTC))).replace(microsecond=0)
    cycle = BillingCycle(start, interval)
    if draw(st.booleans()):  # a partial first period up to an anchor later than the start
        first_start = cycle.anchor - timedelta(seconds=draw(st.integers(1, 27 * 86_400)))
        return cycle.first_period(first_start)
    return cycle.period_at(start + timedelta(days=draw(st.integers(0, 2000))))


@st.composite
def changes(draw: st.DrawFn) -> tuple[Period, Item, Item, datetime]:
    currency = draw(CURRENCY)
    old = draw(items(currency, "old"))
    new = draw(items(currency, "new"))
    assume(not old.same_as(new))
    period = draw(periods(old.price.interval))
    t = period.start + timedelta(seconds=draw(st.integers(0, period.seconds - 1)))
    return period, old, new, t


def _within_half_a_minor_unit(line: BillingLine, exact: Money, remaining: int, basis: int) -> bool:
    per_minor = get_currency(exact.currency).micros_per_minor
    # |line - exact x remaining / basis| <= per_minor / 2, in integers
    return 2 * abs(abs(line.amount.micros) * basis - exact.micros * remaining) <= per_minor * basis


@given(changes())
@settings(max_examples=300)
def test_a_change_undone_at_the_same_instant_nets_to_exactly_zero(case: tuple[Period, Item, Item, datetime]) -> None:
    period, old, new, t = case
    for behavior in (B.CREATE_PRORATIONS, B.ALWAYS_INVOICE):
        there = plan_change(period, old, new, t, behavior)
        if there.resets_cycle:
            continue
        back = plan_change(period, new, old, t, behavior)
        total = sum((line.amount.micros for line in (*there.lines, *back.lines)), 0)
        assert total == 0


@given(changes())
@settings(max_examples=300)
def test_unused_plus_used_is_exactly_what_the_period_was_billed(case: tuple[Period, Item, Item, datetime]) -> None:
    period, old, _, t = case
    billed = period_line(old, period).amount
    unused = unused_time_credit(old, period, t)
    used = used_time_amount(old, period, t)
    assert used - unused.amount == billed  # unused is a negative credit
    remaining = period.end - t
    assert _within_half_a_minor_unit(unused, old.exact_amount, remaining // timedelta(seconds=1),
                                     period.basis_seconds)
    # Rounding the used share on its own would miss by up to one minor unit; when the period is billed exactly
    # (a full period of a whole number of minor units) only where both shares are exact halves.
    per_minor = get_currency(billed.currency).micros_per_minor
    used_seconds = (t - period.start) // timedelta(seconds=1)
    independent = time_share(old.exact_amount, used_seconds, period.basis_seconds)
    miss = (independent - used).micros
    assert miss in (-per_minor, 0, per_minor)
    if miss and not period.is_partial and old.exact_amount.micros % per_minor == 0:
        twice_exact = 2 * old.exact_amount.micros * used_seconds
        assert twice_exact % (per_minor * period.basis_seconds) == 0  # an exact half of a minor unit


@given(changes())
@settings(max_examples=300)
def test_a_change_at_the_period_start_credits_the_whole_period(case: tuple[Period, Item, Item, datetime]) -> None:
    period, old, new, _ = case
    credit = unused_time_credit(old, period, period.start)
    assert credit.amount == -period_line(old, period).amount
    assert credit.period_start == period.start and credit.period_end == period.end
    assert remaining_time_charge(new, period, period.start).amount == period_line(new, period).amount


@given(CURRENCY.flatmap(lambda c: st.tuples(st.lists(items(c, "x"), min_size=2, max_size=6),
                                            st.lists(st.integers(0, 10**6), min_size=5, max_size=5))),
       periods(Interval.MONTH))
@settings(max_examples=200)
def test_each_item_is_billed_for_the_time_it_was_held(case: tuple[list[Item], list[int]], period: Period) -> None:
    held, offsets = case
    held = [Item(make_price(f"p{n}", "pro", item.currency, unit_amount_micros=item.price.unit_amount.micros,
                            billing_scheme=item.price.billing_scheme), item.quantity)
            for n, item in enumerate(held)]  # all monthly, so no change restarts the cycle
    times = sorted({period.start + timedelta(seconds=o % period.seconds) for o in offsets[: len(held) - 1]})
    held = held[: len(times) + 1]
    lines = [period_line(held[0], period)]
    for t, (old, new) in zip(times, itertools.pairwise(held), strict=False):
        lines.extend(plan_change(period, old, new, t, B.CREATE_PRORATIONS).lines)
    total = sum(line.amount.micros for line in lines)
    # Exact: each item for its span, against the full period's length.
    bounds = [period.start, *times, period.end]
    seconds = [(b - a) // timedelta(seconds=1) for a, b in itertools.pairwise(bounds)]
    exact_times_basis = sum(item.exact_amount.micros * s for item, s in zip(held, seconds, strict=True))
    per_minor = get_currency(held[0].currency).micros_per_minor
    roundings = 1 + 2 * len(times)
    assert 2 * abs(total * period.basis_seconds - exact_times_basis) <= roundings * per_minor * period.basis_seconds


@given(CURRENCY.flatmap(lambda c: st.tuples(items(c, "a"), items(c, "b"))))
def test_classification_is_antisymmetric(pair: tuple[Item, Item]) -> None:
    a, b = pair
    assume(not a.same_as(b))
    opposite = {ChangeKind.UPGRADE: ChangeKind.DOWNGRADE, ChangeKind.DOWNGRADE: ChangeKind.UPGRADE,
                ChangeKind.LATERAL: ChangeKind.LATERAL}
    assert classify_change(b, a) is opposite[classify_change(a, b)]


@given(st.integers(1, 10_000), st.integers(0, 10**9), CURRENCY)
def test_a_full_period_line_equals_the_invoice_line_of_quantity_times_unit_amount(
        quantity: int, micros: int, currency: str) -> None:
    item = Item(make_price("s", "pro", currency, unit_amount_micros=micros), quantity)
    invoice_line = make_line("li_1", "x", str(quantity), item.price.unit_amount_decimal, currency)
    assert period_line(item, APRIL).amount == invoice_line.amount
