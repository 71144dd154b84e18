"""The rate a provider actually applied, read from Stripe's balance transaction.

When a charge in one currency lands in a balance of another, Stripe's balance transaction carries the converted
amounts (``amount``, ``fee``, ``net`` in the balance's ``currency``, minor units) and ``exchange_rate``: the amount
in the charge's currency times ``exchange_rate`` is the amount in the balance's currency (10.00 EUR landing as
12.34 USD has ``exchange_rate`` 1.234). Without a conversion ``exchange_rate`` is null.

The body does not name the charge's currency unless ``source`` is expanded (then ``source.currency``); otherwise
the caller says it (it knows what it charged). ``exchange_rate`` is a JSON number: parse the body with
``json.loads(body, parse_float=Decimal)`` to keep its text exactly; a float (the SDK's objects, plain
``json.loads``) is turned back into the published decimal by ``published_rate``.

    applied_rate(bt, presentment_currency=None) -> FxRate | None   the rate, dated by the transaction's creation day
    settled(bt) -> SettledAmounts                                    amount, fee and net as Money

Rates collected this way can be served through ``StaticRates`` (base.py) as the provider's own rate table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from activities.fx.base import published_rate
from domain.fx import FxRate
from domain.money import Money


@dataclass(frozen=True)
class SettledAmounts:
    """What a balance transaction moved in the balance's currency."""

    balance_transaction_id: str
    gross: Money
    fee: Money
    net: Money
    created: datetime
    available_on: date


def _field(bt: Mapping[str, Any], name: str) -> Any:
    try:
        return bt[name]
    except KeyError:
        raise ValueError(f"a balance transaction has no {name!r}") from None


def _minor(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"a balance transaction's {name} must be an integer of minor units, got {value!r}")
    return value


def _instant(value: Any, name: str) -> datetime:
    return datetime.fromtimestamp(_minor(value, name), UTC)


def settled(bt: Mapping[str, Any]) -> SettledAmounts:
    currency = str(_field(bt, "currency")).upper()
    gross, fee, net = (Money.from_minor_units(_minor(_field(bt, n), n), currency) for n in ("amount", "fee", "net"))
    if gross - fee != net:
        raise ValueError(f"balance transaction {bt.get('id')}: amount - fee != net")
    return SettledAmounts(str(_field(bt, "id")), gross, fee, net, _instant(_field(bt, "created"), "created"),
                          _instant(_field(bt, "available_on"), "available_on").date())


def applied_rate(bt: Mapping[str, Any], presentment_currency: str | None = None) -> FxRate | None:
    """The rate Stripe converted at (presentment → balance currency), or None when nothing was converted."""
    raw = bt.get("exchange_rate")
    if raw is None:
        return None
    source = bt.get("source")
    expanded = source.get("currency") if isinstance(source, Mapping) else None
    if presentment_currency is None and expanded is None:
        raise ValueError("the balance transaction does not say which currency was converted: expand source or "
                         "pass presentment_currency")
    if presentment_currency is not None and expanded is not None and presentment_currency.upper() != str(
            expanded).upper():
        raise ValueError(f"presentment_currency {presentment_currency} differs from the source's {expanded}")
    base = (presentment_currency or str(expanded)).upper()
    quote = str(_field(bt, "currency")).upper()
    created = _instant(_field(bt, "created"), "created").date()
    return FxRate(base, quote, published_rate(raw), created,
                  f"rate applied by stripe on balance transaction {_field(bt, 'id')}")
