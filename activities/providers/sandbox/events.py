"""What the sandbox tells the API: Stripe-shaped event envelopes around Stripe-shaped objects, and the signer.

The shapes follow Stripe's API version 2025-01-27 as far as paysaga reads them (api/webhook_events.py), so the
webhook path that handles the sandbox's events is the one that handles Stripe's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import asyncpg

from activities.providers.base import Intent

API_VERSION = "2025-01-27"


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The `Stripe-Signature` header value: HMAC-SHA256 of `"{t}." + body` under the endpoint secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def json_object(value: Any) -> dict[str, Any]:
    """A jsonb column as a dict, whether or not the connection decodes jsonb."""
    return value if isinstance(value, dict) else json.loads(value or "{}")


def envelope(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"evt_sbx_{secrets.token_hex(12)}", "object": "event", "type": event_type,
            "created": int(time.time()), "livemode": False, "api_version": API_VERSION,
            "data": {"object": obj}}


def intent_event(event_type: str, intent: Intent) -> dict[str, Any]:
    last_error = (
        {"type": "card_error", "code": "card_declined", "decline_code": intent.decline_code,
         "message": intent.failure_message}
        if intent.decline_code else None
    )
    next_action = (
        {"type": "redirect_to_url", "redirect_to_url": {"url": intent.next_action_url}}
        if intent.next_action_url else None
    )
    return envelope(event_type, {
        "id": intent.id, "object": "payment_intent", "amount": intent.amount_minor,
        "currency": intent.currency.lower(), "status": intent.status.value, "metadata": intent.metadata,
        "last_payment_error": last_error, "next_action": next_action,
    })


def refund_event(event_type: str, refund: asyncpg.Record, intent: asyncpg.Record) -> dict[str, Any]:
    return envelope(event_type, {
        "id": refund["refund_id"], "object": "refund", "amount": refund["amount_minor"],
        "currency": intent["currency"].lower(), "status": refund["status"], "payment_intent": intent["intent_id"],
        "failure_reason": refund["failure_reason"], "metadata": refund["metadata"],
    })


def dispute_event(event_type: str, dispute: asyncpg.Record) -> dict[str, Any]:
    evidence = json_object(dispute["evidence"])
    due_by = dispute["evidence_due_by"].timestamp()
    return envelope(event_type, {
        "id": dispute["dispute_id"], "object": "dispute", "amount": dispute["amount_minor"],
        "currency": dispute["currency"].lower(), "payment_intent": dispute["intent_id"],
        "charge": "ch_sbx_" + dispute["intent_id"].removeprefix("pi_sbx_"), "reason": dispute["reason"],
        "status": dispute["status"], "evidence": evidence, "is_charge_refundable": False, "livemode": False,
        "created": int(dispute["created_at"].timestamp()), "metadata": {},
        "evidence_details": {"due_by": int(due_by), "has_evidence": bool(evidence),
                             "past_due": due_by <= time.time(),
                             "submission_count": dispute["submission_count"]},
    })
