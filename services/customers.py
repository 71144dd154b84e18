"""Customers: create, read and update."""

from __future__ import annotations

from typing import Any

import structlog

from activities.dunning_start import signal_payment_method
from activities.stores import customers as store
from activities.stores import payment_methods as methods
from contracts.auth import Principal
from contracts.customers import CustomerCreate, CustomerUpdate
from paysaga.db import tenant_tx
from services.context import AppContext
from services.errors import Unprocessable, not_found
from services.ids import new_id

log = structlog.get_logger("paysaga.billing")


def customer_json(row: Any) -> dict[str, Any]:
    return {"id": row["customer_id"], "object": "customer", "email": row["email"], "name": row["name"],
            "country": row["country"], "address": row["address"], "tax_ids": row["tax_ids"],
            "tax_exempt": row["tax_exempt"], "preferred_locale": row["preferred_locale"],
            "default_payment_method_id": row["default_payment_method_id"], "metadata": row["metadata"],
            "created_at": row["created_at"].isoformat()}


async def create(ctx: AppContext, who: Principal, body: CustomerCreate) -> dict[str, Any]:
    """The customer and its outbox message `billing.customer.created.v1`, in one transaction."""
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        row = await store.insert(
            conn, who.tenant_id, new_id("cus"), body.email, body.name, body.country, body.metadata,
            address=body.address.model_dump(exclude_none=True) if body.address else None,
            tax_ids=[t.model_dump() for t in body.tax_ids], tax_exempt=body.tax_exempt,
            preferred_locale=body.preferred_locale)
    return customer_json(row)


async def update(ctx: AppContext, who: Principal, customer_id: str, body: CustomerUpdate) -> dict[str, Any]:
    """Only what was sent changes. A default payment method must be one of the customer's, attached."""
    changes = body.model_dump(exclude_unset=True, mode="json")
    if "address" in changes and changes["address"] is not None:
        changes["address"] = {k: v for k, v in changes["address"].items() if v is not None}
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        method_id = changes.get("default_payment_method_id")
        if method_id is not None:
            method = await methods.fetch(conn, method_id)
            if method is None or method["customer_id"] != customer_id or method["detached_at"] is not None:
                raise Unprocessable("unknown-payment-method", "Unknown payment method",
                                    f"{method_id} is not an attached payment method of {customer_id}.")
        previous = await store.fetch(conn, customer_id)
        row = await store.update(conn, customer_id, changes)
    if row is None:
        raise not_found("customer", customer_id)
    if method_id is not None and previous is not None and previous["default_payment_method_id"] != method_id:
        # Dunning of the customer's unpaid subscription invoices waits for a new payment method: tell it.
        try:
            async with tenant_tx(ctx.pool, who.tenant_id) as conn:
                await signal_payment_method(ctx.temporal, conn, who.tenant_id, customer_id, method_id,
                                            f"pm_{customer_id}_{int(row['updated_at'].timestamp() * 1e6)}")
        except Exception as exc:  # the change is made; dunning also sees the method at its next retry
            log.warning("customer.payment_method_signal_failed", customer_id=customer_id, error=str(exc))
    return customer_json(row)


async def get(ctx: AppContext, who: Principal, customer_id: str) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        row = await store.fetch(conn, customer_id)
    if row is None:
        raise not_found("customer", customer_id)
    return customer_json(row)
