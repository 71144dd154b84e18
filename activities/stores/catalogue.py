"""Persistence of the catalogue (products, prices as versions of a family) and of a tenant's billing policy.

Rows come back as the domain's `Product` and `Price`, so every catalogue rule runs on them; a price row never
changes except to be archived (a trigger says so too)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

from activities.stores import outbox
from domain.catalogue import BillingScheme, Price, Product
from domain.money import Money
from domain.proration import ChangePolicy
from domain.subscription import TrialEndBehavior


def product_of(row: asyncpg.Record) -> Product:
    return Product(row["product_id"], row["name"], row["active"])


def price_of(row: asyncpg.Record) -> Price:
    return Price(row["family"], row["version"], row["product_id"], row["currency"],
                 BillingScheme(row["billing_scheme"]), Money(row["unit_amount_micros"], row["currency"]),
                 row["interval"], row["interval_count"], row["nickname"], row["supersedes"], row["active"])


# --- products ---------------------------------------------------------------------------------------------------
async def insert_product(conn: asyncpg.Connection, tenant_id: str, product: Product,
                         metadata: dict[str, Any]) -> asyncpg.Record | None:
    """None when a product of that id exists already."""
    row = await conn.fetchrow(
        """INSERT INTO paysaga.products (tenant_id, product_id, name, active, metadata) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT DO NOTHING RETURNING *""", tenant_id, product.product_id, product.name, product.active,
        metadata)
    if row is not None:
        await outbox.enqueue(conn, tenant_id, f"evt_product_{product.product_id}_created", "product.created",
                             {"product": {"id": product.product_id, "name": product.name}})
    return row


async def product_row(conn: asyncpg.Connection, product_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM paysaga.products WHERE product_id = $1{' FOR UPDATE' if lock else ''}", product_id)


async def archive_product(conn: asyncpg.Connection, tenant_id: str, product_id: str) -> asyncpg.Record | None:
    row = await conn.fetchrow(
        """UPDATE paysaga.products SET active = false, updated_at = now() WHERE product_id = $1 AND active
           RETURNING *""", product_id)
    if row is not None:
        await outbox.enqueue(conn, tenant_id, f"evt_product_{product_id}_archived", "product.archived",
                             {"product": {"id": product_id}})
    return row


async def list_products(conn: asyncpg.Connection, limit: int, starting_after: str | None,
                        active: bool | None) -> tuple[list[asyncpg.Record], bool]:
    """Newest first; LookupError if the cursor names no product."""
    cursor = None
    if starting_after:
        cursor = await conn.fetchrow("SELECT created_at, product_id FROM paysaga.products WHERE product_id = $1",
                                     starting_after)
        if cursor is None:
            raise LookupError(starting_after)
    rows = await conn.fetch(
        """SELECT * FROM paysaga.products
            WHERE ($1::timestamptz IS NULL OR (created_at, product_id) < ($1, $2))
              AND ($3::boolean IS NULL OR active = $3)
            ORDER BY created_at DESC, product_id DESC LIMIT $4""",
        cursor["created_at"] if cursor else None, cursor["product_id"] if cursor else None, active, limit + 1)
    return list(rows[:limit]), len(rows) > limit


# --- prices -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PriceRow:
    price: Price
    tax_code: str
    created_at: Any


def price_row_of(row: asyncpg.Record) -> PriceRow:
    return PriceRow(price_of(row), row["tax_code"], row["created_at"])


async def insert_price(conn: asyncpg.Connection, tenant_id: str, price: Price, tax_code: str) -> asyncpg.Record | None:
    """None when that version exists already."""
    row = await conn.fetchrow(
        """INSERT INTO paysaga.prices (tenant_id, price_id, family, version, product_id, currency, billing_scheme,
               unit_amount_micros, interval, interval_count, nickname, supersedes, tax_code, active)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
           ON CONFLICT DO NOTHING RETURNING *""",
        tenant_id, price.price_id, price.family, price.version, price.product_id, price.currency,
        price.billing_scheme.value, price.unit_amount.micros, price.interval.value, price.interval_count,
        price.nickname, price.supersedes, tax_code, price.active)
    if row is not None:
        await outbox.enqueue(conn, tenant_id, f"evt_price_{price.price_id}_created", "price.created",
                             {"price": {"id": price.price_id, "family": price.family, "version": price.version,
                                        "product_id": price.product_id, "currency": price.currency,
                                        "unit_amount_micros": price.unit_amount.micros,
                                        "supersedes": price.supersedes}})
    return row


async def price_record(conn: asyncpg.Connection, price_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM paysaga.prices WHERE price_id = $1{' FOR UPDATE' if lock else ''}", price_id)


async def prices(conn: asyncpg.Connection, price_ids: Iterable[str]) -> dict[str, Price]:
    """Any versions, archived or not (what existing subscriptions resolve their price with)."""
    rows = await conn.fetch("SELECT * FROM paysaga.prices WHERE price_id = ANY($1::text[])", list(set(price_ids)))
    return {r["price_id"]: price_of(r) for r in rows}


async def tax_codes(conn: asyncpg.Connection, price_ids: Iterable[str]) -> dict[str, str]:
    rows = await conn.fetch("SELECT price_id, tax_code FROM paysaga.prices WHERE price_id = ANY($1::text[])",
                            list(set(price_ids)))
    return {r["price_id"]: r["tax_code"] for r in rows}


async def family_rows(conn: asyncpg.Connection, family: str, *, lock: bool = False) -> list[asyncpg.Record]:
    """Every version of a family, oldest first (locked: a revision is made from the latest, one at a time)."""
    return list(await conn.fetch(
        f"SELECT * FROM paysaga.prices WHERE family = $1 ORDER BY version{' FOR UPDATE' if lock else ''}", family))


async def archive_price(conn: asyncpg.Connection, tenant_id: str, price_id: str) -> asyncpg.Record | None:
    row = await conn.fetchrow(
        "UPDATE paysaga.prices SET active = false WHERE price_id = $1 AND active RETURNING *", price_id)
    if row is not None:
        await outbox.enqueue(conn, tenant_id, f"evt_price_{price_id}_archived", "price.archived",
                             {"price": {"id": price_id}})
    return row


async def list_prices(conn: asyncpg.Connection, limit: int, starting_after: str | None, *,
                      product_id: str | None, family: str | None, currency: str | None,
                      active: bool | None) -> tuple[list[asyncpg.Record], bool]:
    """By id (family, then version); LookupError if the cursor names no price."""
    if starting_after and await price_record(conn, starting_after) is None:
        raise LookupError(starting_after)
    rows = await conn.fetch(
        """SELECT * FROM paysaga.prices
            WHERE ($1::text IS NULL OR (family, version) > (SELECT family, version FROM paysaga.prices
                                                            WHERE price_id = $1))
              AND ($2::text IS NULL OR product_id = $2) AND ($3::text IS NULL OR family = $3)
              AND ($4::text IS NULL OR currency = $4) AND ($5::boolean IS NULL OR active = $5)
            ORDER BY family, version LIMIT $6""",
        starting_after, product_id, family, currency, active, limit + 1)
    return list(rows[:limit]), len(rows) > limit


# --- the tenant's billing policy --------------------------------------------------------------------------------
@dataclass(frozen=True)
class BillingPolicy:
    change_policy: ChangePolicy
    trial_end_behavior: TrialEndBehavior
    dunning_policy: dict[str, Any] | None
    updated_at: Any = None


def _change_policy(value: dict[str, Any]) -> ChangePolicy:
    return ChangePolicy(**{k: v for k, v in value.items()
                           if k in ("upgrades", "downgrades", "lateral", "proration_behavior")})


async def billing_policy(conn: asyncpg.Connection) -> BillingPolicy:
    """The transaction's tenant's policy; the defaults when it never set one."""
    row = await conn.fetchrow("SELECT * FROM paysaga.tenant_billing_policies")
    if row is None:
        return BillingPolicy(ChangePolicy(), TrialEndBehavior.PAUSE, None)
    return BillingPolicy(_change_policy(row["change_policy"]), TrialEndBehavior(row["trial_end_behavior"]),
                         row["dunning_policy"], row["updated_at"])


async def dunning_policy(conn: asyncpg.Connection) -> dict[str, Any] | None:
    """The tenant's dunning policy as stored (a JSON object; None: the default policy)."""
    return await conn.fetchval("SELECT dunning_policy FROM paysaga.tenant_billing_policies")


async def save_billing_policy(conn: asyncpg.Connection, tenant_id: str, policy: BillingPolicy) -> asyncpg.Record:
    change = policy.change_policy
    row = await conn.fetchrow(
        """INSERT INTO paysaga.tenant_billing_policies (tenant_id, change_policy, trial_end_behavior, dunning_policy)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (tenant_id) DO UPDATE SET change_policy = EXCLUDED.change_policy,
               trial_end_behavior = EXCLUDED.trial_end_behavior, dunning_policy = EXCLUDED.dunning_policy,
               updated_at = now()
           RETURNING *""",
        tenant_id, {"upgrades": change.upgrades.value, "downgrades": change.downgrades.value,
                    "lateral": change.lateral.value, "proration_behavior": change.proration_behavior.value},
        policy.trial_end_behavior.value, policy.dunning_policy)
    event_id = f"evt_billing_policy_{tenant_id}_{int(row['updated_at'].timestamp() * 1e6)}"
    await outbox.enqueue(conn, tenant_id, event_id, "billing_policy.updated",
                         {"change_policy": row["change_policy"], "trial_end_behavior": row["trial_end_behavior"],
                          "dunning_policy": row["dunning_policy"]})
    return row
