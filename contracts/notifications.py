"""Notifications: something a person should hear about, sent through the notification port."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Notification(BaseModel):
    """`notification_id` is deterministic, so a retried send is recognisable by the channel."""

    notification_id: str
    tenant_id: str
    kind: str  # dispute.created | dispute.evidence_reminder | … | invoice.finalized | invoice.payment_failed | …
    subject: str
    dispute_id: str | None = None
    payment_id: str | None = None
    invoice_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
