"""Amounts, rates, quantities and dates per locale (activities/documents/formatting.py, babel's CLDR data)."""

from __future__ import annotations

from datetime import date

import pytest

from activities.documents import formatting as fmt
from domain.money import UnknownCurrency

NBSP = "\u00a0"


@pytest.mark.parametrize(("micros", "currency", "locale", "shown"), [
    (1_234_560_000, "EUR", "de_DE", f"1.234,56{NBSP}€"),
    (1_234_560_000, "EUR", "en_IE", "€1,234.56"),
    (1_234_560_000, "EUR", "fr_FR", f"1\u202f234,56{NBSP}€"),
    (1_234_560_000, "USD", "en_US", "$1,234.56"),
    (1_234_560_000, "GBP", "en_GB", "£1,234.56"),
    (1_234_000_000, "INR", "en_IN", "₹1,234.00"),
    (1_234_567_500_000, "INR", "en_IN", "₹12,34,567.50"),  # lakh grouping
    (1_234_000_000, "JPY", "ja_JP", "￥1,234"),  # no decimals; the renderer draws ￥ as ¥
    (1_234_000_000, "JPY", "en_US", "¥1,234"),
    (1_234_567_000, "KWD", "en_US", "KWD1,234.567"),  # three decimals
    (-1_234_560_000, "EUR", "de_DE", f"-1.234,56{NBSP}€"),
    (0, "USD", "en_US", "$0.00"),
    (25_000, "USD", "en_US", "$0.025"),  # a sub-cent amount is shown exactly, never rounded for display
])
def test_money(micros: int, currency: str, locale: str, shown: str) -> None:
    assert fmt.money(micros, currency, locale) == shown


def test_money_refuses_a_currency_paysaga_does_not_know() -> None:
    with pytest.raises(UnknownCurrency):
        fmt.money(1, "XXX", "en_US")


@pytest.mark.parametrize(("text", "currency", "locale", "shown"), [
    ("49.00", "EUR", "de_DE", f"49,00{NBSP}€"),
    ("49", "USD", "en_US", "$49.00"),
    ("0.0025", "USD", "en_US", "$0.0025"),
    ("0.5", "JPY", "ja_JP", "￥0.5"),
    ("not a number", "USD", "en_US", "not a number"),
    ("NaN", "USD", "en_US", "NaN"),
])
def test_unit_price(text: str, currency: str, locale: str, shown: str) -> None:
    assert fmt.unit_price(text, currency, locale) == shown


@pytest.mark.parametrize(("text", "locale", "shown"), [
    ("3", "en_US", "3"), ("1.5", "de_DE", "1,5"), ("12000", "en_US", "12,000"), ("0.125", "fr_FR", "0,125"),
    ("three", "en_US", "three"),
])
def test_quantity(text: str, locale: str, shown: str) -> None:
    assert fmt.quantity(text, locale) == shown


@pytest.mark.parametrize(("ppm", "locale", "shown"), [
    (190_000, "de_DE", f"19{NBSP}%"), (190_000, "en_US", "19%"), (75_000, "en_US", "7.5%"),
    (55_000, "fr_FR", f"5,5{NBSP}%"), (0, "en_GB", "0%"), (72_500, "en_US", "7.25%"),
])
def test_rate(ppm: int, locale: str, shown: str) -> None:
    assert fmt.rate(ppm, locale) == shown


@pytest.mark.parametrize(("locale", "shown"), [
    ("de_DE", "30.11.2026"), ("en_US", "Nov 30, 2026"), ("en_GB", "30 Nov 2026"), ("en_IN", "30 Nov 2026"),
    ("ja_JP", "2026/11/30"), ("fr_FR", "30 nov. 2026"),
])
def test_day(locale: str, shown: str) -> None:
    assert fmt.day(date(2026, 11, 30), locale) == shown


def test_locales_are_parsed_with_either_separator_and_unknown_ones_are_named() -> None:
    assert str(fmt.parse_locale("de-DE")) == "de_DE"
    assert str(fmt.parse_locale("pt_BR")) == "pt_BR"
    with pytest.raises(ValueError, match="unknown locale 'xx_YY'"):
        fmt.parse_locale("xx_YY")


def test_country_names_are_in_the_locale() -> None:
    assert fmt.country("DE", fmt.parse_locale("de_DE")) == "Deutschland"
    assert fmt.country("de", fmt.parse_locale("fr_FR")) == "Allemagne"
    assert fmt.country("AA", fmt.parse_locale("en_US")) == "AA"  # no name: the code
