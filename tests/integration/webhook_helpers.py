"""Build and send Stripe-shaped, correctly signed webhook events, as the provider would."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx

from activities.providers.webhooks.stripe_signature import sign_stripe_payload
from tests.stack import Stack


def intent_event(payment: dict[str, Any], tenant_id: str, status: str, event_type: str | None = None,
                 event_id: str | None = None, decline_code: str | None = None) -> dict[str, Any]:
    error = {"code": "card_declined", "decline_code": decline_code, "message": "declined"} if decline_code else None
    return {
        "id": event_id or f"evt_test_{uuid.uuid4().hex[:16]}", "object": "event",
        "type": event_type or f"payment_intent.{status}", "created": int(time.time()),
        "data": {"object": {
            "id": payment["provider_intent_id"], "object": "payment_intent", "status": status,
            "amount": 1000, "currency": payment["currency"].lower(), "last_payment_error": error,
            "metadata": {"tenant_id": tenant_id, "payment_id": payment["id"], "attempt": "1"},
        }},
    }


async def post_event(stack: Stack, event: dict[str, Any], *, secret: str | None = None,
                     timestamp: int | None = None) -> httpx.Response:
    body = json.dumps(event).encode()
    header = sign_stripe_payload(body, secret or stack.settings.webhook_secret_list[0], timestamp or int(time.time()))
    async with stack.http(None) as http:
        return await http.post("/v1/webhooks/stripe", content=body,
                               headers={"Stripe-Signature": header, "Content-Type": "application/json"})
