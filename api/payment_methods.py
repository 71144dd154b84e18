"""Payment methods: attach, list, read, detach (tokens only; every access is audited)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from api import schemas
from api.deps import Ctx, Payments
from api.docs import problems
from contracts.payment_methods import PaymentMethodCreate
from services import payment_methods

router = APIRouter(prefix="/v1", tags=["payment_methods"])


@router.post("/customers/{customer_id}/payment_methods", status_code=201, response_model=None, responses={
    201: {"model": schemas.PaymentMethod, "description": "A new payment method"},
    200: {"model": schemas.PaymentMethod, "description": "The customer already has this card: the existing method"},
    **problems(403, 404)})
async def attach_payment_method(customer_id: str, body: PaymentMethodCreate, ctx: Ctx, who: Payments
                                ) -> JSONResponse:
    method, duplicate = await payment_methods.attach(ctx, who, customer_id, body)
    return JSONResponse(method, status_code=200 if duplicate else 201)


@router.get("/customers/{customer_id}/payment_methods", response_model=schemas.PaymentMethodList,
            response_model_exclude_unset=True, responses=problems(403, 404))
async def list_payment_methods(customer_id: str, ctx: Ctx, who: Payments,
                               include_detached: Annotated[bool, Query()] = False) -> dict[str, Any]:
    """The customer's active methods, newest first (with `include_detached=true`, detached ones too)."""
    return await payment_methods.list_for_customer(ctx, who, customer_id, include_detached)


@router.get("/payment_methods/{payment_method_id}", response_model=schemas.PaymentMethod,
            response_model_exclude_unset=True, responses=problems(403, 404))
async def get_payment_method(payment_method_id: str, ctx: Ctx, who: Payments) -> dict[str, Any]:
    return await payment_methods.get(ctx, who, payment_method_id)


@router.post("/payment_methods/{payment_method_id}/detach", response_model=schemas.PaymentMethod,
             response_model_exclude_unset=True, responses=problems(403, 404))
async def detach_payment_method(payment_method_id: str, ctx: Ctx, who: Payments) -> dict[str, Any]:
    """Idempotent: detaching a detached method answers it again."""
    return await payment_methods.detach(ctx, who, payment_method_id)
