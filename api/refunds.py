"""Refunds: `POST /v1/payments/{id}/refunds`, `GET /v1/refunds/{id}`, `GET /v1/payments/{id}/refunds`."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities import payment_store, refund_store
from api import audit, idempotency
from api.auth import Principal, authenticate
from api.problems import Problem
from api.schemas import RefundCreate, refund_json
from api.webhook_events import NormalizedEvent, register_kind_handler
from domain.money import Money, MoneyError
from paysaga.db import tenant_tx
from workflows import search_attributes as sa
from workflows.contracts import RefundEvent, RefundInput, RefundView, refund_workflow_id
from workflows.refund import RefundWorkflow

router = APIRouter(prefix="/v1", tags=["refunds"])
Auth = Annotated[Principal, Depends(authenticate)]

# Why a refund was refused → (HTTP status, problem slug).
REJECTIONS = {
    "payment_not_refundable": (409, "payment-not-refundable"),
    "fully_refunded": (409, "payment-fully-refunded"),
    "exceeds_refundable": (422, "refund-exceeds-refundable"),
    "invalid_amount": (422, "invalid-amount"),
    "currency_mismatch": (422, "currency-mismatch"),
}


@router.post("/payments/{payment_id}/refunds", status_code=201)
async def create_refund(
    payment_id: str, body: RefundCreate, request: Request, who: Auth,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    who.require("payments")
    key = idempotency.require_key(idempotency_key)
    pool, settings = request.app.state.pool, request.app.state.settings
    async with tenant_tx(pool, who.tenant_id) as conn:
        payment = await payment_store.fetch_view(conn, payment_id)
    if payment is None:
        raise Problem(404, "payment-not-found", "Payment not found", f"No payment {payment_id}.")
    amount = None
    if body.amount is not None:
        try:
            amount = Money.parse(body.amount, payment.currency).micros
        except MoneyError as exc:
            raise Problem(422, "invalid-amount", "Invalid amount", str(exc)) from exc
    path = f"/v1/payments/{payment_id}/refunds"
    fingerprint = idempotency.request_fingerprint("POST", path, body.model_dump(mode="json"))
    claim = await idempotency.claim(pool, who.tenant_id, key, "POST", path, fingerprint,
                                    f"re_{secrets.token_hex(12)}", settings.idempotency_ttl_hours,
                                    settings.idempotency_lease_seconds)
    if claim.replay is not None:
        status, payload = claim.replay
        return JSONResponse(payload, status_code=status, headers={"Idempotent-Replayed": "true"},
                            media_type="application/problem+json" if status >= 400 else None)
    inp = RefundInput(
        tenant_id=who.tenant_id, refund_id=claim.resource_id, payment_id=payment_id, amount_micros=amount,
        reason=body.reason, idempotency_key=key, actor=f"api:{who.key_id}",
        webhook_wait_seconds=settings.webhook_wait_seconds,
        provider_call_timeout_seconds=settings.provider_call_timeout_seconds,
    )
    try:
        view = await start_refund(request.app.state.temporal, settings.task_queue, inp)
    except Problem as problem:  # a refused refund is a final answer for this key, like a created one
        await idempotency.complete(pool, who.tenant_id, key, problem.status, problem.body(path))
        raise
    except Exception:
        await idempotency.release(pool, who.tenant_id, key)
        raise
    payload = refund_json(view)
    await idempotency.complete(pool, who.tenant_id, key, 201, payload)
    await audit.record_tx(request, who, "refund.create", "refund", view.id, view.workflow_id,
                          payment_id=payment_id, amount_micros=view.amount_micros, currency=view.currency)
    return JSONResponse(payload, status_code=201)


async def start_refund(client: Client, task_queue: str, inp: RefundInput) -> RefundView:
    start = WithStartWorkflowOperation(
        RefundWorkflow.run, inp, id=refund_workflow_id(inp.tenant_id, inp.refund_id), task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE, execution_timeout=timedelta(days=7),
        search_attributes=TypedSearchAttributes([
            SearchAttributePair(sa.TENANT_ID, inp.tenant_id), SearchAttributePair(sa.PAYMENT_ID, inp.payment_id),
            SearchAttributePair(sa.REFUND_ID, inp.refund_id),
        ]),
    )
    try:
        return await client.execute_update_with_start_workflow(
            RefundWorkflow.submitted, start_workflow_operation=start, result_type=RefundView)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type in REJECTIONS:
            status, slug = REJECTIONS[cause.type]
            raise Problem(status, slug, "Refund refused", cause.message) from exc
        raise


@router.get("/refunds/{refund_id}")
async def get_refund(refund_id: str, request: Request, who: Auth) -> dict[str, Any]:
    async with tenant_tx(request.app.state.pool, who.tenant_id) as conn:
        view = await refund_store.fetch_refund(conn, refund_id)
    if view is None:
        raise Problem(404, "refund-not-found", "Refund not found", f"No refund {refund_id}.")
    return refund_json(view)


@router.get("/payments/{payment_id}/refunds")
async def list_payment_refunds(payment_id: str, request: Request, who: Auth) -> dict[str, Any]:
    async with tenant_tx(request.app.state.pool, who.tenant_id) as conn:
        payment = await payment_store.fetch_view(conn, payment_id)
        if payment is None:
            raise Problem(404, "payment-not-found", "Payment not found", f"No payment {payment_id}.")
        refunds = await refund_store.list_refunds(conn, payment_id)
    refunded = sum(r.amount_micros for r in refunds if r.status == "succeeded")
    return {"object": "list", "data": [refund_json(r) for r in refunds],
            "amount_refunded": Money(refunded, payment.currency).to_decimal_string(),
            "amount_refundable": Money(payment.amount_micros - sum(
                r.amount_micros for r in refunds if r.status in ("pending", "succeeded")), payment.currency
            ).to_decimal_string() if payment.status == "completed" else "0"}


@register_kind_handler("refund")
async def on_refund_event(request: Request, event: NormalizedEvent) -> tuple[str, dict[str, Any]]:
    """`refund.created|updated|failed` (one refund) and `charge.refunded` (a charge listing its refunds): signal
    each paysaga refund's RefundWorkflow. Runs inside the inbox transaction, so a failed signal rolls the inbox
    row back and the provider's retry is not lost."""
    raw = event.raw or {}
    if raw.get("object") == "refund":
        refunds = [raw]
    elif raw.get("object") == "charge" and isinstance(raw.get("refunds"), dict):
        refunds = [r for r in raw["refunds"].get("data") or [] if isinstance(r, dict)]
    else:
        refunds = []
    ours = [(r, (r.get("metadata") or {}).get("refund_id")) for r in refunds if isinstance(r.get("metadata"), dict)]
    ours = [(r, rid) for r, rid in ours if isinstance(rid, str) and rid.startswith("re_")]
    if event.tenant_id is None or not ours:
        return "ignored", {"received": True, "ignored": "not a paysaga refund event"}
    outcome = "accepted"
    for refund, refund_id in ours:
        signal = RefundEvent(
            # One event may carry several refunds (charge.refunded): each gets its own de-duplication id.
            event_id=event.event_id if len(ours) == 1 else f"{event.event_id}:{refund.get('id')}",
            status=str(refund.get("status") or ""), provider_refund_id=refund.get("id"),
            failure_reason=refund.get("failure_reason"))
        handle = request.app.state.temporal.get_workflow_handle(refund_workflow_id(event.tenant_id, refund_id))
        try:
            await handle.signal(RefundWorkflow.provider_event, signal)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise Problem(503, "temporarily-unavailable", "Try again", "Could not reach the workflow.") from exc
            outcome = "settled" if len(ours) == 1 else outcome
    if outcome == "settled":
        return "settled", {"received": True, "note": "refund already settled"}
    return "accepted", {"received": True}
