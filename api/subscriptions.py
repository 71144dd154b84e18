"""Subscriptions: create, read, list, cancel and undo, pause and resume collection, resume, change the price or
quantity, change the payment method, their events, and the next invoice previewed."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from api import schemas
from api.deps import Caller, Ctx, IdempotencyKey, Payments
from api.docs import created, problems
from api.responses import answered
from contracts.subscriptions import (
    PauseCollectionBody,
    PaymentMethodBody,
    SubscriptionCancel,
    SubscriptionChange,
    SubscriptionCreate,
)
from services import subscriptions

router = APIRouter(prefix="/v1", tags=["subscriptions"])
STATE = problems(403, 404, 409)


@router.post("/subscriptions", status_code=201, response_model=None, responses={
    **created(schemas.Subscription, "The subscription (`latest_invoice`: its first invoice, finalized)"),
    **problems(403, 409)})
async def create_subscription(body: SubscriptionCreate, ctx: Ctx, who: Payments,
                              idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """`trialing` with a trial, else `incomplete` until its first invoice is paid (charged to the default payment
    method, or sent), then `active`."""
    return answered(await subscriptions.create(ctx, who, body, idempotency_key))


@router.get("/subscriptions", response_model=schemas.SubscriptionList)
async def list_subscriptions(
    ctx: Ctx, who: Caller, limit: Annotated[int, Query(ge=1, le=100)] = 20,
    starting_after: Annotated[str | None, Query(max_length=120)] = None,
    customer_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Literal["incomplete", "incomplete_expired", "trialing", "active", "past_due", "unpaid", "canceled",
                    "paused"] | None = None,
    price_id: Annotated[str | None, Query(max_length=120)] = None,
) -> dict[str, Any]:
    """Newest first; pass `next_cursor` as `starting_after` for the next page."""
    return await subscriptions.list_page(ctx, who, limit, starting_after, customer_id=customer_id, status=status,
                                         price_id=price_id)


@router.get("/subscriptions/{subscription_id}", response_model=schemas.Subscription, responses=problems(404))
async def get_subscription(subscription_id: str, ctx: Ctx, who: Caller) -> dict[str, Any]:
    return await subscriptions.get(ctx, who, subscription_id)


@router.get("/subscriptions/{subscription_id}/events", response_model=schemas.SubscriptionEventList,
            responses=problems(404))
async def subscription_events(subscription_id: str, ctx: Ctx, who: Caller) -> dict[str, Any]:
    """Its lifecycle, oldest first."""
    return await subscriptions.events(ctx, who, subscription_id)


@router.get("/subscriptions/{subscription_id}/upcoming_invoice", response_model=schemas.InvoicePreview,
            responses=problems(404, 409))
async def upcoming_invoice(subscription_id: str, ctx: Ctx, who: Caller) -> dict[str, Any]:
    """The invoice the next renewal (or the trial's end) will issue, as it will be: lines, proration charges kept
    for it, tax, the customer's credit applied. Nothing is written."""
    return await subscriptions.upcoming_invoice(ctx, who, subscription_id)


@router.post("/subscriptions/{subscription_id}/cancel", response_model=schemas.Subscription, responses=STATE)
async def cancel_subscription(subscription_id: str, body: SubscriptionCancel, ctx: Ctx,
                              who: Payments) -> dict[str, Any]:
    """Now (`prorate`: the unused time of the paid period is credited), or at the end of the period
    (`at_period_end`; undo until then)."""
    return await subscriptions.cancel(ctx, who, subscription_id, body)


@router.post("/subscriptions/{subscription_id}/undo_cancel", response_model=schemas.Subscription, responses=STATE)
async def undo_cancel(subscription_id: str, ctx: Ctx, who: Payments) -> dict[str, Any]:
    """Undo a cancellation scheduled for the period's end, before it takes effect."""
    return await subscriptions.undo_cancel(ctx, who, subscription_id)


@router.post("/subscriptions/{subscription_id}/pause_collection", response_model=schemas.Subscription,
             responses=STATE)
async def pause_collection(subscription_id: str, body: PauseCollectionBody, ctx: Ctx,
                           who: Payments) -> dict[str, Any]:
    """Renewal invoices are kept as drafts, written off or voided until `resumes_at` (or resume_collection)."""
    return await subscriptions.pause_collection(ctx, who, subscription_id, body)


@router.post("/subscriptions/{subscription_id}/resume_collection", response_model=schemas.Subscription,
             responses=STATE)
async def resume_collection(subscription_id: str, ctx: Ctx, who: Payments) -> dict[str, Any]:
    return await subscriptions.resume_collection(ctx, who, subscription_id)


@router.post("/subscriptions/{subscription_id}/resume", response_model=schemas.Subscription, responses=STATE)
async def resume_subscription(subscription_id: str, ctx: Ctx, who: Payments) -> dict[str, Any]:
    """A paused subscription (its trial ended without a payment method) starts a new period now, invoiced."""
    return await subscriptions.resume(ctx, who, subscription_id)


@router.post("/subscriptions/{subscription_id}/change", response_model=schemas.Subscription, responses=STATE)
async def change_subscription(subscription_id: str, body: SubscriptionChange, ctx: Ctx,
                              who: Payments) -> dict[str, Any]:
    """A new price and/or quantity, with `proration_behavior` (`create_prorations`: kept for the next invoice,
    `always_invoice`: invoiced now, `none`) and a `proration_date`; when it applies follows the tenant's policy
    unless `timing` says."""
    return await subscriptions.change_item(ctx, who, subscription_id, body)


@router.post("/subscriptions/{subscription_id}/cancel_scheduled_change", response_model=schemas.Subscription,
             responses=STATE)
async def cancel_scheduled_change(subscription_id: str, ctx: Ctx, who: Payments) -> dict[str, Any]:
    return await subscriptions.cancel_scheduled_change(ctx, who, subscription_id)


@router.post("/subscriptions/{subscription_id}/payment_method", response_model=schemas.Subscription,
             responses=STATE)
async def update_payment_method(subscription_id: str, body: PaymentMethodBody, ctx: Ctx,
                                who: Payments) -> dict[str, Any]:
    """Its default payment method; an unpaid invoice in dunning is retried with it at once."""
    return await subscriptions.update_payment_method(ctx, who, subscription_id, body)
