"""Payment methods as entities: attach (described by the provider), list, read, detach. Tokens only.

Decisions:
- The provider describes each token on attach (brand, last4, expiry, fingerprint, issuing country); an unknown
  token is 422 `unknown-payment-method`, a provider that cannot answer is 503 `provider-unavailable`.
- Duplicates: a customer holds at most one *active* method per card fingerprint (a partial unique index). Attaching
  a card the customer already has answers **200 with the existing method** and `"duplicate": true` (the new token
  is not stored); a new method answers 201 with `"duplicate": false`. After a detach the same card can be attached
  again as a new method.
- `provider_token` (e.g. Stripe's `pm_…`) is returned: it is the reference the client sent, usable only with the
  tenant's provider secret key, and it tells which token was kept when a duplicate was folded.
- `expired` is computed at read time against today's date (UTC), by `domain.instruments.is_expired`.
- Detach is idempotent (a second detach answers the detached method again) and final: payments refuse a detached
  method (422 `payment-method-detached`) and the row is frozen by a trigger. Nothing is called at the provider:
  paysaga does not attach methods to provider-side customers.
- Every endpoint needs the `payments` role (or `admin`) and writes an audit row in the same transaction as its
  read or write: payment_method.attach / .list / .read / .detach.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from activities import outbox
from activities.providers import build_provider
from activities.providers.base import CardDetails, PaymentProvider, ProviderUnavailable
from api import audit
from api.auth import Principal, authenticate
from api.problems import Problem
from api.schemas import PaymentMethodCreate
from domain.instruments import is_expired
from paysaga.db import tenant_tx

router = APIRouter(prefix="/v1", tags=["payment_methods"])
Auth = Annotated[Principal, Depends(authenticate)]

_ACTIVE_FINGERPRINT = "(tenant_id, customer_id, fingerprint) WHERE detached_at IS NULL AND fingerprint IS NOT NULL"


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


async def describe(request: Request, token: str) -> CardDetails:
    """Ask the configured provider about a token (the API's sandbox instance, or a short-lived Stripe client)."""
    provider: PaymentProvider | None = getattr(request.app.state, "sandbox", None)
    owned = provider is None
    if provider is None:
        provider = build_provider(request.app.state.settings, request.app.state.pool)
    try:
        return await provider.describe_payment_method(token)
    except ProviderUnavailable as exc:
        raise Problem(503, "provider-unavailable", "Payment provider unavailable",
                      "The payment provider did not answer; retry later.") from exc
    except ValueError as exc:
        raise Problem(422, "unknown-payment-method", "Unknown payment method", str(exc)) from exc
    finally:
        if owned and hasattr(provider, "aclose"):
            await provider.aclose()


async def _customer_exists(conn: asyncpg.Connection, customer_id: str) -> None:
    if not await conn.fetchval("SELECT true FROM paysaga.customers WHERE customer_id = $1", customer_id):
        raise Problem(404, "customer-not-found", "Customer not found", f"No customer {customer_id}.")


@router.post("/customers/{customer_id}/payment_methods", status_code=201,
             responses={200: {"description": "The customer already has this card: the existing method"}})
async def attach_payment_method(
    customer_id: str, body: PaymentMethodCreate, request: Request, who: Auth
) -> JSONResponse:
    who.require("payments")
    card = await describe(request, body.token)  # a provider call: outside the transaction
    settings = request.app.state.settings
    async with tenant_tx(request.app.state.pool, who.tenant_id) as conn:
        await _customer_exists(conn, customer_id)
        for _ in range(3):  # the existing duplicate may be detached between the two statements: try again
            row = await conn.fetchrow(
                f"""INSERT INTO paysaga.payment_methods (payment_method_id, tenant_id, customer_id, provider,
                        provider_token, brand, last4, exp_month, exp_year, fingerprint, country)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                    ON CONFLICT {_ACTIVE_FINGERPRINT} DO NOTHING RETURNING *""",
                f"pm_{secrets.token_hex(12)}", who.tenant_id, customer_id, settings.provider, body.token,
                card.brand, card.last4, card.exp_month, card.exp_year, card.fingerprint, card.country,
            )
            duplicate = row is None
            if row is None:
                row = await conn.fetchrow(
                    """SELECT * FROM paysaga.payment_methods
                        WHERE customer_id = $1 AND fingerprint = $2 AND detached_at IS NULL""",
                    customer_id, card.fingerprint,
                )
            if row is not None:
                break
        else:
            raise Problem(409, "payment-method-conflict", "Concurrent change", "Retry the request.")
        await audit.record(conn, who, "payment_method.attach", "payment_method", row["payment_method_id"],
                           request_id=audit.request_id_of(request), customer_id=customer_id, duplicate=duplicate)
        if not duplicate:
            await outbox.enqueue(conn, who.tenant_id, f"evt_{row['payment_method_id']}_attached",
                                 "payment_method.attached", {"payment_method": _event_view(row)})
    return JSONResponse({**payment_method_json(row), "duplicate": duplicate}, status_code=200 if duplicate else 201)


@router.get("/customers/{customer_id}/payment_methods")
async def list_payment_methods(
    customer_id: str, request: Request, who: Auth,
    include_detached: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    """The customer's active methods, newest first (with `include_detached=true`, detached ones too)."""
    who.require("payments")
    async with tenant_tx(request.app.state.pool, who.tenant_id) as conn:
        await _customer_exists(conn, customer_id)
        rows = await conn.fetch(
            """SELECT * FROM paysaga.payment_methods WHERE customer_id = $1 AND ($2 OR detached_at IS NULL)
                ORDER BY created_at DESC, payment_method_id DESC""",
            customer_id, include_detached,
        )
        await audit.record(conn, who, "payment_method.list", "customer", customer_id,
                           request_id=audit.request_id_of(request), include_detached=include_detached,
                           payment_method_ids=[r["payment_method_id"] for r in rows])
    return {"object": "list", "data": [payment_method_json(r) for r in rows], "has_more": False}


@router.get("/payment_methods/{payment_method_id}")
async def get_payment_method(payment_method_id: str, request: Request, who: Auth) -> dict[str, Any]:
    who.require("payments")
    async with tenant_tx(request.app.state.pool, who.tenant_id) as conn:
        row = await _load(conn, payment_method_id)
        await audit.record(conn, who, "payment_method.read", "payment_method", payment_method_id,
                           request_id=audit.request_id_of(request), customer_id=row["customer_id"])
    return payment_method_json(row)


@router.post("/payment_methods/{payment_method_id}/detach")
async def detach_payment_method(payment_method_id: str, request: Request, who: Auth) -> dict[str, Any]:
    """Idempotent: detaching a detached method answers it again (`already_detached` in the audit row)."""
    who.require("payments")
    async with tenant_tx(request.app.state.pool, who.tenant_id) as conn:
        row = await conn.fetchrow(
            """UPDATE paysaga.payment_methods SET detached_at = now()
                WHERE payment_method_id = $1 AND detached_at IS NULL RETURNING *""",
            payment_method_id,
        )
        already = row is None
        if row is None:
            row = await _load(conn, payment_method_id)
        else:
            await outbox.enqueue(conn, who.tenant_id, f"evt_{payment_method_id}_detached",
                                 "payment_method.detached", {"payment_method": _event_view(row)})
        await audit.record(conn, who, "payment_method.detach", "payment_method", payment_method_id,
                           request_id=audit.request_id_of(request), customer_id=row["customer_id"],
                           already_detached=already)
    return payment_method_json(row)


def _event_view(row: asyncpg.Record) -> dict[str, Any]:
    """What other services may learn of a payment method: display data, never the token."""
    return {k: v for k, v in payment_method_json(row).items() if k != "provider_token"}


async def _load(conn: asyncpg.Connection, payment_method_id: str) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM paysaga.payment_methods WHERE payment_method_id = $1",
                              payment_method_id)
    if row is None:
        raise Problem(404, "payment-method-not-found", "Payment method not found",
                      f"No payment method {payment_method_id}.")
    return row
