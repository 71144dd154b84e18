"""FX rates behind one port (`base.FxRates`): the ECB reference rates (the embedded default), a fixed table, and
the rate a provider applied (read from its balance transaction). See each module's docstring."""

from __future__ import annotations

from activities.fx.base import FxRates, RateUnavailable, StaticRates, published_rate
from activities.fx.ecb import EcbRates
from activities.fx.stripe_rates import SettledAmounts, applied_rate, settled

__all__ = ["EcbRates", "FxRates", "RateUnavailable", "SettledAmounts", "StaticRates", "applied_rate",
           "published_rate", "settled"]
