"""The FX-rate port: where the rate of a currency pair on a date comes from.

``FxRates.rate(base, quote, on)`` answers a ``domain.fx.FxRate`` — exact, dated by when it was published (which
may be before ``on``: weekends and holidays fall back, and the rate's ``source`` says so) — or raises
``RateUnavailable``. Adapters:

    EcbRates      (ecb.py)     the embedded default: ECB euro reference rates, AED through its USD peg
    StaticRates   (here)       a fixed table of rates (tests; rates a provider applied, see stripe_rates.py)

Adapters read files or memory, never the network, and are synchronous: call them from an activity (a workflow
gets its rates as activity results, so a replay sees the same rate).

Floats: some sources hand over a published decimal as a float (``json.loads`` of a provider's body, the
currencyconverter package in its default mode). ``published_rate`` turns one back into the decimal that was
published: ``repr`` of a float is the shortest decimal that reads back as the same float, and any decimal of at
most 15 significant digits survives the trip through a float unchanged, so ``repr`` gives back exactly what was
published (1.0811 → "1.0811", never 1.08109999999999995...). More digits than that could not have been
published as such and are refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Protocol, runtime_checkable

from domain.fx import FxRate, cross_rate, parse_rate
from domain.money import get_currency

# A decimal of at most this many significant digits reads back from a double unchanged (DBL_DIG).
FLOAT_EXACT_DIGITS = 15


class RateUnavailable(LookupError):
    """No rate for that pair on or shortly before that date (unknown currency, or the source's data ends)."""


@runtime_checkable
class FxRates(Protocol):
    def rate(self, base: str, quote: str, on: date) -> FxRate:
        """``base``→``quote`` as published on ``on`` or, on a day without publication, the last day before it
        (within the adapter's limit). Raises ``RateUnavailable``."""
        ...


def published_rate(value: object) -> Fraction:
    """A published rate handed over as str, int, Decimal or float, as an exact ratio (see the module docstring)."""
    if isinstance(value, bool):
        raise TypeError("a rate cannot be a bool")
    if isinstance(value, str):
        return parse_rate(value)
    if isinstance(value, int):
        return parse_rate(str(value))
    if isinstance(value, Decimal):
        if not value.is_finite() or value <= 0:
            raise ValueError(f"a rate must be finite and positive, got {value}")
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"a rate must be finite and positive, got {value!r}")
        text = repr(value)
        digits = Decimal(text).as_tuple().digits
        if "e" in text or "E" in text or len(digits) > FLOAT_EXACT_DIGITS:
            raise ValueError(f"{text} cannot be a published decimal rate (more than {FLOAT_EXACT_DIGITS} "
                             "significant digits or an exponent): ask the source for its text")
        return parse_rate(text)
    raise TypeError(f"a rate must be str, int, Decimal or float, got {type(value).__name__}")


class StaticRates:
    """A fixed table of rates. ``rate(base, quote, on)`` answers, in this order: the pair itself, its inverse, or
    a cross through ``pivot`` — each time the newest rate dated on or before ``on`` and at most ``max_age_days``
    older."""

    def __init__(self, rates: Iterable[FxRate], *, pivot: str = "EUR", max_age_days: int = 5) -> None:
        self._rates: dict[tuple[str, str], list[FxRate]] = {}
        for r in rates:
            self._rates.setdefault((r.base, r.quote), []).append(r)
        for series in self._rates.values():
            series.sort(key=lambda r: r.as_of)
        self.pivot = get_currency(pivot).code
        self.max_age_days = max_age_days

    def _direct(self, base: str, quote: str, on: date) -> FxRate | None:
        oldest = on - timedelta(days=self.max_age_days)
        for candidate, flip in (((base, quote), False), ((quote, base), True)):
            usable = [r for r in self._rates.get(candidate, []) if oldest <= r.as_of <= on]
            if usable:
                return usable[-1].inverse() if flip else usable[-1]
        return None

    def rate(self, base: str, quote: str, on: date) -> FxRate:
        base, quote = get_currency(base).code, get_currency(quote).code
        if base == quote:
            return FxRate.identity(base, on)
        found = self._direct(base, quote, on)
        if found is not None:
            return found
        to_base, to_quote = self._direct(self.pivot, base, on), self._direct(self.pivot, quote, on)
        if base != self.pivot and quote != self.pivot and to_base is not None and to_quote is not None:
            return cross_rate(to_base, to_quote)
        raise RateUnavailable(f"no {base}/{quote} rate on or within {self.max_age_days} days before {on}")
