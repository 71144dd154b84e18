"""Refunds: `POST /v1/payments/{id}/refunds`, `GET /v1/refunds/{id}`, `GET /v1/payments/{id}/refunds`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api import schemas
from api.deps import Caller, Ctx, IdempotencyKey, Payments
from api.docs import created, problems
from api.responses import answered
from contracts.refunds import RefundCreate
from services import refunds

router = APIRouter(prefix="/v1", tags=["refunds"])


@router.post("/payments/{payment_id}/refunds", status_code=201, response_model=None, responses={
    **created(schemas.Refund, "The refund, once the provider has it"), **problems(403, 404, 409)})
async def create_refund(payment_id: str, body: RefundCreate, ctx: Ctx, who: Payments,
                        idempotency_key: IdempotencyKey = None,
                        ) -> JSONResponse:
    return answered(await refunds.create(ctx, who, payment_id, body, idempotency_key))


@router.get("/refunds/{refund_id}", response_model=schemas.Refund, responses=problems(404))
async def get_refund(refund_id: str, ctx: Ctx, who: Caller) -> dict[str, Any]:
    return await refunds.get(ctx, who, refund_id)


@router.get("/payments/{payment_id}/refunds", response_model=schemas.RefundList, responses=problems(404))
async def list_payment_refunds(payment_id: str, ctx: Ctx, who: Caller) -> dict[str, Any]:
    return await refunds.list_for_payment(ctx, who, payment_id)
