"""Provider webhooks: `POST /api/v1/billing/webhook/{provider}`, and `POST /v1/webhooks/stripe` (an alias of
provider `stripe`, what the sandbox provider and Stripe post to).

Per request: look up the rail's verifier (`api.webhook_verifiers.VERIFIERS`; unknown provider → 404 problem),
verify the signature on the raw body (bad, missing or stale → 400 `invalid-signature`), normalise the event
(`api.webhook_events`; not UTF-8 JSON of the rail's format → 400 `malformed-payload`), de-duplicate it in
`paysaga.inbox` by (tenant, provider, event id) and dispatch it by kind. Nothing a sender can put in a request
produces a 500: a database or Temporal outage is a 503 (the provider retries), never a 500.

Replay protection is twofold: the signed timestamp must be within `PAYSAGA_WEBHOOK_TOLERANCE_SECONDS` (300 s),
and an event id already in the inbox is answered `{"received": true, "duplicate": true}` without effect.

Secrets: Stripe's come from `PAYSAGA_STRIPE_WEBHOOK_SECRETS`. An HMAC rail's tenant is known only from the
payload, so its body is verified against the rail's provider-wide secrets (`paysaga.webhook_secrets` rows with
tenant NULL, plus `PAYSAGA_WEBHOOK_HMAC_SECRETS` for the rail `generic`) and, when the payload names a tenant,
that tenant's secrets too; any match is enough. The tenant-scoped secrets only ever verify events naming that
tenant, because the tenant id is inside the signed body. The table is read through the SECURITY DEFINER
function `paysaga.webhook_secrets_for(provider, tenant)`, since no tenant is set yet.

Payment events (kind `payment`): the payment is read first, in the tenant the event names. Then:

- not found, or the event names no tenant/payment → 200 `{"received": true, "ignored": …}`. A 404 would only
  make the provider retry for days an event nobody will ever act on.
- `created` and the event is an outcome (succeeded, failed, canceled) → 409 problem `payment-not-submitted`, and
  nothing is recorded. This is how the issue's "409 when the payment is not pending" is read: a confirmation or
  rejection of a payment that has not reached the provider yet is early (the provider answered before our own
  step recorded `processing`); the provider retries later and then finds it `processing`/`pending`. (The
  sandbox provider retries 409s too.) Progress news (`payment_intent.created`, `.processing`) for a `created`
  payment is answered 200 `no-op`: the saga's own provider call already carries it.
- `processing`/`pending` and news that would not move the payment (e.g. `processing` while processing) →
  inbox row, no signal, 200 `no-op`: a signal would only cost a workflow task.
- `processing` or `pending` (both awaiting the provider) → inbox row + `provider_event` signal to its
  PaymentWorkflow in ONE transaction (if the signal cannot be delivered the row is rolled back and the
  provider's retry finds the event new again) → 200 `{"received": true}`.
- terminal (`completed`, `failed`, `canceled`) → inbox row, no signal → 200
  `{"received": true, "note": "payment already <status>"}`.
- event id already in the inbox (checked before the terminal case) → 200 `{"received": true, "duplicate": true}`.

A payment-kind event whose type the workflow would not act on (a generic `payment.*` outside the mapping) is
recorded and answered 200 `ignored`. Refund, dispute and other events go, after the same inbox de-duplication,
to the handler registered in `api.webhook_events.KIND_HANDLERS` for their kind, or are answered 200
`{"received": true, "ignored": "<kind> events not handled"}`.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from fastapi import APIRouter, Request
from temporalio.service import RPCError, RPCStatusCode

from api.problems import Problem
from api.webhook_events import (
    KIND_HANDLERS,
    KindHandler,
    MalformedEvent,
    NormalizedEvent,
    normalize,
    peek_tenant,
    record_inbox,
    register_kind_handler,
)
from api.webhook_verifiers import VERIFIERS, SignatureError, Verifier
from domain.payment import PaymentStatus
from paysaga.db import tenant_tx
from paysaga.settings import Settings
from workflows.payment import PaymentWorkflow, acts_on, signal_status

# Intent statuses that settle a payment: news the saga must not miss, so an early one is retried (409).
OUTCOMES = {"succeeded", "declined", "canceled"}

__all__ = ["KIND_HANDLERS", "VERIFIERS", "KindHandler", "NormalizedEvent", "register_kind_handler", "router"]

router = APIRouter()
log = structlog.get_logger("paysaga.webhooks")


@router.post("/api/v1/billing/webhook/{provider}", tags=["webhooks"])
async def provider_webhook(provider: str, request: Request) -> dict[str, Any]:
    """A signed event from payment rail `provider` (`stripe`, `generic`, …)."""
    return await _receive(request, provider)


@router.post("/v1/webhooks/stripe", tags=["webhooks"])
async def stripe_webhook(request: Request) -> dict[str, Any]:
    """Stripe-compatible webhook endpoint (also what the sandbox provider posts to): provider `stripe`."""
    return await _receive(request, "stripe")


async def _receive(request: Request, provider: str) -> dict[str, Any]:
    metrics = request.app.state.metrics
    started = time.perf_counter()
    outcome = "error"
    try:
        outcome, body = await _handle(request, provider)
        return body
    except Problem as exc:
        outcome = exc.slug
        raise
    except Exception as exc:  # a dependency blinked or a handler failed: let the provider retry, never a 500
        outcome = "temporarily-unavailable"
        log.error("webhook.failed", provider=provider, error_type=type(exc).__name__, error=str(exc)[:200])
        detail = "The event could not be processed now."
        raise Problem(503, "temporarily-unavailable", "Try again", detail) from exc
    finally:
        metrics.webhook_events.labels(outcome).inc()
        metrics.webhook_seconds.observe(time.perf_counter() - started)


async def _handle(request: Request, provider: str) -> tuple[str, dict[str, Any]]:
    settings: Settings = request.app.state.settings
    verifier = VERIFIERS.get(provider)
    if verifier is None:
        raise Problem(404, "unknown-webhook-provider", "Unknown webhook provider",
                      "No webhook verifier is registered for this provider.")
    payload = await request.body()
    secrets = await _secrets(request, provider, verifier, payload)
    try:
        verifier.verify(payload, request.headers, secrets, int(time.time()),
                        default_tolerance_s=settings.webhook_tolerance_seconds)
    except SignatureError as exc:
        raise Problem(400, "invalid-signature", "Invalid webhook signature", exc.reason) from exc
    try:
        event = normalize(verifier.event_format, payload, provider)
    except MalformedEvent as exc:
        raise Problem(400, "malformed-payload", "Malformed webhook payload", str(exc)) from exc
    if event.kind == "payment":
        return await _payment_event(request, event)
    return await _other_event(request, event)


async def _secrets(request: Request, provider: str, verifier: Verifier, payload: bytes) -> list[str]:
    settings: Settings = request.app.state.settings
    if verifier.secret_store == "settings":
        return settings.webhook_secret_list
    tenant = peek_tenant(verifier.event_format, payload)
    rows = await request.app.state.pool.fetch(
        "SELECT secret FROM paysaga.webhook_secrets_for($1, $2::uuid)", provider, tenant)
    secrets = [row["secret"] for row in rows]
    if provider == "generic":
        secrets += settings.webhook_hmac_secret_list
    return secrets


async def _payment_event(request: Request, event: NormalizedEvent) -> tuple[str, dict[str, Any]]:
    if event.tenant_id is None or event.reference_id is None:
        return "ignored", {"received": True, "ignored": "not a paysaga payment event"}
    async with tenant_tx(request.app.state.pool, event.tenant_id) as conn:
        row = await conn.fetchrow(
            "SELECT status, workflow_id, provider FROM paysaga.payments WHERE payment_id = $1", event.reference_id)
        if row is None:
            return "ignored", {"received": True, "ignored": "unknown payment"}
        if row["provider"] not in (event.provider, "sandbox"):
            # A rail speaks only for its own payments: the holder of one rail's secret cannot settle another's.
            # (Sandbox payments accept every rail, so each rail can be exercised against the embedded stack.)
            return "ignored", {"received": True, "ignored": f"payment belongs to rail {row['provider']}"}
        status = PaymentStatus(row["status"])
        signal = event.to_provider_event()
        if status == PaymentStatus.CREATED:
            if signal_status(signal) in OUTCOMES:  # raised inside the transaction: nothing is recorded
                raise Problem(409, "payment-not-submitted", "Payment not submitted yet",
                              "The payment has not reached the provider yet; retry later.")
            # Progress news (`created`, `processing`) the saga's own provider call already told it.
            return "no-op", {"received": True, "note": "nothing to do for a payment not yet submitted"}
        if not await record_inbox(conn, event):
            return "duplicate", {"received": True, "duplicate": True}
        if status.is_terminal:
            return "settled", {"received": True, "note": f"payment already {status.value}"}
        if event.intent_status is None:
            return "ignored", {"received": True, "ignored": f"event type {event.event_type} not acted on"}
        if not acts_on(status, signal):
            # Recorded, but a signal would wake the workflow for nothing (e.g. `processing` while processing):
            # each skipped signal saves a workflow task.
            return "no-op", {"received": True, "note": f"nothing to do for a {status.value} payment"}
        handle = request.app.state.temporal.get_workflow_handle(row["workflow_id"])
        try:
            await handle.signal(PaymentWorkflow.provider_event, signal)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise Problem(503, "temporarily-unavailable", "Try again", "Could not reach the workflow.") from exc
            return "settled", {"received": True, "note": "payment already settled"}
    log.info("webhook.accepted", provider=event.provider, event_id=event.event_id, type=event.event_type,
             tenant_id=event.tenant_id, payment_id=event.reference_id)
    return "accepted", {"received": True}


async def _other_event(request: Request, event: NormalizedEvent) -> tuple[str, dict[str, Any]]:
    handler = KIND_HANDLERS.get(event.kind)
    if event.tenant_id is None:
        if handler is None:
            return "ignored", {"received": True, "ignored": f"{event.kind} events not handled"}
        request.state.webhook_tx = None
        return await handler(request, event)
    async with tenant_tx(request.app.state.pool, event.tenant_id) as conn:
        if not await record_inbox(conn, event):
            return "duplicate", {"received": True, "duplicate": True}
        if handler is None:
            return "ignored", {"received": True, "ignored": f"{event.kind} events not handled"}
        request.state.webhook_tx = conn
        try:
            return await handler(request, event)
        finally:
            request.state.webhook_tx = None
