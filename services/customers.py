"""Customers: create and read."""

from __future__ import annotations

from typing import Any

from activities.stores import customers as store
from contracts.auth import Principal
from contracts.customers import CustomerCreate
from paysaga.db import tenant_tx
from services.context import AppContext
from services.errors import not_found
from services.ids import new_id


def customer_json(row: Any) -> dict[str, Any]:
    return {"id": row["customer_id"], "object": "customer", "email": row["email"], "name": row["name"],
            "country": row["country"], "metadata": row["metadata"], "created_at": row["created_at"].isoformat()}


async def create(ctx: AppContext, who: Principal, body: CustomerCreate) -> dict[str, Any]:
    """The customer and its outbox message `billing.customer.created.v1`, in one transaction."""
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        row = await store.insert(conn, who.tenant_id, new_id("cus"), body.email, body.name, body.country,
                                 body.metadata)
    return customer_json(row)


async def get(ctx: AppContext, who: Principal, customer_id: str) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        row = await store.fetch(conn, customer_id)
    if row is None:
        raise not_found("customer", customer_id)
    return customer_json(row)
