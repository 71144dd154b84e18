"""Disputes (chargebacks): read them, answer them (evidence, accept) through their DisputeWorkflow; and what a
provider's `charge.dispute.*` webhook does (signal-with-start of the dispute's workflow)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from temporalio.client import WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.stores import disputes as store
from activities.stores import payments as payment_store
from contracts import search_attributes as sa
from contracts.auth import Principal
from contracts.disputes import (
    ACCEPT_UPDATE,
    DISPUTE_WORKFLOW,
    PROVIDER_EVENT_SIGNAL,
    SUBMIT_EVIDENCE_UPDATE,
    AcceptRequest,
    DisputeEvent,
    DisputeEvidence,
    DisputeInput,
    DisputeView,
    EvidenceRequest,
    dispute_id_for,
    dispute_workflow_id,
)
from contracts.errors import (
    INVALID_EVIDENCE,
    NOT_ACCEPTABLE,
    NOT_ACCEPTING_EVIDENCE,
    PROVIDER_REFUSED,
    PROVIDER_UNAVAILABLE,
)
from contracts.webhooks import NormalizedEvent
from domain.dispute import DisputeStatus, outcome, payment_dispute_status
from domain.money import Money, MoneyError
from paysaga.db import tenant_tx
from services import temporal
from services.context import AppContext
from services.errors import (
    BadRequest,
    Conflict,
    ServiceError,
    Unavailable,
    Unprocessable,
    not_found,
    temporarily_unavailable,
)
from services.ids import new_id
from services.payments import load_in as load_payment

log = structlog.get_logger("paysaga.webhooks")

# Why an update was refused → the error it is answered with.
UPDATE_PROBLEMS: dict[str, tuple[type[ServiceError], str]] = {
    NOT_ACCEPTING_EVIDENCE: (Conflict, "dispute-not-accepting-evidence"),
    NOT_ACCEPTABLE: (Conflict, "dispute-not-acceptable"),
    PROVIDER_REFUSED: (Conflict, "dispute-refused-by-provider"),
    INVALID_EVIDENCE: (Unprocessable, "invalid-evidence"),
    PROVIDER_UNAVAILABLE: (Unavailable, "temporarily-unavailable"),
}


def dispute_json(view: DisputeView, payment_status: str | None = None) -> dict[str, Any]:
    status = DisputeStatus(view.status)
    due = view.evidence_due_by
    return {
        "id": view.id, "object": "dispute", "payment_id": view.payment_id, "status": view.status,
        "outcome": outcome(status), "reason": view.reason,
        "amount": Money(view.amount_micros, view.currency).to_decimal_string(), "amount_micros": view.amount_micros,
        "currency": view.currency,
        "funds_withdrawn": Money(view.funds_withdrawn_micros, view.currency).to_decimal_string(),
        "funds_reinstated": Money(view.funds_reinstated_micros, view.currency).to_decimal_string(),
        "evidence_due_by": due.isoformat() if due else None,
        "accepting_evidence": _takes_evidence(view),
        "evidence": view.evidence,
        "evidence_submitted_at": view.evidence_submitted_at.isoformat() if view.evidence_submitted_at else None,
        "payment_dispute_status": payment_status, "provider": view.provider,
        "provider_dispute_id": view.provider_dispute_id, "workflow_id": view.workflow_id,
        "created_at": view.created_at.isoformat(), "updated_at": view.updated_at.isoformat(),
        "closed_at": view.closed_at.isoformat() if view.closed_at else None,
    }


def _takes_evidence(view: DisputeView) -> bool:
    due = view.evidence_due_by
    return DisputeStatus(view.status).accepts_evidence and (due is None or datetime.now(UTC) < due)


async def _load(ctx: AppContext, who: Principal, dispute_id: str) -> tuple[DisputeView, str]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        view = await store.fetch_dispute(conn, dispute_id)
        if view is None:
            raise not_found("dispute", dispute_id)
        siblings = await store.list_disputes(conn, view.payment_id)
    return view, payment_dispute_status([DisputeStatus(d.status) for d in siblings])


async def get(ctx: AppContext, who: Principal, dispute_id: str) -> dict[str, Any]:
    """A dispute, by our id (`dsp_…`) or the provider's."""
    return dispute_json(*await _load(ctx, who, dispute_id))


async def list_page(ctx: AppContext, who: Principal, *, limit: int, starting_after: str | None,
                    status: str | None, payment_id: str | None) -> dict[str, Any]:
    """Newest first, optionally of one status (e.g. `needs_response`: what finance must answer) or one payment."""
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        try:
            views, has_more = await store.list_page(conn, limit, starting_after, status, payment_id)
        except LookupError:
            raise BadRequest("invalid-cursor", "Invalid cursor", f"No dispute {starting_after}.") from None
        statuses = {p: payment_dispute_status([DisputeStatus(d.status) for d in await store.list_disputes(conn, p)])
                    for p in {v.payment_id for v in views}}
    page = [dispute_json(v, statuses[v.payment_id]) for v in views]
    return {"object": "list", "data": page, "has_more": has_more,
            "next_cursor": page[-1]["id"] if has_more else None}


async def list_for_payment(ctx: AppContext, who: Principal, payment_id: str) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        payment = await load_payment(conn, payment_id)
        disputes = await store.list_disputes(conn, payment_id)
    status = payment_dispute_status([DisputeStatus(d.status) for d in disputes])
    lost = sum(d.funds_withdrawn_micros - d.funds_reinstated_micros for d in disputes)
    return {"object": "list", "payment_id": payment_id, "dispute_status": status,
            "amount_disputed_net": Money(lost, payment.currency).to_decimal_string(),
            "data": [dispute_json(d, status) for d in disputes]}


async def submit_evidence(ctx: AppContext, who: Principal, dispute_id: str, body: DisputeEvidence,
                          key: str | None) -> dict[str, Any]:
    """Finance's evidence → the DisputeWorkflow → the provider. Refused once the dispute takes no more evidence."""
    view, _ = await _load(ctx, who, dispute_id)
    if not _takes_evidence(view):
        raise Conflict("dispute-not-accepting-evidence", "Dispute not accepting evidence",
                       f"The dispute is {view.status} (evidence due by {view.evidence_due_by}).")
    request_id = key or new_id("evidence")
    req = EvidenceRequest(request_id=request_id, evidence=body.fields(), submit=body.submit, actor=who.actor)
    await _update(ctx, view, SUBMIT_EVIDENCE_UPDATE, req, f"evidence-{request_id}")
    return dispute_json(*await _load(ctx, who, view.id))


async def accept(ctx: AppContext, who: Principal, dispute_id: str) -> dict[str, Any]:
    """Concede the dispute: the provider closes it as lost; the funds stay with the cardholder."""
    view, _ = await _load(ctx, who, dispute_id)
    if view.status != DisputeStatus.NEEDS_RESPONSE:
        raise Conflict("dispute-not-acceptable", "Dispute cannot be accepted",
                       f"The dispute is {view.status}; only a dispute awaiting a response can be accepted.")
    req = AcceptRequest(request_id=new_id("accept"), actor=who.actor)
    await _update(ctx, view, ACCEPT_UPDATE, req, f"accept-{req.request_id}")
    return dispute_json(*await _load(ctx, who, view.id))


async def _update(ctx: AppContext, view: DisputeView, update: str, arg: Any, update_id: str) -> None:
    try:
        await temporal.update(ctx.temporal, view.workflow_id, update, arg, update_id=update_id,
                              result_type=DisputeView)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type in UPDATE_PROBLEMS:
            error, slug = UPDATE_PROBLEMS[cause.type]
            raise error(slug, "Dispute update refused", cause.message) from exc
        raise
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # the workflow is over: so is the dispute
            raise Conflict("dispute-closed", "Dispute closed", "The dispute is over.") from exc
        raise temporarily_unavailable() from exc


# --- webhooks -------------------------------------------------------------------------------------------------
async def on_webhook(ctx: AppContext, conn: asyncpg.Connection | None, event: NormalizedEvent
                     ) -> tuple[str, dict[str, Any]]:
    """`charge.dispute.*`: signal-with-start the dispute's workflow, in the inbox transaction, so a failed signal
    rolls the row back and the provider's retry counts. The first event starts the workflow; every later one
    (duplicates included) joins it."""
    news = event.dispute
    if news is None or not event.intent_id:
        return "ignored", {"received": True, "ignored": "not a Stripe dispute event"}
    if conn is None or event.tenant_id is None:
        return "ignored", {"received": True, "ignored": "no paysaga payment for this payment intent"}
    payment_id = event.payment_id or await payment_store.payment_of_intent(conn, event.intent_id)
    payment = await payment_store.routing(conn, payment_id) if payment_id else None
    if payment is None:
        return "ignored", {"received": True, "ignored": "unknown payment"}
    currency = news.currency or payment["currency"]
    try:
        amount = Money.from_minor_units(news.amount_minor, currency)  # type: ignore[arg-type]
    except (MoneyError, TypeError):
        return "ignored", {"received": True, "ignored": "dispute amount unreadable"}
    if not amount.is_positive():
        return "ignored", {"received": True, "ignored": "dispute amount is not positive"}
    settings = ctx.settings
    dispute_id = dispute_id_for(payment["provider"], news.provider_dispute_id)
    inp = DisputeInput(
        tenant_id=event.tenant_id, dispute_id=dispute_id, payment_id=payment_id, provider=payment["provider"],
        provider_dispute_id=news.provider_dispute_id, amount_micros=amount.micros, currency=currency,
        reason=news.reason, provider_status=news.status or "needs_response",
        evidence_due_by=datetime.fromtimestamp(news.evidence_due_by, UTC) if news.evidence_due_by else None,
        actor=f"webhook:{event.event_id}", reminder_offsets_seconds=settings.dispute_reminder_offsets_seconds,
        poll_interval_seconds=settings.dispute_poll_seconds,
        provider_call_timeout_seconds=settings.provider_call_timeout_seconds,
    )
    signal = DisputeEvent(event_id=event.event_id, type=event.event_type, status=news.status)
    try:
        await ctx.temporal.start_workflow(
            DISPUTE_WORKFLOW, inp, id=dispute_workflow_id(event.tenant_id, dispute_id), task_queue=settings.task_queue,
            start_signal=PROVIDER_EVENT_SIGNAL, start_signal_args=[signal],
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=sa.at_start((sa.TENANT_ID, event.tenant_id), (sa.PAYMENT_ID, payment_id),
                                          (sa.DISPUTE_ID, dispute_id)),
        )
    except WorkflowAlreadyStartedError:  # the dispute's workflow has finished: the dispute is over
        return "settled", {"received": True, "note": "dispute already closed"}
    except RPCError as exc:
        raise temporarily_unavailable() from exc
    log.info("webhook.accepted", provider=event.provider, event_id=event.event_id, type=event.event_type,
             tenant_id=event.tenant_id, payment_id=payment_id, dispute_id=dispute_id)
    return "accepted", {"received": True}
