"""Amounts, rates, quantities and dates as a reader of the document's locale expects them (babel, CLDR data).

Amounts are shown exactly: micro-units become a `Decimal` through `Money` (no float), and babel is told not to
quantize, so an amount is never rounded for display — a whole amount shows the currency's digits
(``1.234,56 €``, ``¥1,234``), a sub-minor unit price keeps its own (``$0.0025``).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal, format_percent

from domain.money import Money

PPM = Decimal(1_000_000)


def parse_locale(name: str) -> Locale:
    """`de_DE`, `de-DE` or `de`; a `ValueError` naming it if CLDR does not know it."""
    try:
        return Locale.parse(name.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError) as e:
        raise ValueError(f"unknown locale {name!r}: {e}") from None


def money(micros: int, currency: str, locale: Locale | str) -> str:
    amount = Decimal(Money.of_micros(micros, currency).to_decimal_string())
    return format_currency(amount, currency.upper(), locale=locale, decimal_quantization=False)


def unit_price(decimal_text: str, currency: str, locale: Locale | str) -> str:
    """A line's unit price, given as a decimal string in the major unit; shown as given if it is not one."""
    try:
        amount = Decimal(decimal_text)
    except InvalidOperation:
        return decimal_text
    if not amount.is_finite():
        return decimal_text
    return format_currency(amount, currency.upper(), locale=locale, decimal_quantization=False)


def quantity(decimal_text: str, locale: Locale | str) -> str:
    try:
        value = Decimal(decimal_text)
    except InvalidOperation:
        return decimal_text
    if not value.is_finite():
        return decimal_text
    return format_decimal(value, locale=locale, decimal_quantization=False)


def rate(ppm: int, locale: Locale | str) -> str:
    """Parts per million as a percentage: 190_000 → ``19 %`` (de_DE), 75_000 → ``7.5%`` (en_US)."""
    return format_percent(Decimal(ppm) / PPM, locale=locale, decimal_quantization=False)


def day(value: date, locale: Locale | str) -> str:
    """The locale's medium date: ``30.11.2026``, ``Nov 30, 2026``, ``30 Nov 2026``, ``2026/11/30``."""
    return format_date(value, format="medium", locale=locale)


def country(code: str, locale: Locale) -> str:
    return locale.territories.get(code.upper(), code.upper())
