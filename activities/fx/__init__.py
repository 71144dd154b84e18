"""FX rates behind one port (`base.FxRates`): the ECB reference rates (the embedded default), a fixed table, and
the rate a provider applied (read from its balance transaction). See each module's docstring.

`build_rates(settings)` is the port the worker's activities quote with: the ECB file of `PAYSAGA_FX_RATES_FILE`
(or the bundled copy), a rate at most `PAYSAGA_FX_MAX_AGE_DAYS` older than the day asked.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from activities.fx.base import FxRates, RateUnavailable, StaticRates, published_rate
from activities.fx.ecb import EcbRates
from activities.fx.stripe_rates import SettledAmounts, applied_rate, settled
from paysaga.settings import Settings

__all__ = ["EcbRates", "FxRates", "RateUnavailable", "SettledAmounts", "StaticRates", "applied_rate",
           "build_rates", "ecb_rates", "published_rate", "settled"]


@lru_cache(maxsize=8)
def ecb_rates(rates_file: Path | None, max_age_days: int) -> EcbRates:
    """One reader per file and age limit in a process: the file is parsed once, on first use."""
    return EcbRates(rates_file, max_fallback_days=max_age_days)


def build_rates(settings: Settings) -> FxRates:
    return ecb_rates(settings.fx_rates_file, settings.fx_max_age_days)
