"""The catalogue: prices in one currency each, flat or per unit, month|year x count; a price change is a new
version that supersedes the old one, which stays resolvable for the subscriptions on it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.billing_cycle import Interval
from domain.catalogue import (
    BillingScheme,
    Catalogue,
    CatalogueRefused,
    Price,
    Product,
    make_price,
    parse_unit_amount,
    versioned_price_id,
)
from domain.money import Money


def catalogue() -> Catalogue:
    cat = Catalogue().add_product(Product("pro", "Pro plan"))
    for family, currency, amount in [("pro_monthly_eur", "EUR", "20.00"), ("pro_monthly_usd", "USD", "22.00"),
                                     ("pro_yearly_eur", "EUR", "200.00")]:
        interval = "year" if "yearly" in family else "month"
        cat = cat.add_price(make_price(family, "pro", currency, unit_amount=amount, interval=interval))
    return cat


def test_a_product_has_prices_in_several_currencies() -> None:
    cat = catalogue()
    assert [p.price_id for p in cat.offered("pro")] == ["pro_monthly_eur.v1", "pro_monthly_usd.v1",
                                                        "pro_yearly_eur.v1"]
    assert [p.price_id for p in cat.offered("pro", "usd")] == ["pro_monthly_usd.v1"]
    price = cat.price("pro_yearly_eur.v1")
    assert (price.currency, price.interval, price.interval_count, price.months) == ("EUR", Interval.YEAR, 1, 12)
    assert price.unit_amount == Money.parse("200.00", "EUR") and price.unit_amount_decimal == "200.00"


def test_unit_amounts_as_decimal_strings_or_micros() -> None:
    seat = make_price("seat", "pro", "EUR", unit_amount="0.012345")
    assert seat.unit_amount.micros == 12_345 and seat.unit_amount_decimal == "0.012345"
    assert make_price("seat", "pro", "EUR", unit_amount_micros=12_345) == seat
    assert make_price("jpy", "pro", "JPY", unit_amount="1200", billing_scheme="flat").unit_amount_decimal == "1200"
    assert parse_unit_amount("0", "USD").is_zero()


@pytest.mark.parametrize("kwargs, code", [
    ({"unit_amount": "-1"}, "invalid-amount"),
    ({"unit_amount": "1.0000001"}, "invalid-amount"),
    ({"unit_amount": "1e3"}, "invalid-amount"),
    ({"unit_amount": " 1"}, "invalid-amount"),
    ({"unit_amount": "10000000000000"}, "invalid-amount"),
    ({"unit_amount": "1000000000001"}, "amount-too-large"),
    ({"unit_amount_micros": -1}, "invalid-amount"),
    ({"unit_amount_micros": 1.5}, "invalid-amount"),
    ({"unit_amount": "1", "unit_amount_micros": 1}, "invalid-amount"),
    ({}, "invalid-amount"),
    ({"unit_amount": "1.005", "billing_scheme": "flat"}, "amount-not-whole-minor-units"),
    ({"unit_amount": "1", "billing_scheme": "tiered"}, "invalid-billing-scheme"),
    ({"unit_amount": "1", "interval": "week"}, "invalid-interval"),
    ({"unit_amount": "1", "interval_count": 0}, "invalid-interval-count"),
    ({"unit_amount": "1", "interval": "year", "interval_count": 4}, "invalid-interval-count"),
    ({"unit_amount": "1", "version": 2}, "invalid-version"),
])
def test_invalid_prices_are_refused_with_stable_codes(kwargs: dict, code: str) -> None:
    with pytest.raises(CatalogueRefused) as refused:
        make_price("f", "pro", "EUR", **kwargs)
    assert refused.value.code == code


def test_ids_currencies_and_names() -> None:
    for bad in ("", "a.b", "a b", "a:b", "x" * 101):
        with pytest.raises(CatalogueRefused) as refused:
            make_price(bad, "pro", "EUR", unit_amount="1")
        assert refused.value.code == "invalid-id"
    with pytest.raises(CatalogueRefused) as refused:
        make_price("f", "pro", "XXX", unit_amount="1")
    assert refused.value.code == "unknown-currency"
    with pytest.raises(CatalogueRefused) as refused:
        Product("pro", " ")
    assert refused.value.code == "invalid-name"
    assert versioned_price_id("pro_monthly_eur", 3) == "pro_monthly_eur.v3"


def test_flat_and_per_unit_amounts() -> None:
    flat = make_price("f", "pro", "EUR", unit_amount="20.00", billing_scheme="flat")
    seat = make_price("s", "pro", "EUR", unit_amount="7.5")
    assert flat.amount_for(1) == Money.parse("20.00", "EUR")
    assert seat.amount_for(12) == Money.parse("90.00", "EUR")
    with pytest.raises(CatalogueRefused) as refused:
        flat.amount_for(2)
    assert refused.value.code == "invalid-quantity"
    for bad in (0, -1, True, 1.0):
        with pytest.raises(CatalogueRefused):
            seat.amount_for(bad)  # type: ignore[arg-type]


def test_a_price_change_is_a_new_version_that_supersedes_the_old_one() -> None:
    cat, v2 = catalogue().revise_price("pro_monthly_eur.v1", unit_amount="25.00")
    assert (v2.price_id, v2.version, v2.supersedes) == ("pro_monthly_eur.v2", 2, "pro_monthly_eur.v1")
    assert v2.unit_amount == Money.parse("25.00", "EUR") and v2.active
    old = cat.price("pro_monthly_eur.v1")  # still resolvable, with its own amount, for the subscriptions on it
    assert old.unit_amount == Money.parse("20.00", "EUR") and not old.active
    assert cat.latest("pro_monthly_eur") == v2
    assert [p.version for p in cat.versions("pro_monthly_eur")] == [1, 2]
    assert [p.price_id for p in cat.offered("pro", "EUR")] == ["pro_monthly_eur.v2", "pro_yearly_eur.v1"]
    with pytest.raises(CatalogueRefused) as refused:
        cat.require_offered("pro_monthly_eur.v1")
    assert refused.value.code == "price-inactive" and "pro_monthly_eur.v2" in str(refused.value)
    assert cat.require_offered("pro_monthly_eur.v2") == v2
    # Only the latest version is revised, and a revision changes something; the currency never changes.
    with pytest.raises(CatalogueRefused) as refused:
        cat.revise_price("pro_monthly_eur.v1", unit_amount="30.00")
    assert refused.value.code == "not-latest-version"
    with pytest.raises(CatalogueRefused) as refused:
        cat.revise_price("pro_monthly_eur.v2", unit_amount="25.00")
    assert refused.value.code == "revision-changes-nothing"
    cat, v3 = cat.revise_price("pro_monthly_eur.v2", interval_count=3, nickname="Pro quarterly")
    assert (v3.currency, v3.unit_amount, v3.months, v3.label) == ("EUR", v2.unit_amount, 3, "Pro quarterly")


def test_versions_are_chained() -> None:
    eur = Money.parse("1", "EUR")
    with pytest.raises(CatalogueRefused) as refused:
        Price("f", 2, "pro", "EUR", BillingScheme.FLAT, eur, Interval.MONTH, supersedes="g.v1")
    assert refused.value.code == "invalid-version"
    with pytest.raises(CatalogueRefused):
        Price("f", 1, "pro", "EUR", BillingScheme.FLAT, eur, Interval.MONTH, supersedes="f.v0")
    assert Price("f", 2, "pro", "EUR", BillingScheme.FLAT, eur, Interval.MONTH, supersedes="f.v1").price_id == "f.v2"
    with pytest.raises(CatalogueRefused) as refused:
        Price("f", 1, "pro", "EUR", BillingScheme.FLAT, Money.parse("1", "USD"), Interval.MONTH)
    assert refused.value.code == "invalid-amount"


def test_the_catalogue_refuses_duplicates_unknowns_and_archived_products() -> None:
    cat = catalogue()
    with pytest.raises(CatalogueRefused) as refused:
        cat.add_product(Product("pro", "Again"))
    assert refused.value.code == "duplicate-product"
    with pytest.raises(CatalogueRefused) as refused:
        cat.add_price(make_price("pro_monthly_eur", "pro", "EUR", unit_amount="1"))
    assert refused.value.code == "duplicate-price"
    with pytest.raises(CatalogueRefused) as refused:
        cat.add_price(make_price("x", "nope", "EUR", unit_amount="1"))
    assert refused.value.code == "unknown-product"
    with pytest.raises(CatalogueRefused) as refused:
        cat.add_price(make_price("x", "pro", "EUR", unit_amount="1", version=2, supersedes="x.v1"))
    assert refused.value.code == "invalid-version"
    for lookup in (lambda: cat.price("nope.v1"), lambda: cat.versions("nope"), lambda: cat.product("nope")):
        with pytest.raises(CatalogueRefused):
            lookup()
    archived = cat.archive_product("pro")
    assert archived.offered("pro") == []
    assert archived.price("pro_monthly_eur.v1").active  # the price itself is untouched
    with pytest.raises(CatalogueRefused) as refused:
        archived.require_offered("pro_monthly_eur.v1")
    assert refused.value.code == "product-inactive"
    with pytest.raises(CatalogueRefused) as refused:
        archived.add_price(make_price("y", "pro", "EUR", unit_amount="1"))
    assert refused.value.code == "product-inactive"
    assert not cat.archive_price("pro_monthly_usd.v1").price("pro_monthly_usd.v1").active


@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=8))
def test_every_revision_keeps_the_chain_and_only_the_latest_is_offered(amounts: list[int]) -> None:
    cat = Catalogue().add_product(Product("p", "P")).add_price(make_price("f", "p", "EUR", unit_amount_micros=1))
    latest = cat.latest("f")
    for micros in amounts:
        if micros == latest.unit_amount.micros:
            continue
        cat, latest = cat.revise_price(latest.price_id, unit_amount_micros=micros)
    versions = cat.versions("f")
    assert [p.version for p in versions] == list(range(1, len(versions) + 1))
    assert all(p.supersedes == (None if p.version == 1 else f"f.v{p.version - 1}") for p in versions)
    assert [p.price_id for p in cat.offered("p")] == [latest.price_id]
    assert all(not p.active for p in versions[:-1])
