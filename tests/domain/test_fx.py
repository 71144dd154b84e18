"""Exchange rates are exact ratios, conversions round once and say how, and a settled conversion balances in
every currency with the difference to the quoted rate booked as FX gain or loss — to the micro-unit."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from domain.fx import (
    FxError,
    FxRate,
    convert,
    convert_parts,
    cross_rate,
    parse_rate,
    provider_conversion,
    settle_conversion,
)
from domain.ledger import balances, payment_completed, totals_by_currency
from domain.money import MAX_MICROS, Money, MoneyOverflow, RoundingMode, get_currency

DAY = date(2024, 3, 28)
PAIRS = st.sampled_from([("EUR", "USD"), ("USD", "INR"), ("GBP", "AED"), ("EUR", "JPY"), ("JPY", "USD"),
                         ("USD", "KWD"), ("AED", "EUR")])
# Rates as a central bank publishes them: up to 6 decimals, from 0.0001 to 1000.
RATES = st.integers(min_value=100, max_value=10**9).map(lambda n: Fraction(n, 10**6))
AMOUNTS = st.integers(min_value=1, max_value=10**10)  # minor units


def rate(base: str, quote: str, value: str | Fraction, on: date = DAY) -> FxRate:
    return FxRate.of(base, quote, value, on, "test")


def minor(units: int, currency: str) -> Money:
    return Money.from_minor_units(units, currency)


def test_a_published_decimal_is_kept_exactly() -> None:
    assert parse_rate("1.0811") == Fraction(10811, 10000)
    assert parse_rate("0.82805") == Fraction(82805, 100000)
    assert parse_rate("163") == 163
    assert rate("EUR", "USD", "1.0811").rate == Fraction(10811, 10000)
    assert FxRate.of("EUR", "USD", Decimal("1.0811"), DAY, "t").rate == Fraction(10811, 10000)  # type: ignore[arg-type]
    assert FxRate.of("EUR", "USD", (10811, 10000), DAY, "t").rate == Fraction(10811, 10000)


# the last one is written in Arabic-Indic digits, which int() would accept
@pytest.mark.parametrize("text", ["1.", ".5", "-1.2", "+1", "1e3", " 1.2", "1,2", "0", "0.000", "\u0661.\u0662"])
def test_loose_or_non_positive_rate_texts_are_refused(text: str) -> None:
    with pytest.raises(FxError):
        parse_rate(text)


def test_a_rate_is_never_a_float_and_always_says_its_currencies_date_and_source() -> None:
    with pytest.raises(TypeError):
        FxRate.of("EUR", "USD", 1.0811, DAY, "t")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        FxRate("EUR", "USD", True, DAY, "t")  # type: ignore[arg-type]
    with pytest.raises(FxError):
        rate("EUR", "USD", Fraction(0))
    with pytest.raises(FxError):
        rate("EUR", "EUR", "1.1")
    with pytest.raises(FxError):
        FxRate.of("EUR", "USD", "1.1", DAY, "")
    with pytest.raises(ValueError):
        rate("EUR", "XXX", "1.1")
    assert rate("eur", "usd", "1.1").pair == "EUR/USD"


def test_inverse_and_cross_rates_stay_exact_and_name_what_they_came_from() -> None:
    usd, gbp = rate("EUR", "USD", "1.0811"), rate("EUR", "GBP", "0.8551")
    assert usd.inverse().rate == Fraction(10000, 10811)
    assert usd.inverse().inverse().rate == usd.rate
    cross = cross_rate(usd, gbp)
    assert (cross.base, cross.quote, cross.rate) == ("USD", "GBP", Fraction(8551, 10811))
    assert "via EUR" in cross.source
    assert cross_rate(usd, rate("EUR", "EUR", "1")).pair == "USD/EUR"
    older = rate("EUR", "GBP", "0.8551", date(2024, 3, 27))
    assert cross_rate(usd, older).as_of == date(2024, 3, 27)  # no fresher than its stalest leg
    with pytest.raises(FxError):
        usd.then(gbp)  # EUR/USD then EUR/GBP: no shared pivot
    with pytest.raises(FxError):
        cross_rate(usd, rate("USD", "GBP", "0.79"))


def test_decimal_strings_are_exact_when_they_terminate_and_half_even_otherwise() -> None:
    assert rate("EUR", "USD", "1.0811").decimal_string() == "1.0811"
    assert rate("EUR", "JPY", "163").decimal_string() == "163"
    assert rate("EUR", "USD", (1, 3)).decimal_string(4) == "0.3333"
    assert rate("EUR", "USD", (5, 8)).decimal_string(2) == "0.62"  # 0.625 -> even
    assert rate("EUR", "USD", (7, 8)).decimal_string(2) == "0.88"  # 0.875 -> even


def test_a_conversion_rounds_once_half_even_to_the_target_minor_unit_and_says_so() -> None:
    c = convert(Money.parse("100.00", "EUR"), rate("EUR", "USD", "1.0811"))
    assert c.target == Money.parse("108.11", "USD") and c.rounding is RoundingMode.HALF_EVEN
    assert "EUR/USD 1.0811 on 2024-03-28" in c.describe() and "half_even to minor units" in c.describe()
    # exact halves go to the even cent
    assert convert(Money.parse("1.00", "EUR"), rate("EUR", "USD", "1.005")).target == Money.parse("1.00", "USD")
    assert convert(Money.parse("1.00", "EUR"), rate("EUR", "USD", "1.015")).target == Money.parse("1.02", "USD")
    assert convert(Money.parse("1.00", "EUR"), rate("EUR", "USD", "1.005"),
                   RoundingMode.HALF_UP).target == Money.parse("1.01", "USD")
    # zero-decimal and three-decimal targets
    assert convert(Money.parse("1.00", "EUR"), rate("EUR", "JPY", "163.45")).target == Money.parse("163", "JPY")
    assert convert(Money.parse("100", "JPY"), rate("JPY", "KWD", "0.002031")).target == Money.parse("0.203", "KWD")
    # sub-minor precision when asked for
    fine = convert(Money.parse("1.00", "EUR"), rate("EUR", "USD", "1.0811"), to_minor=False)
    assert fine.target.micros == 1_081_100 and fine.rounding_micros == 0
    with pytest.raises(FxError):
        convert(Money.parse("1.00", "USD"), rate("EUR", "USD", "1.0811"))


@given(AMOUNTS, PAIRS, RATES)
def test_a_conversion_is_within_half_a_minor_unit_of_exact_and_mirrors_for_refunds(
        units: int, pair: tuple[str, str], value: Fraction) -> None:
    base, quote = pair
    r = rate(base, quote, value)
    exact = abs(minor(units, base).micros * r.rate)
    if exact > MAX_MICROS + get_currency(quote).micros_per_minor:
        with pytest.raises(MoneyOverflow):  # too large for Money: refused, never wrapped or clipped
            convert(minor(units, base), r)
        return
    assume(exact < MAX_MICROS - get_currency(quote).micros_per_minor)  # rounding could land either side
    c = convert(minor(units, base), r)
    assert c.target.micros % get_currency(quote).micros_per_minor == 0
    assert abs(c.rounding_micros) * 2 <= get_currency(quote).micros_per_minor
    assert convert(minor(-units, base), r).target == -c.target


@given(st.lists(st.integers(min_value=-10**8, max_value=10**8), min_size=1, max_size=12), PAIRS, RATES)
def test_converted_parts_add_up_to_the_converted_total_to_the_micro(
        parts: list[int], pair: tuple[str, str], value: Fraction) -> None:
    base, quote = pair
    r = rate(base, quote, value)
    amounts = [minor(u, base) for u in parts]
    converted = convert_parts(amounts, r)
    total = convert(sum(amounts[1:], amounts[0]), r).target
    assert sum(c.micros for c in converted) == total.micros
    for a, c in zip(amounts, converted, strict=True):
        assert a.micros * c.micros >= 0  # a part never changes sign


@given(AMOUNTS, PAIRS, RATES, st.integers(min_value=-500, max_value=500))
def test_a_settled_conversion_balances_per_currency_and_loses_no_micro(
        units: int, pair: tuple[str, str], value: Fraction, drift_minor: int) -> None:
    base, quote = pair
    quoted = rate(base, quote, value)
    presentment = minor(units, base)
    expected = convert(presentment, quoted).target
    settled = expected + minor(drift_minor, quote)  # the provider's rate gave more or less
    if not settled.is_positive():
        return
    settlement = settle_conversion(presentment, settled, quoted)
    paid = payment_completed("pay_1", "cus_1", "stripe", presentment)
    fx = provider_conversion("payment", "pay_1", "payment.fx_settled", "stripe", settlement)
    assert all(total == 0 for total in totals_by_currency(fx.lines).values())
    after = balances([*paid.lines, *fx.lines])
    assert after.get(f"cash:stripe:{base}", 0) == 0  # what arrived in the presentment currency moved on whole
    assert after[f"cash:stripe:{quote}"] == settled.micros
    assert after[f"fx_clearing:{base}"] == presentment.micros
    assert after.get(f"fx_clearing:{quote}", 0) == -expected.micros
    assert after.get(f"fx_gain_loss:{quote}", 0) == -settlement.gain.micros == -drift_minor * (
        get_currency(quote).micros_per_minor)
    # the clearing pair is worth nothing at the quoted rate
    assert convert(Money(after[f"fx_clearing:{base}"], base), quoted).target.micros + after.get(
        f"fx_clearing:{quote}", 0) == 0


@given(AMOUNTS, PAIRS, RATES, st.integers(min_value=0, max_value=300))
def test_a_refund_converted_back_at_a_worse_rate_books_a_loss_and_nothing_else(
        units: int, pair: tuple[str, str], value: Fraction, worse_minor: int) -> None:
    base, quote = pair
    quoted = rate(base, quote, value)
    presentment = minor(units, base)
    settled = convert(presentment, quoted).target
    if not settled.is_positive():
        return
    # Buying back at a worse rate must still be an amount Money can hold.
    assume(settled.micros + worse_minor * get_currency(quote).micros_per_minor <= MAX_MICROS)
    charge = provider_conversion("payment", "p", "payment.fx_settled", "stripe",
                                 settle_conversion(presentment, settled, quoted))
    refund_cost = settled + minor(worse_minor, quote)  # buying the presentment currency back costs more
    refund = provider_conversion("refund", "r", "refund.fx_settled", "stripe",
                                 settle_conversion(-presentment, -refund_cost, quoted))
    after = {k: v for k, v in balances([*charge.lines, *refund.lines]).items() if v}
    loss = worse_minor * get_currency(quote).micros_per_minor
    expected = {f"cash:stripe:{base}": 0, f"cash:stripe:{quote}": -loss, f"fx_gain_loss:{quote}": loss}
    assert after == {k: v for k, v in expected.items() if v}


def test_a_settlement_must_be_a_real_conversion() -> None:
    quoted = rate("EUR", "USD", "1.0811")
    with pytest.raises(FxError):
        settle_conversion(Money.parse("1.00", "EUR"), Money.parse("1.00", "GBP"), quoted)
    with pytest.raises(FxError):
        settle_conversion(Money.parse("1.00", "EUR"), Money.parse("-1.08", "USD"), quoted)
    with pytest.raises(FxError):
        settle_conversion(Money.zero("EUR"), Money.zero("USD"), quoted)
    with pytest.raises(FxError):
        settle_conversion(Money.parse("1.00", "EUR"), Money.parse("1.08", "USD"), quoted,
                          settled_rate=rate("USD", "EUR", "0.92"))


def test_the_entry_says_which_rates_it_used() -> None:
    quoted = rate("EUR", "USD", "1.0811")
    applied = FxRate.of("EUR", "USD", "1.07", date(2024, 3, 29), "stripe txn_1")
    e = provider_conversion("payment", "pay_1", "payment.fx_settled", "stripe",
                            settle_conversion(Money.parse("100.00", "EUR"), Money.parse("107.00", "USD"), quoted,
                                              applied))
    assert "EUR/USD 1.0811 on 2024-03-28" in e.memo and "EUR/USD 1.07 on 2024-03-29 (stripe txn_1)" in e.memo
    assert {line.account.account_id: line.amount_micros for line in e.lines}["fx_gain_loss:USD"] == 1_110_000
