"""Payment methods as entities: attach (described by the provider), list, read, detach. Tokens only.

- The provider describes each token on attach (brand, last4, expiry, fingerprint, issuing country); an unknown
  token is 422 `unknown-payment-method`, a provider that cannot answer is 503 `provider-unavailable`.
- Duplicates: a customer holds at most one *active* method per card fingerprint (a partial unique index).
  Attaching a card the customer already has answers the existing method with `duplicate: true` (the new token is
  not stored); after a detach the same card can be attached again as a new method.
- `provider_token` is returned: it is the reference the client sent, usable only with the tenant's provider
  secret key, and it tells which token was kept when a duplicate was folded.
- `expired` is computed at read time against today's date (UTC), by `domain.instruments.is_expired`.
- Detach is idempotent and final: payments refuse a detached method and the row is frozen by a trigger.
- Every use case writes an audit row in the same transaction as its read or write.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from activities.providers.base import CardDetails, ProviderUnavailable
from activities.stores import customers, outbox
from activities.stores import payment_methods as store
from contracts.auth import Principal
from contracts.payment_methods import PaymentMethodCreate
from domain.instruments import is_expired
from paysaga.db import tenant_tx
from services import audit
from services.context import AppContext
from services.errors import Conflict, Unavailable, Unprocessable, not_found
from services.ids import new_id


def payment_method_json(row: asyncpg.Record, today: datetime | None = None) -> dict[str, Any]:
    day = (today or datetime.now(UTC)).date()
    return {
        "id": row["payment_method_id"], "object": "payment_method", "customer_id": row["customer_id"],
        "provider": row["provider"], "provider_token": row["provider_token"], "brand": row["brand"],
        "last4": row["last4"], "exp_month": row["exp_month"], "exp_year": row["exp_year"],
        "expired": is_expired(row["exp_month"], row["exp_year"], day), "fingerprint": row["fingerprint"],
        "country": row["country"].strip() if row["country"] else None,
        "detached_at": row["detached_at"].isoformat() if row["detached_at"] else None,
        "created_at": row["created_at"].isoformat(),
    }


def _event_view(row: asyncpg.Record) -> dict[str, Any]:
    """What other services may learn of a payment method: display data, never the token."""
    return {k: v for k, v in payment_method_json(row).items() if k != "provider_token"}


async def describe(ctx: AppContext, token: str) -> CardDetails:
    async with ctx.provider() as provider:
        try:
            return await provider.describe_payment_method(token)
        except ProviderUnavailable as exc:
            raise Unavailable("provider-unavailable", "Payment provider unavailable",
                              "The payment provider did not answer; retry later.") from exc
        except ValueError as exc:
            raise Unprocessable("unknown-payment-method", "Unknown payment method", str(exc)) from exc


async def _customer_exists(conn: asyncpg.Connection, customer_id: str) -> None:
    if not await customers.exists(conn, customer_id):
        raise not_found("customer", customer_id)


async def attach(ctx: AppContext, who: Principal, customer_id: str, body: PaymentMethodCreate
                 ) -> tuple[dict[str, Any], bool]:
    """(the method, whether it was a duplicate of one the customer has)."""
    card = await describe(ctx, body.token)  # a provider call: outside the transaction
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        await _customer_exists(conn, customer_id)
        for _ in range(3):  # the existing duplicate may be detached between the two statements: try again
            row = await store.insert_unless_duplicate(conn, new_id("pm"), who.tenant_id, customer_id,
                                                      ctx.settings.provider, body.token, card)
            duplicate = row is None
            if row is None:
                row = await store.active_by_fingerprint(conn, customer_id, card.fingerprint)
            if row is not None:
                break
        else:
            raise Conflict("payment-method-conflict", "Concurrent change", "Retry the request.")
        await audit.record(conn, who, "payment_method.attach", "payment_method", row["payment_method_id"],
                           customer_id=customer_id, duplicate=duplicate)
        if not duplicate:
            await outbox.enqueue(conn, who.tenant_id, f"evt_{row['payment_method_id']}_attached",
                                 "payment_method.attached", {"payment_method": _event_view(row)})
    return {**payment_method_json(row), "duplicate": duplicate}, duplicate


async def list_for_customer(ctx: AppContext, who: Principal, customer_id: str, include_detached: bool
                            ) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        await _customer_exists(conn, customer_id)
        rows = await store.list_for_customer(conn, customer_id, include_detached)
        await audit.record(conn, who, "payment_method.list", "customer", customer_id,
                           include_detached=include_detached, payment_method_ids=[r["payment_method_id"] for r in rows])
    return {"object": "list", "data": [payment_method_json(r) for r in rows], "has_more": False}


async def get(ctx: AppContext, who: Principal, payment_method_id: str) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        row = await _load(conn, payment_method_id)
        await audit.record(conn, who, "payment_method.read", "payment_method", payment_method_id,
                           customer_id=row["customer_id"])
    return payment_method_json(row)


async def detach(ctx: AppContext, who: Principal, payment_method_id: str) -> dict[str, Any]:
    """Idempotent: detaching a detached method answers it again (`already_detached` in the audit row)."""
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        row = await store.detach(conn, payment_method_id)
        already = row is None
        if row is None:
            row = await _load(conn, payment_method_id)
        else:
            await outbox.enqueue(conn, who.tenant_id, f"evt_{payment_method_id}_detached",
                                 "payment_method.detached", {"payment_method": _event_view(row)})
        await audit.record(conn, who, "payment_method.detach", "payment_method", payment_method_id,
                           customer_id=row["customer_id"], already_detached=already)
    return payment_method_json(row)


async def chargeable(conn: asyncpg.Connection, payment_method_id: str, customer_id: str) -> None:
    """Refuse a method that is unknown, another customer's, or detached."""
    row = await store.fetch(conn, payment_method_id)
    if row is None:
        raise Unprocessable("unknown-payment-method", "Unknown payment method",
                            f"No payment method {payment_method_id}.")
    if row["customer_id"] != customer_id:
        raise Unprocessable("payment-method-not-owned", "Payment method belongs to another customer",
                            f"{payment_method_id} is not attached to {customer_id}.")
    if row["detached_at"] is not None:
        raise Unprocessable("payment-method-detached", "Payment method detached",
                            f"{payment_method_id} was detached and cannot be charged.")


async def _load(conn: asyncpg.Connection, payment_method_id: str) -> asyncpg.Record:
    row = await store.fetch(conn, payment_method_id)
    if row is None:
        raise not_found("payment_method", payment_method_id)
    return row
