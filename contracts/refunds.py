"""Refunds: the RefundWorkflow's input, messages and names, the refund view, and the steps' requests."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from contracts.common import Body, DecimalAmount

REFUND_WORKFLOW = "RefundWorkflow"
SUBMITTED_UPDATE = "submitted"
PROVIDER_EVENT_SIGNAL = "provider_event"


def refund_workflow_id(tenant_id: str, refund_id: str) -> str:
    return f"refund/{tenant_id}/{refund_id}"


RefundReason = Annotated[str, StringConstraints(pattern=r"^(duplicate|fraudulent|requested_by_customer|other)$")]


class RefundCreate(Body):
    amount: DecimalAmount | None = Field(default=None,
                                         description="Decimal string; omit to refund everything still refundable")
    reason: RefundReason | None = None


class RefundInput(BaseModel):
    """The one input of RefundWorkflow. `amount_micros=None` refunds everything still refundable."""

    tenant_id: str
    refund_id: str
    payment_id: str
    amount_micros: int | None = None
    reason: str | None = None
    idempotency_key: str | None = None
    actor: str = "api"
    webhook_wait_seconds: float = 30.0
    settlement_timeout_seconds: float = 86_400.0
    provider_call_timeout_seconds: float = 30.0


class RefundView(BaseModel):
    id: str
    tenant_id: str
    payment_id: str
    amount_micros: int
    currency: str
    status: str
    reason: str | None = None
    provider_refund_id: str | None = None
    failure_code: str | None = None
    workflow_id: str
    created_at: datetime
    updated_at: datetime


class RefundRejection(BaseModel):
    code: str  # payment_not_refundable | fully_refunded | exceeds_refundable | invalid_amount | currency_mismatch
    message: str


class RecordedRefund(BaseModel):
    view: RefundView | None = None
    rejection: RefundRejection | None = None


class SubmitRefund(BaseModel):
    tenant_id: str
    refund_id: str
    payment_id: str


class ProviderRefund(BaseModel):
    id: str
    status: str  # pending | succeeded | failed | canceled | requires_action
    failure_reason: str | None = None


class RefundEvent(BaseModel):
    """A provider webhook about a refund; `event_id` de-duplicates inside the workflow."""

    event_id: str
    status: str
    provider_refund_id: str | None = None
    failure_reason: str | None = None


class SettleRefund(BaseModel):
    tenant_id: str
    refund_id: str
    outcome: str
    provider_refund_id: str | None = None
    failure_code: str | None = None
    actor: str
    correlation_id: str
