"""Refunds: `POST /v1/payments/{id}/refunds`, `GET /v1/refunds/{id}`, `GET /v1/payments/{id}/refunds`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse

from api.deps import Caller, Ctx, Payments
from api.responses import answered
from contracts.refunds import RefundCreate
from services import refunds

router = APIRouter(prefix="/v1", tags=["refunds"])


@router.post("/payments/{payment_id}/refunds", status_code=201)
async def create_refund(payment_id: str, body: RefundCreate, ctx: Ctx, who: Payments,
                        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
                        ) -> JSONResponse:
    return answered(await refunds.create(ctx, who, payment_id, body, idempotency_key))


@router.get("/refunds/{refund_id}")
async def get_refund(refund_id: str, ctx: Ctx, who: Caller) -> dict[str, Any]:
    return await refunds.get(ctx, who, refund_id)


@router.get("/payments/{payment_id}/refunds")
async def list_payment_refunds(payment_id: str, ctx: Ctx, who: Caller) -> dict[str, Any]:
    return await refunds.list_for_payment(ctx, who, payment_id)
