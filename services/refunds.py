"""Refunds: start one (update-with-start of its RefundWorkflow), read, list a payment's; and what a provider's
webhook about refunds does."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
from temporalio.client import WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.stores import refunds as store
from contracts import search_attributes as sa
from contracts.auth import Principal
from contracts.refunds import (
    PROVIDER_EVENT_SIGNAL,
    REFUND_WORKFLOW,
    SUBMITTED_UPDATE,
    RefundCreate,
    RefundEvent,
    RefundInput,
    RefundView,
    refund_workflow_id,
)
from contracts.webhooks import NormalizedEvent
from domain.money import Money, MoneyError
from domain.payment import PaymentStatus
from domain.refund import RefundStatus, refunded_and_refundable
from paysaga.db import tenant_tx
from services import audit, idempotency, payments, temporal
from services.context import AppContext
from services.errors import Conflict, ServiceError, Unprocessable, not_found, temporarily_unavailable
from services.ids import new_id

# Why a refund was refused → the error it is answered with.
REJECTIONS: dict[str, tuple[type[ServiceError], str]] = {
    "payment_not_refundable": (Conflict, "payment-not-refundable"),
    "fully_refunded": (Conflict, "payment-fully-refunded"),
    "exceeds_refundable": (Unprocessable, "refund-exceeds-refundable"),
    "invalid_amount": (Unprocessable, "invalid-amount"),
    "currency_mismatch": (Unprocessable, "currency-mismatch"),
}
REFUSED = (Conflict, Unprocessable)


def refund_json(view: RefundView) -> dict[str, Any]:
    return {
        "id": view.id, "object": "refund", "payment_id": view.payment_id, "status": view.status,
        "amount": Money(view.amount_micros, view.currency).to_decimal_string(), "amount_micros": view.amount_micros,
        "currency": view.currency, "reason": view.reason, "provider_refund_id": view.provider_refund_id,
        "failure_code": view.failure_code, "workflow_id": view.workflow_id,
        "created_at": view.created_at.isoformat(), "updated_at": view.updated_at.isoformat(),
    }


async def create(ctx: AppContext, who: Principal, payment_id: str, body: RefundCreate, key: str | None
                 ) -> idempotency.Answer:
    """Refuse with a clear answer what the domain refuses (the database re-checks under a lock); a refused refund
    is a final answer for its Idempotency-Key, like a created one."""
    key = idempotency.require_key(key)
    payment = await payments.load(ctx, who, payment_id)
    amount = None
    if body.amount is not None:
        try:
            amount = Money.parse(body.amount, payment.currency).micros
        except MoneyError as exc:
            raise Unprocessable("invalid-amount", "Invalid amount", str(exc)) from exc

    async def start(refund_id: str) -> idempotency.Answer:
        settings = ctx.settings
        view = await start_workflow(ctx, RefundInput(
            tenant_id=who.tenant_id, refund_id=refund_id, payment_id=payment_id, amount_micros=amount,
            reason=body.reason, idempotency_key=key, actor=who.actor,
            webhook_wait_seconds=settings.webhook_wait_seconds,
            provider_call_timeout_seconds=settings.provider_call_timeout_seconds))
        await audit.record_tx(ctx, who, "refund.create", "refund", view.id, view.workflow_id,
                              payment_id=payment_id, amount_micros=view.amount_micros, currency=view.currency)
        return idempotency.Answer(201, refund_json(view))

    path = f"/v1/payments/{payment_id}/refunds"
    return await idempotency.once(ctx, who, key, path, body.model_dump(mode="json"), new_id("re"), start,
                                  final_errors=REFUSED)


async def start_workflow(ctx: AppContext, inp: RefundInput) -> RefundView:
    def start() -> WithStartWorkflowOperation[Any, Any]:
        return WithStartWorkflowOperation(
            REFUND_WORKFLOW, inp, id=refund_workflow_id(inp.tenant_id, inp.refund_id),
            task_queue=ctx.settings.task_queue, result_type=RefundView,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE, execution_timeout=timedelta(days=7),
            search_attributes=sa.at_start((sa.TENANT_ID, inp.tenant_id), (sa.PAYMENT_ID, inp.payment_id),
                                          (sa.REFUND_ID, inp.refund_id)),
        )

    try:
        return await temporal.update_with_start(ctx.temporal, SUBMITTED_UPDATE, start, result_type=RefundView,
                                            admission=ctx.admission)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type in REJECTIONS:
            error, slug = REJECTIONS[cause.type]
            raise error(slug, "Refund refused", cause.message) from exc
        raise


async def get(ctx: AppContext, who: Principal, refund_id: str) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        view = await store.fetch_refund(conn, refund_id)
    if view is None:
        raise not_found("refund", refund_id)
    return refund_json(view)


async def list_for_payment(ctx: AppContext, who: Principal, payment_id: str) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        payment = await payments.load_in(conn, payment_id)
        refunds = await store.list_refunds(conn, payment_id)
    completed = payment.status == PaymentStatus.COMPLETED
    refunded, refundable = refunded_and_refundable(
        Money(payment.amount_micros, payment.currency),
        [(Money(r.amount_micros, r.currency), RefundStatus(r.status)) for r in refunds], completed)
    return {"object": "list", "data": [refund_json(r) for r in refunds],
            "amount_refunded": refunded.to_decimal_string(),
            "amount_refundable": refundable.to_decimal_string() if completed else "0"}


async def on_webhook(ctx: AppContext, conn: asyncpg.Connection | None, event: NormalizedEvent
                     ) -> tuple[str, dict[str, Any]]:
    """`refund.*` (one refund) and `charge.refunded` (a charge listing its refunds): signal each paysaga refund's
    RefundWorkflow, inside the inbox transaction, so a failed signal rolls the inbox row back."""
    if conn is None or not event.refunds:
        return "ignored", {"received": True, "ignored": "not a paysaga refund event"}
    assert event.tenant_id is not None
    several = len(event.refunds) > 1
    settled = False
    for news in event.refunds:
        signal = RefundEvent(
            # One event may carry several refunds (charge.refunded): each gets its own de-duplication id.
            event_id=f"{event.event_id}:{news.provider_refund_id}" if several else event.event_id,
            status=news.status, provider_refund_id=news.provider_refund_id, failure_reason=news.failure_reason)
        handle = ctx.temporal.get_workflow_handle(refund_workflow_id(event.tenant_id, news.refund_id))
        try:
            await handle.signal(PROVIDER_EVENT_SIGNAL, signal)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise temporarily_unavailable() from exc
            settled = not several
    if settled:
        return "settled", {"received": True, "note": "refund already settled"}
    return "accepted", {"received": True}
