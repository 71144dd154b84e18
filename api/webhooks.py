"""Provider webhooks: `POST /api/v1/billing/webhook/{provider}`, and `POST /v1/webhooks/stripe` (an alias of
provider `stripe`, what the sandbox provider and Stripe post to).

The intake (`services.webhooks`) verifies, normalises, de-duplicates and dispatches. Answers: 200 for news
(acted on, recorded, or ignored with the reason), 409 when an outcome arrives for a payment that has not reached
the provider yet (the provider retries; a renewal batch's charge excepted: its batch records the answer itself),
400 for a bad signature or body, 404 for an unknown provider, and 503 when a dependency is down — never 500,
whatever a sender puts in a request.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Header, Request

from api.docs import problems
from api.problems import Problem
from api.schemas import WebhookAck
from services.errors import ServiceError
from services.webhooks import WebhookIntake

router = APIRouter()
log = structlog.get_logger("paysaga.webhooks")


HOOK = {"tags": ["webhooks"], "response_model": WebhookAck, "response_model_exclude_unset": True,
        "responses": problems(400, 404, 409)}


@router.post("/api/v1/billing/webhook/{provider}", **HOOK)
async def provider_webhook(provider: str, request: Request) -> dict[str, Any]:
    """A signed event from payment rail `provider` (`stripe`, `generic`, …)."""
    return await _receive(request, provider)


@router.post("/v1/webhooks/stripe", **HOOK)
async def stripe_webhook(
    request: Request,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature", description="t=…,v1=…")] = None,
) -> dict[str, Any]:
    """Stripe-compatible webhook endpoint (also what the sandbox provider posts to): provider `stripe`."""
    return await _receive(request, "stripe")


async def _receive(request: Request, provider: str) -> dict[str, Any]:
    metrics = request.app.state.metrics
    intake: WebhookIntake = request.app.state.webhooks
    started = time.perf_counter()
    outcome = "error"
    try:
        outcome, body = await intake.receive(provider, request.headers, await request.body())
        return body
    except ServiceError as exc:
        outcome = exc.slug
        raise
    except Exception as exc:  # a dependency blinked or a handler failed: let the provider retry, never a 500
        outcome = "temporarily-unavailable"
        log.error("webhook.failed", provider=provider, error_type=type(exc).__name__, error=str(exc)[:200])
        raise Problem(503, "temporarily-unavailable", "Try again", "The event could not be processed now.",
                      headers={"Retry-After": "5"}) from exc
    finally:
        metrics.webhook_events.labels(outcome).inc()
        metrics.webhook_seconds.observe(time.perf_counter() - started)
