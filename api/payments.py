"""Customers and payments (payment methods: api/payment_methods.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from api.deps import Caller, Ctx, Payments
from api.responses import answered
from contracts.customers import CustomerCreate
from contracts.payments import CancelBody, PaymentCreate
from services import customers, payments

router = APIRouter(prefix="/v1")
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


@router.post("/customers", status_code=201, tags=["customers"])
async def create_customer(body: CustomerCreate, ctx: Ctx, who: Payments) -> dict[str, Any]:
    return await customers.create(ctx, who, body)


@router.get("/customers/{customer_id}", tags=["customers"])
async def get_customer(customer_id: str, ctx: Ctx, who: Caller) -> dict[str, Any]:
    return await customers.get(ctx, who, customer_id)


@router.post("/payments", status_code=201, tags=["payments"])
async def create_payment(body: PaymentCreate, request: Request, ctx: Ctx, who: Payments,
                         idempotency_key: IdempotencyKey = None) -> JSONResponse:
    answer = await payments.create(ctx, who, body, idempotency_key)
    if not answer.replayed:
        request.app.state.metrics.payments_created.labels(body.currency.upper()).inc()
    return answered(answer)


@router.get("/payments/{payment_id}", tags=["payments"])
async def get_payment(payment_id: str, ctx: Ctx, who: Caller) -> dict[str, Any]:
    return await payments.get(ctx, who, payment_id)


@router.get("/payments", tags=["payments"])
async def list_payments(
    ctx: Ctx, who: Caller, limit: Annotated[int, Query(ge=1, le=100)] = 20,
    starting_after: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Newest first; pass the last id of a page as `starting_after` for the next one."""
    return await payments.list_page(ctx, who, limit, starting_after)


@router.post("/payments/{payment_id}/cancel", tags=["payments"])
async def cancel_payment(payment_id: str, ctx: Ctx, who: Payments, body: CancelBody | None = None,
                         idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    """Cancels a `created` or `pending` payment (and its PaymentIntent); anything else is 409."""
    return await payments.cancel(ctx, who, payment_id, body, idempotency_key)
