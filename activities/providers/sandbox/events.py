"""What the sandbox tells the API: Stripe-shaped event envelopes around Stripe-shaped objects, the signer, and
`publish`, which writes events to `sandbox.events` in the caller's transaction.

The shapes follow Stripe's API version 2025-01-27 as far as paysaga reads them (api/webhook_events.py), so the
webhook path that handles the sandbox's events is the one that handles Stripe's. Events are written, never sent,
here: the sandbox network (network.py) delivers them, as Stripe's servers do, so that the process that made the
change (a worker, the API) does none of the provider's work and a crash after the commit loses nothing.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from activities.providers.base import Intent
from activities.providers.webhooks.stripe_signature import sign_stripe_payload
from paysaga.json_text import dumps as json_text
from paysaga.settings import Settings

API_VERSION = "2025-01-27"

# NOTIFY channel: a commit that wrote events (or made something due later) wakes the network at once.
CHANNEL = "sandbox_network"

# Why an event of a type the endpoint is not subscribed to was never sent (its `last_error`).
NOT_SUBSCRIBED = "the endpoint is not subscribed to this event type"


@dataclass(frozen=True)
class Outgoing:
    """An event to deliver `delay_seconds` after the transaction that writes it."""

    tenant_id: UUID | str
    event: dict[str, Any]
    delay_seconds: float = 0.0


# The sandbox signs its webhooks exactly as Stripe does.
sign = sign_stripe_payload


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


def refund_event(event_type: str, refund: asyncpg.Record, currency: str) -> dict[str, Any]:
    return envelope(event_type, {
        "id": refund["refund_id"], "object": "refund", "amount": refund["amount_minor"],
        "currency": currency.lower(), "status": refund["status"], "payment_intent": refund["intent_id"],
        "failure_reason": refund["failure_reason"], "metadata": json_object(refund["metadata"]),
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


async def publish(conn: asyncpg.Connection, settings: Settings, events: Sequence[Outgoing]) -> None:
    """Write `events` in `conn`'s transaction and notify the network, which hears it only if that commits.

    An event of a type the endpoint is not subscribed to is recorded as already dropped, with the reason the
    network would give, so it never takes a delivery slot. Always notifies, even for delayed events: the network
    then recomputes when it next has work."""
    if not events:
        return
    subscribed = [settings.sandbox_subscribes_to(o.event["type"]) for o in events]
    await conn.execute(
        """WITH written AS (
               INSERT INTO sandbox.events (event_id, tenant_id, type, payload, deliver_after, state, last_error)
               SELECT e.id, e.tenant_id, e.type, e.payload::jsonb, now() + make_interval(secs => e.delay),
                      CASE WHEN e.subscribed THEN 'pending' ELSE 'dropped' END,
                      CASE WHEN NOT e.subscribed THEN $7 END
               FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::float8[], $8::bool[])
                    WITH ORDINALITY AS e(id, tenant_id, type, payload, delay, subscribed, n)
               ORDER BY e.n)
           SELECT pg_notify($6, '')""",
        [o.event["id"] for o in events], [o.tenant_id for o in events], [o.event["type"] for o in events],
        [json_text(o.event) for o in events], [o.delay_seconds for o in events], CHANNEL, NOT_SUBSCRIBED,
        subscribed,
    )
