"""The catalogue: products and their recurring prices, each price a numbered version of a price family.

Products and prices
-------------------
A ``Product`` is what is sold ("Pro plan"). A ``Price`` says how it is billed: one currency, an interval (``month``
or ``year``) times ``interval_count`` (at most three years), and a billing scheme:

- ``flat``: ``unit_amount`` per period whatever the quantity (the quantity must be 1);
- ``per_unit`` (per seat): ``unit_amount`` x quantity per period.

A product has any number of prices, in as many currencies as it is sold in. ``unit_amount`` is a ``Money`` in
micro-units; it is given either as a decimal string ("12.50", at most six decimals) or as an integer of micros.
A flat price is a whole number of the currency's minor units (it is what an invoice line charges); a per-unit
price may carry up to six decimals (0.0125 EUR per seat), and the line that multiplies it by a quantity is rounded
once, half-even, to the minor unit (see ``domain.billing_line``).

Versions
--------
A price never changes. Changing what a price family costs makes a NEW version: ``revise_price`` creates version
``n + 1`` with the id ``<family>.v<n+1>`` and ``supersedes = <family>.v<n>``, and archives version ``n`` (no longer
offered to new subscriptions). A subscription holds the ``Price`` it was sold and keeps it, archived or not,
until someone moves it explicitly (``Subscription.change`` with the version ``Catalogue.latest(family)`` returns).
``require_offered`` is the check for anything new (a new subscription, a change to another price): the price and
its product must both be active.

Refusals (``CatalogueRefused.code``): ``invalid-id``, ``invalid-name``, ``invalid-amount``,
``amount-not-whole-minor-units``, ``amount-too-large``, ``unknown-currency``, ``invalid-billing-scheme``,
``invalid-interval``, ``invalid-interval-count``, ``invalid-version``, ``invalid-quantity``,
``duplicate-product``, ``duplicate-price``, ``unknown-product``, ``unknown-price``, ``product-inactive``,
``price-inactive``, ``not-latest-version``, ``revision-changes-nothing``.

Public API
----------
``BillingScheme``, ``Product``, ``Price`` (``price_id``, ``months``, ``unit_amount_decimal``, ``amount_for``),
``make_price(...)``, ``parse_unit_amount``, ``versioned_price_id``, ``check_quantity``, ``Catalogue``
(``add_product``, ``add_price``, ``revise_price``, ``archive_price``, ``archive_product``, ``price``,
``product``, ``versions``, ``latest``, ``offered``, ``require_offered``), ``CatalogueRefused``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import StrEnum

from domain.billing_cycle import BillingCycleRefused, Interval, interval_months, parse_interval
from domain.money import MICRO_DIGITS, MICROS_PER_UNIT, Money, MoneyError, get_currency
from domain.refusal import Refused

# Ids travel in URLs and in composed keys ("<family>.v<n>"), so they are plain: no dots, spaces or colons.
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,100}")
# Non-negative, plain digits, at most six decimals (one micro-unit); at most 10^12 whole units.
_AMOUNT_RE = re.compile(r"([0-9]{1,13})(?:\.([0-9]{1,6}))?")
MAX_UNIT_MICROS = 10**12 * MICROS_PER_UNIT


class CatalogueRefused(Refused):
    """A catalogue rule refused the request."""


class BillingScheme(StrEnum):
    FLAT = "flat"
    PER_UNIT = "per_unit"


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise CatalogueRefused("invalid-id", f"{what} is 1-100 of A-Z a-z 0-9 _ -")
    return value


def versioned_price_id(family: str, version: int) -> str:
    """The id of version ``version`` of a price family: ``pro_monthly_eur.v2``."""
    return f"{_check_id(family, 'price family')}.v{version}"


def parse_unit_amount(text: str, currency: str) -> Money:
    """A non-negative decimal string with at most six decimals, exactly, as micro-units of ``currency``."""
    match = _AMOUNT_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise CatalogueRefused("invalid-amount", 'unit_amount is a decimal string such as "12.50" (at most six '
                                                 'decimals, no sign)')
    whole, fraction = match.group(1), match.group(2) or ""
    return _money(int(whole) * MICROS_PER_UNIT + int(fraction.ljust(MICRO_DIGITS, "0")), currency)


def _money(micros: int, currency: str) -> Money:
    try:
        get_currency(currency)
    except MoneyError:
        raise CatalogueRefused("unknown-currency", f"unknown currency {currency!r}") from None
    if not isinstance(micros, int) or isinstance(micros, bool) or micros < 0:
        raise CatalogueRefused("invalid-amount", "unit_amount_micros is a non-negative integer")
    if micros > MAX_UNIT_MICROS:
        raise CatalogueRefused("amount-too-large", "a unit amount is at most 10^12 of the currency")
    return Money(micros, currency)


def check_quantity(scheme: BillingScheme, quantity: object) -> int:
    """A quantity a price of ``scheme`` can bill: a whole number >= 1, exactly 1 for a flat price."""
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
        raise CatalogueRefused("invalid-quantity", "quantity is a whole number, at least 1")
    if scheme is BillingScheme.FLAT and quantity != 1:
        raise CatalogueRefused("invalid-quantity", "a flat price is billed once per period: quantity is 1")
    return quantity


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    active: bool = True

    def __post_init__(self) -> None:
        _check_id(self.product_id, "product_id")
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > 250:
            raise CatalogueRefused("invalid-name", "a product has a name of 1-250 characters")


@dataclass(frozen=True)
class Price:
    """One version of a price family. Build it with ``make_price`` (which parses what the API sends)."""

    family: str
    version: int
    product_id: str
    currency: str
    billing_scheme: BillingScheme
    unit_amount: Money
    interval: Interval
    interval_count: int = 1
    nickname: str = ""
    supersedes: str | None = None
    active: bool = True

    def __post_init__(self) -> None:
        _check_id(self.family, "price family")
        _check_id(self.product_id, "product_id")
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise CatalogueRefused("invalid-version", "a price version is a whole number, at least 1")
        if (self.version == 1) != (self.supersedes is None) or (
                self.supersedes is not None and self.supersedes != versioned_price_id(self.family, self.version - 1)):
            raise CatalogueRefused("invalid-version", "version n > 1 supersedes version n - 1 of its family; "
                                                      "version 1 supersedes nothing")
        try:
            object.__setattr__(self, "currency", get_currency(self.currency).code)
            object.__setattr__(self, "billing_scheme", BillingScheme(self.billing_scheme))
        except MoneyError:
            raise CatalogueRefused("unknown-currency", f"unknown currency {self.currency!r}") from None
        except ValueError:
            raise CatalogueRefused("invalid-billing-scheme", "billing_scheme is flat or per_unit") from None
        try:
            object.__setattr__(self, "interval", parse_interval(self.interval))
            interval_months(self.interval, self.interval_count)
        except BillingCycleRefused as refused:
            raise CatalogueRefused(refused.code, refused.message) from None
        if not isinstance(self.unit_amount, Money) or self.unit_amount.currency != self.currency:
            raise CatalogueRefused("invalid-amount", f"unit_amount is a {self.currency} amount")
        _money(self.unit_amount.micros, self.currency)
        minor = get_currency(self.currency).micros_per_minor
        if self.billing_scheme is BillingScheme.FLAT and self.unit_amount.micros % minor:
            raise CatalogueRefused("amount-not-whole-minor-units",
                                   f"a flat price is a whole number of {self.currency} minor units")
        if not isinstance(self.nickname, str) or len(self.nickname) > 250:
            raise CatalogueRefused("invalid-name", "a nickname is at most 250 characters")

    @property
    def price_id(self) -> str:
        return versioned_price_id(self.family, self.version)

    @property
    def months(self) -> int:
        """Length of one billing period in months (a year is 12)."""
        return interval_months(self.interval, self.interval_count)

    @property
    def unit_amount_decimal(self) -> str:
        """The unit amount as a decimal string, as an invoice line takes it ("12.50", "0.0125")."""
        return self.unit_amount.to_decimal_string()

    @property
    def label(self) -> str:
        return self.nickname or self.family

    def amount_for(self, quantity: int) -> Money:
        """What one full period costs for ``quantity``, exactly (per-unit prices may leave sub-minor micros)."""
        quantity = check_quantity(self.billing_scheme, quantity)
        per = 1 if self.billing_scheme is BillingScheme.FLAT else quantity
        try:
            return self.unit_amount * per
        except MoneyError:
            raise CatalogueRefused("amount-too-large", "quantity x unit amount is too large") from None


def make_price(family: str, product_id: str, currency: str, *, unit_amount: str | None = None,
               unit_amount_micros: int | None = None, billing_scheme: BillingScheme | str = BillingScheme.PER_UNIT,
               interval: Interval | str = Interval.MONTH, interval_count: int = 1, nickname: str = "",
               version: int = 1, supersedes: str | None = None) -> Price:
    """A price from what the API sends: exactly one of ``unit_amount`` (decimal string) or ``unit_amount_micros``."""
    if (unit_amount is None) == (unit_amount_micros is None):
        raise CatalogueRefused("invalid-amount", "give unit_amount or unit_amount_micros, not both or neither")
    try:
        code = get_currency(currency).code
    except MoneyError:
        raise CatalogueRefused("unknown-currency", f"unknown currency {currency!r}") from None
    amount = (parse_unit_amount(unit_amount, code) if unit_amount is not None
              else _money(unit_amount_micros, code))  # type: ignore[arg-type]
    try:
        scheme = BillingScheme(billing_scheme)
    except ValueError:
        raise CatalogueRefused("invalid-billing-scheme", "billing_scheme is flat or per_unit") from None
    try:
        parsed_interval = parse_interval(interval)
    except BillingCycleRefused as refused:
        raise CatalogueRefused(refused.code, refused.message) from None
    return Price(family, version, product_id, code, scheme, amount, parsed_interval, interval_count, nickname,
                 supersedes)


@dataclass(frozen=True)
class Catalogue:
    """A tenant's products and prices (every version of every family). Immutable: changes return a new one."""

    products: dict[str, Product] = field(default_factory=dict)
    prices: dict[str, Price] = field(default_factory=dict)

    # --- reading --------------------------------------------------------------------------------------------
    def product(self, product_id: str) -> Product:
        if product_id not in self.products:
            raise CatalogueRefused("unknown-product", f"no product {product_id}")
        return self.products[product_id]

    def price(self, price_id: str) -> Price:
        """Any version, archived or not: what an existing subscription resolves its price with."""
        if price_id not in self.prices:
            raise CatalogueRefused("unknown-price", f"no price {price_id}")
        return self.prices[price_id]

    def versions(self, family: str) -> list[Price]:
        found = sorted((p for p in self.prices.values() if p.family == family), key=lambda p: p.version)
        if not found:
            raise CatalogueRefused("unknown-price", f"no price family {family}")
        return found

    def latest(self, family: str) -> Price:
        """The newest version of a family: where an explicit move of old subscriptions would take them."""
        return self.versions(family)[-1]

    def offered(self, product_id: str, currency: str | None = None) -> list[Price]:
        """The active prices of an active product (in one currency if given), ordered by id."""
        product = self.product(product_id)
        if not product.active:
            return []
        code = get_currency(currency).code if currency is not None else None
        return sorted((p for p in self.prices.values()
                       if p.product_id == product_id and p.active and code in (None, p.currency)),
                      key=lambda p: p.price_id)

    def require_offered(self, price_id: str) -> Price:
        """The price if something new may use it: it and its product are active."""
        price = self.price(price_id)
        if not price.active:
            raise CatalogueRefused("price-inactive", f"{price_id} is archived: new subscriptions and changes use "
                                                     f"{self.latest(price.family).price_id} or another active price")
        if not self.product(price.product_id).active:
            raise CatalogueRefused("product-inactive", f"product {price.product_id} is archived")
        return price

    # --- changing -------------------------------------------------------------------------------------------
    def add_product(self, product: Product) -> Catalogue:
        if product.product_id in self.products:
            raise CatalogueRefused("duplicate-product", f"product {product.product_id} already exists")
        return replace(self, products={**self.products, product.product_id: product})

    def add_price(self, price: Price) -> Catalogue:
        """Add the first version of a new family (later versions come from ``revise_price``)."""
        if not self.product(price.product_id).active:
            raise CatalogueRefused("product-inactive", f"product {price.product_id} is archived")
        if price.price_id in self.prices or any(p.family == price.family for p in self.prices.values()):
            raise CatalogueRefused("duplicate-price", f"price family {price.family} already exists: revise it")
        if price.version != 1:
            raise CatalogueRefused("invalid-version", "a new price family starts at version 1")
        return replace(self, prices={**self.prices, price.price_id: price})

    def revise_price(self, price_id: str, *, unit_amount: str | None = None, unit_amount_micros: int | None = None,
                     billing_scheme: BillingScheme | str | None = None, interval: Interval | str | None = None,
                     interval_count: int | None = None, nickname: str | None = None) -> tuple[Catalogue, Price]:
        """A new version of the family of ``price_id`` (which must be its latest), with the given changes; the
        old version is archived but stays resolvable, and the subscriptions on it keep it."""
        old = self.price(price_id)
        if self.latest(old.family).price_id != price_id:
            raise CatalogueRefused("not-latest-version", f"{price_id} was superseded by "
                                                         f"{self.latest(old.family).price_id}: revise that")
        if unit_amount is None and unit_amount_micros is None:
            unit_amount_micros = old.unit_amount.micros
        new = make_price(old.family, old.product_id, old.currency, unit_amount=unit_amount,
                         unit_amount_micros=unit_amount_micros,
                         billing_scheme=old.billing_scheme if billing_scheme is None else billing_scheme,
                         interval=old.interval if interval is None else interval,
                         interval_count=old.interval_count if interval_count is None else interval_count,
                         nickname=old.nickname if nickname is None else nickname,
                         version=old.version + 1, supersedes=old.price_id)
        if (new.unit_amount, new.billing_scheme, new.interval, new.interval_count, new.nickname) == (
                old.unit_amount, old.billing_scheme, old.interval, old.interval_count, old.nickname):
            raise CatalogueRefused("revision-changes-nothing", "a new version must differ from the one it replaces")
        prices = {**self.prices, old.price_id: replace(old, active=False), new.price_id: new}
        return replace(self, prices=prices), new

    def archive_price(self, price_id: str) -> Catalogue:
        """No longer offered; subscriptions on it carry on."""
        price = self.price(price_id)
        return replace(self, prices={**self.prices, price_id: replace(price, active=False)})

    def archive_product(self, product_id: str) -> Catalogue:
        """None of its prices is offered any more; subscriptions on them carry on."""
        product = self.product(product_id)
        return replace(self, products={**self.products, product_id: replace(product, active=False)})
