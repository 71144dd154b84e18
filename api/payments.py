"""Customers and payments (payment methods: api/payment_methods.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api import schemas
from api.deps import Caller, Ctx, IdempotencyKey, Payments
from api.docs import created, problems
from api.responses import answered
from contracts.customers import CustomerCreate, CustomerUpdate
from contracts.payments import CancelBody, PaymentCreate
from services import customers, payments

router = APIRouter(prefix="/v1")



@router.post("/customers", status_code=201, tags=["customers"], response_model=schemas.Customer,
             responses=problems(403))
async def create_customer(body: CustomerCreate, ctx: Ctx, who: Payments) -> dict[str, Any]:
    return await customers.create(ctx, who, body)


@router.get("/customers/{customer_id}", tags=["customers"], response_model=schemas.Customer,
            responses=problems(404))
async def get_customer(customer_id: str, ctx: Ctx, who: Caller) -> dict[str, Any]:
    return await customers.get(ctx, who, customer_id)


@router.post("/customers/{customer_id}", tags=["customers"], response_model=schemas.Customer,
             responses=problems(403, 404, 409))
async def update_customer(customer_id: str, body: CustomerUpdate, ctx: Ctx, who: Payments) -> dict[str, Any]:
    """Only the fields sent change (Stripe's update-by-POST); invoices already finalized keep what they billed."""
    return await customers.update(ctx, who, customer_id, body)


@router.post("/payments", status_code=201, tags=["payments"], response_model=None, responses={
    **created(schemas.Payment, "The payment, once its PaymentIntent exists (or it failed or was canceled first)"),
    **problems(403, 409)})
async def create_payment(body: PaymentCreate, request: Request, ctx: Ctx, who: Payments,
                         idempotency_key: IdempotencyKey = None) -> JSONResponse:
    answer = await payments.create(ctx, who, body, idempotency_key)
    if not answer.replayed:
        request.app.state.metrics.payments_created.labels(body.currency.upper()).inc()
    return answered(answer)


@router.get("/payments/{payment_id}", tags=["payments"], response_model=schemas.Payment, responses=problems(404))
async def get_payment(payment_id: str, ctx: Ctx, who: Caller) -> dict[str, Any]:
    return await payments.get(ctx, who, payment_id)


@router.get("/payments", tags=["payments"], response_model=schemas.PaymentList, responses=problems(400))
async def list_payments(
    ctx: Ctx, who: Caller, limit: Annotated[int, Query(ge=1, le=100)] = 20,
    starting_after: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Newest first; pass the last id of a page as `starting_after` for the next one."""
    return await payments.list_page(ctx, who, limit, starting_after)


@router.post("/payments/{payment_id}/cancel", tags=["payments"], response_model=schemas.Payment,
             responses=problems(403, 404, 409))
async def cancel_payment(payment_id: str, ctx: Ctx, who: Payments, body: CancelBody | None = None,
                         idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    """Cancels a `created` or `pending` payment (and its PaymentIntent); anything else is 409."""
    return await payments.cancel(ctx, who, payment_id, body, idempotency_key)
