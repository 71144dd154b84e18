"""Payments: start one (update-with-start of its PaymentWorkflow), read, list, cancel; and what a provider's
webhook about a payment does."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import structlog
from temporalio.client import WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.stores import connected_accounts as account_store
from activities.stores import payments as store
from activities.stores import renewals as renewal_store
from contracts.auth import Principal
from contracts.errors import NOT_CANCELABLE
from contracts.payments import (
    CANCEL_UPDATE,
    PAYMENT_WORKFLOW,
    PROVIDER_EVENT_SIGNAL,
    STATUS_QUERY,
    SUBMITTED_UPDATE,
    CancelBody,
    CancelRequest,
    PaymentCreate,
    PaymentInput,
    PaymentView,
    payment_workflow_id,
    start_search_attributes,
)
from contracts.webhooks import NormalizedEvent
from domain.intents import WebhookAction, command_for, news_of, webhook_action
from domain.money import Money, MoneyError
from domain.payment import PaymentStatus
from paysaga.db import tenant_tx
from paysaga.settings import Settings
from services import audit, idempotency, payment_methods, temporal
from services.context import AppContext
from services.errors import BadRequest, Conflict, Unprocessable, not_found, temporarily_unavailable
from services.ids import new_id
from services.timings import collection_timings

log = structlog.get_logger("paysaga.webhooks")
PAYMENTS_PATH = "/v1/payments"


def payment_json(view: PaymentView) -> dict[str, Any]:
    money = Money(view.amount_micros, view.currency)
    return {
        "id": view.id, "object": "payment", "status": view.status.value,
        "amount": money.to_decimal_string(), "amount_micros": view.amount_micros, "currency": view.currency,
        "customer_id": view.customer_id, "payment_method_id": view.payment_method_id,
        "description": view.description, "metadata": view.metadata, "provider": view.provider,
        "provider_intent_id": view.provider_intent_id, "failure_code": view.failure_code,
        "failure_message": view.failure_message, "next_action": view.next_action,
        "risk": {"score": view.risk_score, "reasons": view.risk_reasons or []},
        "fraud": {"score": view.fraud_score, "action": view.fraud_action,
                  "reasons": (view.fraud_reasons or [])[:3]} if view.fraud_score is not None else None,
        "workflow_id": view.workflow_id,
        "destination": view.destination_account_id,
        "application_fee": (Money(view.application_fee_micros, view.currency).to_decimal_string()
                            if view.application_fee_micros is not None else None),
        "created_at": view.created_at.isoformat(), "updated_at": view.updated_at.isoformat(),
    }


def parse_amount(amount: str, currency: str) -> Money:
    try:
        money = Money.parse(amount, currency)
    except MoneyError as exc:
        raise Unprocessable("invalid-amount", "Invalid amount", str(exc)) from exc
    if not money.is_positive():
        raise Unprocessable("invalid-amount", "Invalid amount", "The amount must be greater than zero.")
    return money


def application_fee(body: PaymentCreate, money: Money) -> Money | None:
    """The platform's fee of a split charge (None without a destination): whole minor units, within the amount."""
    if body.destination is None:
        if body.application_fee is not None:
            raise Unprocessable("application-fee-without-destination", "Invalid application fee",
                                "An application fee is kept from a split charge: name its destination.")
        return None
    if body.application_fee is None:
        return Money.zero(money.currency)
    try:
        fee = Money.parse(body.application_fee, money.currency)
    except MoneyError as exc:
        raise Unprocessable("invalid-application-fee", "Invalid application fee", str(exc)) from exc
    if fee.is_negative() or fee > money:
        raise Unprocessable("invalid-application-fee", "Invalid application fee",
                            f"The application fee must be within 0 and the amount ({money.to_decimal_string()}).")
    return fee


def payment_input(settings: Settings, who: Principal, payment_id: str, body: PaymentCreate, money: Money,
                  key: str | None) -> PaymentInput:
    """The workflow's input; timings come from settings now and travel with the run from then on."""
    fee = application_fee(body, money)
    return PaymentInput(
        tenant_id=who.tenant_id, payment_id=payment_id, customer_id=body.customer_id,
        payment_method_id=body.payment_method_id, amount_micros=money.micros, currency=money.currency,
        description=body.description, metadata=body.metadata, idempotency_key=key, actor=who.actor,
        destination_account_id=body.destination, application_fee_micros=fee.micros if fee is not None else None,
        **collection_timings(settings).model_dump(),
    )


async def create(ctx: AppContext, who: Principal, body: PaymentCreate, key: str | None) -> idempotency.Answer:
    """Start the payment's workflow and answer once the provider has its PaymentIntent; a retry with the same
    Idempotency-Key answers the same payment."""
    key = idempotency.require_key(key)
    money = parse_amount(body.amount, body.currency)
    application_fee(body, money)

    async def check(conn: asyncpg.Connection) -> None:
        await payment_methods.chargeable(conn, body.payment_method_id, body.customer_id)
        if body.destination is not None:
            account = await account_store.fetch(conn, body.destination)
            if account is None:
                raise Unprocessable("unknown-connected-account", "Unknown connected account",
                                    f"No connected account {body.destination}.")
            if account["onboarding_status"] == "rejected":
                raise Unprocessable("connected-account-rejected", "Connected account rejected",
                                    f"{body.destination} was rejected in onboarding: it takes no charges.")

    async def start(payment_id: str) -> idempotency.Answer:
        view = await start_workflow(ctx, payment_input(ctx.settings, who, payment_id, body, money, key))
        return idempotency.Answer(201, payment_json(view))

    async def record(conn: asyncpg.Connection, answer: idempotency.Answer) -> None:
        payment = answer.body
        await audit.record(conn, who, "payment.create", "payment", payment["id"], payment["workflow_id"],
                           amount_micros=payment["amount_micros"], currency=payment["currency"],
                           idempotency_key=key)

    return await idempotency.once(ctx, who, key, PAYMENTS_PATH, body.model_dump(mode="json"), new_id("pay"), start,
                                  check=check, record=record)


async def start_workflow(ctx: AppContext, inp: PaymentInput) -> PaymentView:
    """Update-with-start: returns once the provider's PaymentIntent exists. A second call joins the same run."""
    wf_id = payment_workflow_id(inp.tenant_id, inp.payment_id)

    def start() -> WithStartWorkflowOperation[Any, Any]:
        return WithStartWorkflowOperation(
            PAYMENT_WORKFLOW, inp, id=wf_id, task_queue=ctx.settings.task_queue, result_type=PaymentView,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            # A closed payment workflow is never started again for the same payment.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=start_search_attributes(inp), execution_timeout=timedelta(days=7),
        )

    try:
        return await temporal.update_with_start(ctx.temporal, SUBMITTED_UPDATE, start, result_type=PaymentView,
                                            admission=ctx.admission)
    except (RPCError, WorkflowAlreadyStartedError, WorkflowUpdateFailedError) as exc:
        # The run already closed (a retry after the payment settled, or a failed run): ask the run itself, which
        # a query can do after it closed, for the payment as it last saw it.
        try:
            closed: PaymentView | None = await ctx.temporal.get_workflow_handle(wf_id).query(
                STATUS_QUERY, result_type=PaymentView)
        except Exception:
            raise exc from None
        if closed is None:
            raise
        return closed


async def get(ctx: AppContext, who: Principal, payment_id: str) -> dict[str, Any]:
    return payment_json(await load(ctx, who, payment_id))


async def load(ctx: AppContext, who: Principal, payment_id: str) -> PaymentView:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        return await load_in(conn, payment_id)


async def load_in(conn: asyncpg.Connection, payment_id: str) -> PaymentView:
    view = await store.fetch_view(conn, payment_id)
    if view is None:
        raise not_found("payment", payment_id)
    return view


async def list_page(ctx: AppContext, who: Principal, limit: int, starting_after: str | None) -> dict[str, Any]:
    """Newest first; the last id of a page is the cursor of the next."""
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        try:
            views, has_more = await store.list_page(conn, limit, starting_after)
        except LookupError:
            raise BadRequest("invalid-cursor", "Invalid cursor", f"No payment {starting_after}.") from None
    page = [payment_json(v) for v in views]
    return {"object": "list", "data": page, "has_more": has_more,
            "next_cursor": page[-1]["id"] if has_more else None}


async def cancel(ctx: AppContext, who: Principal, payment_id: str, body: CancelBody | None, key: str | None
                 ) -> dict[str, Any]:
    view = await load(ctx, who, payment_id)
    if view.status.is_terminal:
        if view.status == PaymentStatus.CANCELED:
            return payment_json(view)
        raise _not_cancelable(f"The payment is {view.status.value}.")
    request_id = key or new_id("cancel")
    try:
        result = await temporal.update(
            ctx.temporal, view.workflow_id, CANCEL_UPDATE,
            CancelRequest(request_id=request_id, reason=(body or CancelBody()).reason),
            update_id=f"cancel-{request_id}", result_type=PaymentView)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == NOT_CANCELABLE:
            raise _not_cancelable(cause.message) from exc
        raise
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        result = await load(ctx, who, payment_id)  # the run ended meanwhile: canceled (by the provider), or not
        if result.status != PaymentStatus.CANCELED:
            raise _not_cancelable("The payment has already settled.") from exc
    await audit.record_tx(ctx, who, "payment.cancel", "payment", payment_id, view.workflow_id,
                          cancel_request_id=request_id, status=result.status.value)
    return payment_json(result)


def _not_cancelable(detail: str) -> Conflict:
    return Conflict("payment-not-cancelable", "Payment cannot be canceled", detail)


# --- webhooks -------------------------------------------------------------------------------------------------
async def on_webhook(ctx: AppContext, conn: asyncpg.Connection | None, event: NormalizedEvent
                     ) -> tuple[str, dict[str, Any]]:
    """News about a payment, in the tenant transaction that recorded its inbox row. The signal to the payment's
    workflow shares that transaction: if the signal cannot be delivered (or the news is too early) the row is
    rolled back, and the provider's retry finds the event new again."""
    if conn is None or event.reference_id is None:
        return "ignored", {"received": True, "ignored": "not a paysaga payment event"}
    row = await store.routing(conn, event.reference_id)
    if row is None:
        return "ignored", {"received": True, "ignored": "unknown payment"}
    if row["provider"] not in (event.provider, "sandbox"):
        # A rail speaks only for its own payments: the holder of one rail's secret cannot settle another's.
        # (Sandbox payments accept every rail, so each rail can be exercised against the embedded stack.)
        return "ignored", {"received": True, "ignored": f"payment belongs to rail {row['provider']}"}
    status = PaymentStatus(row["status"])
    signal = event.to_provider_event()
    # A renewal's charge still `created` belongs to the batch that sends it: the batch records the provider's
    # answer to its own (idempotent) request, or polls for it.
    batched = status == PaymentStatus.CREATED and (
        await renewal_store.charge_state(conn, event.reference_id) == "created")
    action = webhook_action(status, news_of(signal.type, signal.intent_status) if event.intent_status else None,
                            sender_records_answer=batched)
    if action == WebhookAction.RETRY_LATER:  # raised inside the transaction: the inbox row is rolled back
        raise Conflict("payment-not-submitted", "Payment not submitted yet",
                       "The payment has not reached the provider yet; retry later.")
    if action == WebhookAction.NOT_SUBMITTED:  # the saga's own provider call already carries this news
        return "no-op", {"received": True, "note": "nothing to do for a payment not yet submitted"}
    if action == WebhookAction.SETTLED:
        return "settled", {"received": True, "note": f"payment already {status.value}"}
    if action == WebhookAction.IGNORED:
        return "ignored", {"received": True, "ignored": f"event type {event.event_type} not acted on"}
    if action == WebhookAction.NO_OP:  # recorded; a signal would wake the workflow for nothing
        return "no-op", {"received": True, "note": f"nothing to do for a {status.value} payment"}
    if await renewal_store.owns_payment(conn, event.reference_id):
        # A renewal's payment has no workflow of its own: the news is applied here, in the inbox's transaction
        # (the payment, its invoice, its subscription), as the workflow would apply it.
        command = command_for(status, news_of(signal.type, signal.intent_status), signal.decline_code,
                              signal.failure_message)
        if command is not None:
            view, _ = await store.apply_transition(conn, event.reference_id, command, {}, "webhook",
                                                   row["workflow_id"])
            if view.status.is_terminal:
                await renewal_store.set_charge_state(conn, [view.id], "settled")
        log.info("webhook.applied", provider=event.provider, event_id=event.event_id, type=event.event_type,
                 tenant_id=event.tenant_id, payment_id=event.reference_id)
        return "accepted", {"received": True}
    try:
        await ctx.temporal.get_workflow_handle(row["workflow_id"]).signal(PROVIDER_EVENT_SIGNAL, signal)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise temporarily_unavailable() from exc
        return "settled", {"received": True, "note": "payment already settled"}
    log.info("webhook.accepted", provider=event.provider, event_id=event.event_id, type=event.event_type,
             tenant_id=event.tenant_id, payment_id=event.reference_id)
    return "accepted", {"received": True}
