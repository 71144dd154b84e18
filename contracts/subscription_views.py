"""How a subscription and its lifecycle events are shown: the API's answers and the outbox messages' payloads."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from domain.subscription import EventType, Subscription, SubscriptionEvent, allowed_events

E = EventType


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def actions(subscription: Subscription) -> list[str]:
    """What the API can do with the subscription now: clients need not encode the state machine."""
    allowed = set(allowed_events(subscription.status))
    out: list[str] = []
    if E.CANCELED in allowed:
        out.append("cancel")
    if E.CANCEL_SCHEDULED in allowed and not subscription.cancel_at_period_end:
        out.append("cancel_at_period_end")
    if E.CANCEL_UNSCHEDULED in allowed and subscription.cancel_at_period_end:
        out.append("undo_cancel")
    if E.ITEM_CHANGED in allowed or E.CHANGE_SCHEDULED in allowed:
        out.append("change")
    if E.SCHEDULED_CHANGE_CANCELED in allowed and subscription.scheduled_change is not None:
        out.append("cancel_scheduled_change")
    if E.COLLECTION_PAUSED in allowed:
        out.append("pause_collection")
    if E.COLLECTION_RESUMED in allowed and subscription.collection_pause is not None:
        out.append("resume_collection")
    if E.RESUMED in allowed:
        out.append("resume")
    if E.PAYMENT_METHOD_UPDATED in allowed:
        out.append("update_payment_method")
    return out


def subscription_json(subscription: Subscription, row: Mapping[str, Any]) -> dict[str, Any]:
    s = subscription
    pause = s.collection_pause
    scheduled = s.scheduled_change
    return {
        "id": s.subscription_id, "object": "subscription", "status": s.status.value,
        "customer_id": s.customer_id, "price_id": s.item.price.price_id, "quantity": s.item.quantity,
        "currency": s.currency, "collection_method": row.get("collection_method", "charge_automatically"),
        "days_until_due": row.get("days_until_due"), "default_payment_method_id": s.default_payment_method,
        "current_period_start": _iso(s.current_period.start), "current_period_end": _iso(s.current_period.end),
        "billing_cycle_anchor": _iso(s.cycle.anchor),
        "billing_cycle": {"interval": s.cycle.interval.value, "interval_count": s.cycle.interval_count,
                          "day_of_month": s.cycle.day_of_month},
        "trial_start": _iso(s.trial_start), "trial_end": _iso(s.trial_end),
        "trial_end_behavior": s.trial_end_behavior.value,
        "cancel_at_period_end": s.cancel_at_period_end, "canceled_at": _iso(s.canceled_at),
        "ended_at": _iso(s.ended_at),
        "pause_collection": {"behavior": pause.behavior.value, "resumes_at": _iso(pause.resumes_at)}
        if pause else None,
        "scheduled_change": {"price_id": scheduled.price.price_id, "quantity": scheduled.quantity,
                             "effective_at": _iso(s.current_period.end)} if scheduled else None,
        "latest_invoice_id": row.get("latest_invoice_id"), "next_action_at": _iso(row.get("next_action_at")),
        "actions": actions(s), "metadata": row.get("metadata") or {},
        "created_at": _iso(s.created_at), "updated_at": _iso(row.get("updated_at")),
    }


def event_json(event: SubscriptionEvent) -> dict[str, Any]:
    return {"id": event.event_id, "object": "subscription_event", "type": event.name, "seq": event.seq,
            "old_status": event.old_status.value if event.old_status else None,
            "new_status": event.new_status.value, "occurred_at": _iso(event.at), "data": dict(event.data)}
