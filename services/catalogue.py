"""The catalogue (products; prices created, revised into new versions, archived) and the tenant's billing policy.
Every change is one transaction with its outbox message; the rules are the domain's (domain/catalogue.py)."""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from activities.stores import catalogue as store
from contracts.auth import Principal
from contracts.catalogue import BillingPolicyUpdate, PriceCreate, PriceRevise, ProductCreate
from domain.catalogue import Catalogue, CatalogueRefused, Price, Product, make_price
from domain.dunning import DunningRefused
from domain.proration import ChangePolicy, ProrationRefused
from domain.subscription import TrialEndBehavior
from paysaga.db import tenant_tx
from services import idempotency
from services.context import AppContext
from services.errors import Conflict, ServiceError, Unprocessable, not_found
from services.ids import new_id

PRODUCTS_PATH = "/v1/products"
PRICES_PATH = "/v1/prices"
# Refusals about the request's content (422); the others (archived, not the latest, duplicates) are about state.
UNPROCESSABLE = {"invalid-id", "invalid-name", "invalid-amount", "amount-not-whole-minor-units", "amount-too-large",
                 "unknown-currency", "invalid-billing-scheme", "invalid-interval", "invalid-interval-count",
                 "invalid-version", "invalid-quantity", "unknown-product", "revision-changes-nothing"}

# What a price id looks like (contracts.catalogue.PriceId): anything else names no price.
PRICE_ID = re.compile(r"[A-Za-z0-9_-]{1,100}\.v[0-9]{1,6}")


def refusal(exc: CatalogueRefused | ProrationRefused) -> ServiceError:
    error = Unprocessable if exc.code in UNPROCESSABLE else Conflict
    return error(exc.code, "Catalogue refused", str(exc))


def product_json(row: Any) -> dict[str, Any]:
    return {"id": row["product_id"], "object": "product", "name": row["name"], "active": row["active"],
            "metadata": row["metadata"], "created_at": row["created_at"].isoformat(),
            "updated_at": row["updated_at"].isoformat()}


def price_json(price: Price, tax_code: str, created_at: Any) -> dict[str, Any]:
    return {"id": price.price_id, "object": "price", "family": price.family, "version": price.version,
            "product_id": price.product_id, "currency": price.currency, "billing_scheme": price.billing_scheme.value,
            "unit_amount": price.unit_amount_decimal, "unit_amount_micros": price.unit_amount.micros,
            "interval": price.interval.value, "interval_count": price.interval_count, "nickname": price.nickname,
            "supersedes": price.supersedes, "tax_code": tax_code, "active": price.active,
            "created_at": created_at.isoformat() if created_at else None}


def _price_row_json(row: Any) -> dict[str, Any]:
    return price_json(store.price_of(row), row["tax_code"], row["created_at"])


# --- products ---------------------------------------------------------------------------------------------------
async def create_product(ctx: AppContext, who: Principal, body: ProductCreate, key: str | None) -> idempotency.Answer:
    key = idempotency.require_key(key)
    try:
        product = Product(body.id or new_id("prod"), body.name)
    except CatalogueRefused as exc:
        raise refusal(exc) from exc

    async def act(_: str) -> idempotency.Answer:
        async with tenant_tx(ctx.pool, who.tenant_id) as conn:
            row = await store.insert_product(conn, who.tenant_id, product, body.metadata)
        if row is None:
            raise Conflict("duplicate-product", "Catalogue refused", f"Product {product.product_id} exists already.")
        return idempotency.Answer(201, product_json(row))

    return await idempotency.once(ctx, who, key, PRODUCTS_PATH, body.model_dump(mode="json"), product.product_id,
                                  act, final_errors=(Conflict,))


async def get_product(ctx: AppContext, who: Principal, product_id: str) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        row = await store.product_row(conn, product_id)
    if row is None:
        raise not_found("product", product_id)
    return product_json(row)


async def archive_product(ctx: AppContext, who: Principal, product_id: str) -> dict[str, Any]:
    """No longer offered, nor any of its prices; subscriptions on them carry on. Archiving twice answers it."""
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        if await store.product_row(conn, product_id, lock=True) is None:
            raise not_found("product", product_id)
        await store.archive_product(conn, who.tenant_id, product_id)
        row = await store.product_row(conn, product_id)
    return product_json(row)


async def list_products(ctx: AppContext, who: Principal, limit: int, starting_after: str | None,
                        active: bool | None) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        try:
            rows, more = await store.list_products(conn, limit, starting_after, active)
        except LookupError:
            raise Unprocessable("invalid-cursor", "Invalid cursor", f"No product {starting_after}.") from None
    data = [product_json(r) for r in rows]
    return {"object": "list", "data": data, "has_more": more, "next_cursor": data[-1]["id"] if more else None}


# --- prices -----------------------------------------------------------------------------------------------------
async def _catalogue_of(conn: asyncpg.Connection, product_id: str, family: str | None) -> Catalogue:
    """The part of the catalogue a rule needs: the product and the family's versions."""
    catalogue = Catalogue()
    product = await store.product_row(conn, product_id)
    if product is not None:
        catalogue = catalogue.add_product(store.product_of(product))
    if family is not None:
        rows = await store.family_rows(conn, family, lock=True)
        catalogue = Catalogue(catalogue.products, {r["price_id"]: store.price_of(r) for r in rows})
    return catalogue


async def create_price(ctx: AppContext, who: Principal, body: PriceCreate, key: str | None) -> idempotency.Answer:
    """Version 1 of a new family (`<family>.v1`)."""
    key = idempotency.require_key(key)
    family = body.family or new_id("price")
    try:
        price = make_price(family, body.product_id, body.currency.upper(), unit_amount=body.unit_amount,
                           billing_scheme=body.billing_scheme, interval=body.interval,
                           interval_count=body.interval_count, nickname=body.nickname)
    except CatalogueRefused as exc:
        raise refusal(exc) from exc

    async def act(_: str) -> idempotency.Answer:
        async with tenant_tx(ctx.pool, who.tenant_id) as conn:
            catalogue = await _catalogue_of(conn, body.product_id, family)
            try:
                catalogue.add_price(price)
            except CatalogueRefused as exc:
                raise refusal(exc) from exc
            row = await store.insert_price(conn, who.tenant_id, price, body.tax_code)
        if row is None:
            raise Conflict("duplicate-price", "Catalogue refused", f"Price family {family} exists already.")
        return idempotency.Answer(201, _price_row_json(row))

    return await idempotency.once(ctx, who, key, PRICES_PATH, body.model_dump(mode="json"), price.price_id, act,
                                  final_errors=(Conflict, Unprocessable))


async def revise_price(ctx: AppContext, who: Principal, price_id: str, body: PriceRevise,
                       key: str | None) -> idempotency.Answer:
    """Version n+1 of the family; version n (which must be the latest) is archived, and the subscriptions on it
    keep it until moved explicitly."""
    key = idempotency.require_key(key)
    if not PRICE_ID.fullmatch(price_id):  # no such price can exist: nothing to claim a key for
        raise not_found("price", price_id[:120])

    async def act(_: str) -> idempotency.Answer:
        async with tenant_tx(ctx.pool, who.tenant_id) as conn:
            old = await store.price_record(conn, price_id)
            if old is None:
                raise not_found("price", price_id)
            catalogue = await _catalogue_of(conn, old["product_id"], old["family"])
            try:
                if not catalogue.product(old["product_id"]).active:
                    raise CatalogueRefused("product-inactive", f"product {old['product_id']} is archived")
                _, new = catalogue.revise_price(
                    price_id, unit_amount=body.unit_amount, billing_scheme=body.billing_scheme,
                    interval=body.interval, interval_count=body.interval_count, nickname=body.nickname)
            except CatalogueRefused as exc:
                raise refusal(exc) from exc
            row = await store.insert_price(conn, who.tenant_id, new, old["tax_code"])
            if row is None:  # unreachable under the family's lock
                raise Conflict("not-latest-version", "Catalogue refused", f"{price_id} was revised meanwhile.")
            await store.archive_price(conn, who.tenant_id, price_id)
        return idempotency.Answer(201, _price_row_json(row))

    async def check(conn: asyncpg.Connection) -> None:
        if await store.price_record(conn, price_id) is None:  # refused before the key is taken
            raise not_found("price", price_id)

    return await idempotency.once(ctx, who, key, f"{PRICES_PATH}/{price_id}/revise", body.model_dump(mode="json"),
                                  new_id("rev"), act, final_errors=(Conflict, Unprocessable), check=check)


async def archive_price(ctx: AppContext, who: Principal, price_id: str) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        if await store.price_record(conn, price_id, lock=True) is None:
            raise not_found("price", price_id)
        await store.archive_price(conn, who.tenant_id, price_id)
        row = await store.price_record(conn, price_id)
    return _price_row_json(row)


async def get_price(ctx: AppContext, who: Principal, price_id: str) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        row = await store.price_record(conn, price_id)
    if row is None:
        raise not_found("price", price_id)
    return _price_row_json(row)


async def list_prices(ctx: AppContext, who: Principal, limit: int, starting_after: str | None, *,
                      product_id: str | None, family: str | None, currency: str | None,
                      active: bool | None) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        try:
            rows, more = await store.list_prices(conn, limit, starting_after, product_id=product_id, family=family,
                                                 currency=currency.upper() if currency else None, active=active)
        except LookupError:
            raise Unprocessable("invalid-cursor", "Invalid cursor", f"No price {starting_after}.") from None
    data = [_price_row_json(r) for r in rows]
    return {"object": "list", "data": data, "has_more": more, "next_cursor": data[-1]["id"] if more else None}


# --- the billing policy -----------------------------------------------------------------------------------------
def policy_json(policy: store.BillingPolicy) -> dict[str, Any]:
    change = policy.change_policy
    return {"object": "billing_policy",
            "change_policy": {"upgrades": change.upgrades.value, "downgrades": change.downgrades.value,
                              "lateral": change.lateral.value, "proration_behavior": change.proration_behavior.value},
            "trial_end_behavior": policy.trial_end_behavior.value, "dunning_policy": policy.dunning_policy,
            "updated_at": policy.updated_at.isoformat() if policy.updated_at else None}


async def get_policy(ctx: AppContext, who: Principal) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        return policy_json(await store.billing_policy(conn))


async def update_policy(ctx: AppContext, who: Principal, body: BillingPolicyUpdate) -> dict[str, Any]:
    """Only what was sent changes (`dunning_policy: null` goes back to the default dunning policy)."""
    sent = body.model_fields_set
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        current = await store.billing_policy(conn)
        change = current.change_policy
        if body.change_policy is not None:
            try:
                change = ChangePolicy(**body.change_policy.model_dump())
            except ProrationRefused as exc:
                raise refusal(exc) from exc
        if body.dunning_policy is not None:
            try:
                body.dunning_policy.to_domain()  # the ladder's own rules (order, limits), refused here, not later
            except DunningRefused as exc:
                raise Unprocessable(exc.code, "Dunning policy refused", str(exc)) from exc
        behavior = (TrialEndBehavior(body.trial_end_behavior) if body.trial_end_behavior
                    else current.trial_end_behavior)
        policy = store.BillingPolicy(change, behavior,
                                     (body.dunning_policy.model_dump(mode="json", exclude_none=True)
                                      if body.dunning_policy is not None else None)
                                     if "dunning_policy" in sent else current.dunning_policy)
        await store.save_billing_policy(conn, who.tenant_id, policy)
        return policy_json(await store.billing_policy(conn))
