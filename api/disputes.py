"""Disputes (chargebacks): `GET /v1/disputes/{id}`, `GET /v1/payments/{id}/disputes`,
`POST /v1/disputes/{id}/evidence`, `POST /v1/disputes/{id}/accept`, and the `charge.dispute.*` webhook handler.

A dispute is opened by the provider, never through this API: its first webhook starts the DisputeWorkflow
(signal-with-start, workflow id `dispute/{tenant}/{dispute_id}`, so a duplicate webhook joins the same run and
a webhook about a finished dispute starts nothing). Finance answers it here; the workflow does the rest.

A payment lost to a dispute is not changed: payments are immutable once terminal. Its dispute standing is read
from the disputes table: `dispute_status` in `GET /v1/payments/{id}/disputes` and `payment_dispute_status` in
each dispute: `none` | `disputed` (one is open) | `disputed_won` | `disputed_lost` (one was lost or accepted).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Header, Request
from pydantic import StringConstraints, model_validator
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities import dispute_store, payment_store
from api.auth import Principal, authenticate
from api.problems import Problem
from api.schemas import Body
from api.webhook_events import NormalizedEvent, record_inbox, register_kind_handler
from domain.dispute import DisputeStatus, outcome, payment_dispute_status
from domain.money import Money, MoneyError
from paysaga.db import tenant_tx
from paysaga.settings import Settings
from workflows import dispute as wf
from workflows import search_attributes as sa
from workflows.contracts import (
    AcceptRequest,
    DisputeEvent,
    DisputeInput,
    DisputeView,
    EvidenceRequest,
    dispute_workflow_id,
)
from workflows.dispute import DisputeWorkflow

router = APIRouter(prefix="/v1", tags=["disputes"])
Auth = Annotated[Principal, Depends(authenticate)]
log = structlog.get_logger("paysaga.webhooks")

LongText = Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=500)]
FileId = Annotated[str, StringConstraints(pattern=r"^file_[A-Za-z0-9_]{1,200}$")]
MAX_EVIDENCE_TEXT = 150_000  # Stripe's limit on all text evidence together


class DisputeEvidence(Body):
    """Evidence in Stripe's vocabulary: text fields, and `file_…` ids of documents uploaded to the provider.
    `submit: false` stages the evidence (more can be added); `true` (the default) sends it to the issuer.
    Never a card number: a body carrying anything shaped like one is refused before it gets here."""

    uncategorized_text: LongText | None = None
    product_description: LongText | None = None
    access_activity_log: LongText | None = None
    refund_policy_disclosure: LongText | None = None
    refund_refusal_explanation: LongText | None = None
    cancellation_policy_disclosure: LongText | None = None
    cancellation_rebuttal: LongText | None = None
    duplicate_charge_explanation: LongText | None = None
    customer_name: ShortText | None = None
    customer_email_address: ShortText | None = None
    customer_purchase_ip: ShortText | None = None
    billing_address: ShortText | None = None
    shipping_address: ShortText | None = None
    shipping_carrier: ShortText | None = None
    shipping_tracking_number: ShortText | None = None
    shipping_date: ShortText | None = None
    service_date: ShortText | None = None
    customer_communication: FileId | None = None
    receipt: FileId | None = None
    shipping_documentation: FileId | None = None
    service_documentation: FileId | None = None
    refund_policy: FileId | None = None
    cancellation_policy: FileId | None = None
    customer_signature: FileId | None = None
    duplicate_charge_documentation: FileId | None = None
    uncategorized_file: FileId | None = None
    submit: bool = True

    @model_validator(mode="after")
    def _some_evidence(self) -> DisputeEvidence:
        fields = self.fields()
        if not fields:
            raise ValueError("give at least one evidence field")
        if sum(len(v) for v in fields.values()) > MAX_EVIDENCE_TEXT:
            raise ValueError(f"evidence may not exceed {MAX_EVIDENCE_TEXT} characters in total")
        return self

    def fields(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump(exclude={"submit"}).items() if v is not None}


class AcceptBody(Body):
    pass


# Why an update was refused → (HTTP status, problem slug).
UPDATE_PROBLEMS = {
    wf.NOT_ACCEPTING_EVIDENCE: (409, "dispute-not-accepting-evidence"),
    wf.NOT_ACCEPTABLE: (409, "dispute-not-acceptable"),
    wf.PROVIDER_REFUSED: (409, "dispute-refused-by-provider"),
    wf.INVALID_EVIDENCE: (422, "invalid-evidence"),
    wf.PROVIDER_UNAVAILABLE: (503, "temporarily-unavailable"),
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
        "accepting_evidence": status.accepts_evidence and (due is None or datetime.now(UTC) < due),
        "evidence": view.evidence,
        "evidence_submitted_at": view.evidence_submitted_at.isoformat() if view.evidence_submitted_at else None,
        "payment_dispute_status": payment_status, "provider": view.provider,
        "provider_dispute_id": view.provider_dispute_id, "workflow_id": view.workflow_id,
        "created_at": view.created_at.isoformat(), "updated_at": view.updated_at.isoformat(),
        "closed_at": view.closed_at.isoformat() if view.closed_at else None,
    }


async def _load(request: Request, who: Principal, dispute_id: str) -> tuple[DisputeView, str]:
    async with tenant_tx(request.app.state.pool, who.tenant_id) as conn:
        view = await dispute_store.fetch_dispute(conn, dispute_id)
        if view is None:
            raise Problem(404, "dispute-not-found", "Dispute not found", f"No dispute {dispute_id}.")
        siblings = await dispute_store.list_disputes(conn, view.payment_id)
    return view, payment_dispute_status([DisputeStatus(d.status) for d in siblings])


@router.get("/disputes/{dispute_id}")
async def get_dispute(dispute_id: str, request: Request, who: Auth) -> dict[str, Any]:
    """A dispute, by our id (`dsp_…`) or the provider's."""
    view, payment_status = await _load(request, who, dispute_id)
    return dispute_json(view, payment_status)


@router.get("/payments/{payment_id}/disputes")
async def list_payment_disputes(payment_id: str, request: Request, who: Auth) -> dict[str, Any]:
    async with tenant_tx(request.app.state.pool, who.tenant_id) as conn:
        payment = await payment_store.fetch_view(conn, payment_id)
        if payment is None:
            raise Problem(404, "payment-not-found", "Payment not found", f"No payment {payment_id}.")
        disputes = await dispute_store.list_disputes(conn, payment_id)
    status = payment_dispute_status([DisputeStatus(d.status) for d in disputes])
    lost = sum(d.funds_withdrawn_micros - d.funds_reinstated_micros for d in disputes)
    return {"object": "list", "payment_id": payment_id, "dispute_status": status,
            "amount_disputed_net": Money(lost, payment.currency).to_decimal_string(),
            "data": [dispute_json(d, status) for d in disputes]}


@router.post("/disputes/{dispute_id}/evidence")
async def submit_evidence(
    dispute_id: str, body: DisputeEvidence, request: Request, who: Auth,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> dict[str, Any]:
    """Finance's evidence → the DisputeWorkflow → the provider. 409 once the dispute takes no more evidence."""
    who.require("finance")
    view, _ = await _load(request, who, dispute_id)
    if view.status != DisputeStatus.NEEDS_RESPONSE or (
            view.evidence_due_by is not None and datetime.now(UTC) >= view.evidence_due_by):
        raise Problem(409, "dispute-not-accepting-evidence", "Dispute not accepting evidence",
                      f"The dispute is {view.status} (evidence due by {view.evidence_due_by}).")
    request_id = idempotency_key or secrets.token_hex(12)
    req = EvidenceRequest(request_id=request_id, evidence=body.fields(), submit=body.submit,
                          actor=f"api:{who.key_id}")
    await _update(request.app.state.temporal, view, DisputeWorkflow.submit_evidence, req, f"evidence-{request_id}")
    view, payment_status = await _load(request, who, view.id)
    return dispute_json(view, payment_status)


@router.post("/disputes/{dispute_id}/accept")
async def accept_dispute(dispute_id: str, request: Request, who: Auth, body: AcceptBody | None = None,
                         ) -> dict[str, Any]:
    """Concede the dispute: the provider closes it as lost; the funds stay with the cardholder."""
    who.require("finance")
    view, _ = await _load(request, who, dispute_id)
    if view.status != DisputeStatus.NEEDS_RESPONSE:
        raise Problem(409, "dispute-not-acceptable", "Dispute cannot be accepted",
                      f"The dispute is {view.status}; only a dispute awaiting a response can be accepted.")
    req = AcceptRequest(request_id=secrets.token_hex(12), actor=f"api:{who.key_id}")
    await _update(request.app.state.temporal, view, DisputeWorkflow.accept, req, f"accept-{req.request_id}")
    view, payment_status = await _load(request, who, view.id)
    return dispute_json(view, payment_status)


async def _update(client: Client, view: DisputeView, update: Any, arg: Any, update_id: str) -> DisputeView:
    handle = client.get_workflow_handle(view.workflow_id)
    try:
        result: DisputeView = await handle.execute_update(update, arg, id=update_id, result_type=DisputeView)
        return result
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type in UPDATE_PROBLEMS:
            status, slug = UPDATE_PROBLEMS[cause.type]
            raise Problem(status, slug, "Dispute update refused", cause.message) from exc
        raise
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # the workflow is over: so is the dispute
            raise Problem(409, "dispute-closed", "Dispute closed", "The dispute is over.") from exc
        raise Problem(503, "temporarily-unavailable", "Try again", "Could not reach the workflow.") from exc


# --- webhooks ---------------------------------------------------------------------------------------------------
def dispute_id_for(provider: str, provider_dispute_id: str) -> str:
    """Our id of a provider's dispute: derived, so every webhook about it names the same dispute and workflow."""
    return "dsp_" + hashlib.sha256(f"{provider}:{provider_dispute_id}".encode()).hexdigest()[:24]


@register_kind_handler("dispute")
async def on_dispute_event(request: Request, event: NormalizedEvent) -> tuple[str, dict[str, Any]]:
    """`charge.dispute.*`: the event names the PaymentIntent only. Find its payment and tenant
    (`paysaga.payment_by_intent`), de-duplicate in that tenant's inbox, then signal-with-start the dispute's
    workflow — in the inbox transaction, so a failed signal rolls the row back and the provider's retry counts."""
    raw = event.raw or {}
    provider_dispute_id = raw.get("id")
    if raw.get("object") != "dispute" or not isinstance(provider_dispute_id, str) or not event.intent_id:
        return "ignored", {"received": True, "ignored": "not a Stripe dispute event"}
    pool = request.app.state.pool
    owners = await pool.fetch("SELECT tenant_id::text, payment_id FROM paysaga.payment_by_intent($1)",
                              event.intent_id)
    if len(owners) != 1 or (event.tenant_id is not None and event.tenant_id != owners[0]["tenant_id"]):
        log.warning("webhook.dispute_unmatched", event_id=event.event_id, intent_id=event.intent_id,
                    matches=len(owners))
        return "ignored", {"received": True, "ignored": "no paysaga payment for this payment intent"}
    tenant_id, payment_id = owners[0]["tenant_id"], owners[0]["payment_id"]
    conn = getattr(request.state, "webhook_tx", None)
    if conn is not None:  # the event named its tenant: api.webhooks already recorded the inbox row
        return await _start_or_signal(request, conn, event, tenant_id, payment_id, provider_dispute_id)
    async with tenant_tx(pool, tenant_id) as conn:
        if not await record_inbox(conn, event):
            return "duplicate", {"received": True, "duplicate": True}
        return await _start_or_signal(request, conn, event, tenant_id, payment_id, provider_dispute_id)


async def _start_or_signal(request: Request, conn: Any, event: NormalizedEvent, tenant_id: str, payment_id: str,
                           provider_dispute_id: str) -> tuple[str, dict[str, Any]]:
    settings: Settings = request.app.state.settings
    raw = event.raw
    payment = await conn.fetchrow("SELECT provider, currency FROM paysaga.payments WHERE payment_id = $1",
                                  payment_id)
    if payment is None:
        return "ignored", {"received": True, "ignored": "unknown payment"}
    currency = str(raw.get("currency") or payment["currency"]).upper()
    try:
        amount = Money.from_minor_units(raw.get("amount"), currency)  # type: ignore[arg-type]
    except (MoneyError, TypeError):
        return "ignored", {"received": True, "ignored": "dispute amount unreadable"}
    if not amount.is_positive():
        return "ignored", {"received": True, "ignored": "dispute amount is not positive"}
    details = raw.get("evidence_details") if isinstance(raw.get("evidence_details"), dict) else {}
    due = details.get("due_by")
    dispute_id = dispute_id_for(payment["provider"], provider_dispute_id)
    reason, status = raw.get("reason"), raw.get("status")
    inp = DisputeInput(
        tenant_id=tenant_id, dispute_id=dispute_id, payment_id=payment_id, provider=payment["provider"],
        provider_dispute_id=provider_dispute_id, amount_micros=amount.micros, currency=currency,
        reason=reason[:200] if isinstance(reason, str) else None,
        provider_status=status if isinstance(status, str) else "needs_response",
        evidence_due_by=datetime.fromtimestamp(due, UTC) if isinstance(due, int) and not isinstance(due, bool)
        else None,
        actor=f"webhook:{event.event_id}", reminder_offsets_seconds=settings.dispute_reminder_offsets_seconds,
        poll_interval_seconds=settings.dispute_poll_seconds,
        provider_call_timeout_seconds=settings.provider_call_timeout_seconds,
    )
    signal = DisputeEvent(event_id=event.event_id, type=event.event_type,
                          status=status if isinstance(status, str) else None)
    try:
        await request.app.state.temporal.start_workflow(
            DisputeWorkflow.run, inp, id=dispute_workflow_id(tenant_id, dispute_id), task_queue=settings.task_queue,
            start_signal="provider_event", start_signal_args=[signal],
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(sa.TENANT_ID, tenant_id), SearchAttributePair(sa.PAYMENT_ID, payment_id),
                SearchAttributePair(sa.DISPUTE_ID, dispute_id)]),
        )
    except WorkflowAlreadyStartedError:  # the dispute's workflow has finished: the dispute is over
        return "settled", {"received": True, "note": "dispute already closed"}
    except RPCError as exc:
        raise Problem(503, "temporarily-unavailable", "Try again", "Could not reach the workflow.") from exc
    log.info("webhook.accepted", provider=event.provider, event_id=event.event_id, type=event.event_type,
             tenant_id=tenant_id, payment_id=payment_id, dispute_id=dispute_id)
    return "accepted", {"received": True}
