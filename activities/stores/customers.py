"""Customers: who pays, and the outbox messages that announce a new one and a change."""

from __future__ import annotations

from typing import Any

import asyncpg

from activities.stores import outbox

UPDATABLE = ("email", "name", "address", "tax_ids", "tax_exempt", "preferred_locale", "default_payment_method_id",
             "metadata")


async def insert(conn: asyncpg.Connection, tenant_id: str, customer_id: str, email: str | None, name: str | None,
                 country: str | None, metadata: dict[str, Any], *, address: dict[str, Any] | None = None,
                 tax_ids: list[dict[str, Any]] | None = None, tax_exempt: str = "none",
                 preferred_locale: str | None = None) -> asyncpg.Record:
    country = country or (address or {}).get("country")
    row = await conn.fetchrow(
        """INSERT INTO paysaga.customers (customer_id, tenant_id, email, name, country, metadata, address, tax_ids,
               tax_exempt, preferred_locale)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *""",
        customer_id, tenant_id, email, name, country, metadata, address, tax_ids or [], tax_exempt,
        preferred_locale,
    )
    await outbox.enqueue(conn, tenant_id, f"evt_{customer_id}_created", "customer.created",
                         {"customer": {"id": customer_id, "country": country}})
    return row


async def update(conn: asyncpg.Connection, customer_id: str, changes: dict[str, Any]) -> asyncpg.Record | None:
    """Change the given columns (a new address also moves the customer's country) and announce it: one outbox
    message per change, named by the change's time."""
    sets = {k: v for k, v in changes.items() if k in UPDATABLE}
    if sets.get("address"):
        sets["country"] = sets["address"]["country"]
    if not sets:
        return await fetch(conn, customer_id)
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(sets, start=2))
    row = await conn.fetchrow(
        f"UPDATE paysaga.customers SET {assignments}, updated_at = now() WHERE customer_id = $1 RETURNING *",
        customer_id, *sets.values())
    if row is not None:
        event_id = f"evt_{customer_id}_updated_{int(row['updated_at'].timestamp() * 1e6)}"
        await outbox.enqueue(conn, str(row["tenant_id"]), event_id, "customer.updated",
                             {"customer": {"id": customer_id, "changed": sorted(sets)}})
    return row


async def fetch(conn: asyncpg.Connection, customer_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM paysaga.customers WHERE customer_id = $1", customer_id)


async def exists(conn: asyncpg.Connection, customer_id: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM paysaga.customers WHERE customer_id = $1", customer_id))
