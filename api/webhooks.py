"""`POST /v1/webhooks/stripe`: verify the signature on the raw body, de-duplicate by event id, signal the saga.

Answers 2xx fast; a bad or missing signature, a stale timestamp, a non-UTF-8 or non-JSON body is a 400
problem, never a 500. The inbox row and the signal share one transaction: if the signal cannot be delivered
the row is rolled back and the provider's retry finds the event new again.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import structlog
from fastapi import APIRouter, Request
from temporalio.service import RPCError, RPCStatusCode

from api.problems import Problem
from api.stripe_signature import SignatureError, verify_stripe_signature
from paysaga.db import tenant_tx
from paysaga.settings import Settings
from workflows.contracts import ProviderEvent, payment_workflow_id
from workflows.payment import PaymentWorkflow

router = APIRouter()
log = structlog.get_logger("paysaga.webhooks")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@router.post("/v1/webhooks/stripe", tags=["webhooks"])
async def stripe_webhook(request: Request) -> dict[str, Any]:
    """Stripe-compatible webhook endpoint (also what the sandbox provider posts to)."""
    metrics = request.app.state.metrics
    started = time.perf_counter()
    outcome = "error"
    try:
        outcome, body = await _handle(request)
        return body
    except Problem as exc:
        outcome = exc.slug
        raise
    finally:
        metrics.webhook_events.labels(outcome).inc()
        metrics.webhook_seconds.observe(time.perf_counter() - started)


async def _handle(request: Request) -> tuple[str, dict[str, Any]]:
    settings: Settings = request.app.state.settings
    payload = await request.body()
    try:
        verify_stripe_signature(payload, request.headers.get("stripe-signature"), settings.webhook_secret_list,
                                settings.webhook_tolerance_seconds, int(time.time()))
    except SignatureError as exc:
        raise Problem(400, "invalid-signature", "Invalid webhook signature", exc.reason) from exc
    event = _parse(payload)
    obj = event["data"]["object"]
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    tenant_id, payment_id = meta.get("tenant_id"), meta.get("payment_id")
    if obj.get("object") != "payment_intent" or not (isinstance(tenant_id, str) and _UUID.match(tenant_id)) \
            or not isinstance(payment_id, str):
        return "ignored", {"received": True, "ignored": "not a paysaga payment event"}

    error = obj.get("last_payment_error") if isinstance(obj.get("last_payment_error"), dict) else {}
    signal = ProviderEvent(
        event_id=event["id"], type=event["type"], intent_id=str(obj.get("id")), intent_status=obj.get("status"),
        decline_code=error.get("decline_code") or error.get("code"), failure_message=error.get("message"),
    )
    handle = request.app.state.temporal.get_workflow_handle(payment_workflow_id(tenant_id, payment_id))
    async with tenant_tx(request.app.state.pool, tenant_id) as conn:
        fresh = await conn.fetchval(
            """INSERT INTO paysaga.inbox (tenant_id, source, event_id, event_type) VALUES ($1, 'stripe', $2, $3)
               ON CONFLICT DO NOTHING RETURNING true""",
            tenant_id, event["id"], event["type"],
        )
        if not fresh:
            return "duplicate", {"received": True, "duplicate": True}
        try:
            await handle.signal(PaymentWorkflow.provider_event, signal)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise Problem(503, "temporarily-unavailable", "Try again", "Could not reach the workflow.") from exc
            return "settled", {"received": True, "note": "payment already settled"}
    log.info("webhook.accepted", event_id=event["id"], type=event["type"], tenant_id=tenant_id,
             payment_id=payment_id)
    return "accepted", {"received": True}


def _parse(payload: bytes) -> dict[str, Any]:
    try:
        event = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Problem(400, "malformed-payload", "Malformed webhook payload", "The body is not UTF-8 JSON.") from exc
    if not (isinstance(event, dict) and isinstance(event.get("id"), str) and isinstance(event.get("type"), str)
            and isinstance(event.get("data"), dict) and isinstance(event["data"].get("object"), dict)):
        raise Problem(400, "malformed-payload", "Malformed webhook payload",
                      "Expected a Stripe event with id, type and data.object.")
    return event
