"""Messages between the API, the payment workflow and its activities (serialised by the pydantic converter).

Kept free of I/O imports: the workflow sandbox re-imports this module on every run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from domain.payment import PaymentStatus


def payment_workflow_id(tenant_id: str, payment_id: str) -> str:
    """One workflow per payment; the id is a business id so a retried start joins the same run."""
    return f"payment/{tenant_id}/{payment_id}"


class PaymentInput(BaseModel):
    """The one input of PaymentWorkflow."""

    tenant_id: str
    payment_id: str
    customer_id: str
    payment_method_id: str
    amount_micros: int
    currency: str
    description: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    idempotency_key: str | None = None
    actor: str = "api"
    # Timings travel with the input (not read from settings) so that a replay sees the values the run saw.
    webhook_wait_seconds: float = 30.0
    three_ds_timeout_seconds: float = 900.0
    settlement_timeout_seconds: float = 86_400.0
    provider_call_timeout_seconds: float = 30.0
    provider_max_attempts: int = 8  # then the call goes to the dead-letter queue
    provider_retry_initial_seconds: float = 1.0  # exponential backoff, doubling, per the provider's (rail's) policy
    provider_retry_max_interval_seconds: float = 60.0
    dead_letter_hold_seconds: float = 7 * 86_400.0  # how long a dead letter waits for a replay


class PaymentView(BaseModel):
    """A payment as the API shows it."""

    id: str
    tenant_id: str
    customer_id: str
    payment_method_id: str
    amount_micros: int
    currency: str
    status: PaymentStatus
    description: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    provider: str
    provider_intent_id: str | None = None
    attempt: int = 1
    failure_code: str | None = None
    failure_message: str | None = None
    next_action: dict[str, Any] | None = None
    risk_score: int | None = None
    risk_reasons: list[str] | None = None
    fraud_score: int | None = None
    fraud_action: str | None = None
    fraud_reasons: list[dict[str, Any]] | None = None
    workflow_id: str
    event_seq: int = 0  # how many lifecycle events the payment has: the optimistic-concurrency token
    created_at: datetime
    updated_at: datetime


class ProviderEvent(BaseModel):
    """A provider webhook, reduced to what the saga needs. `event_id` de-duplicates inside the workflow."""

    event_id: str
    type: str
    intent_id: str | None = None
    intent_status: str | None = None
    decline_code: str | None = None
    failure_message: str | None = None


class CancelRequest(BaseModel):
    request_id: str
    reason: str = "requested_by_customer"


class TransitionRequest(BaseModel):
    tenant_id: str
    payment_id: str
    transition: Literal[
        "mark_pending", "mark_processing", "mark_completed", "mark_failed", "mark_canceled",
        "confirm_from_pending", "reject_from_pending", "settle_from_processing", "reconcile",
    ]
    actor: str
    correlation_id: str
    provider_intent_id: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    reason: str | None = None
    outcome: PaymentStatus | None = None  # for reconcile
    next_action: dict[str, Any] | None = None
    clear_next_action: bool = False
    expected_seq: int | None = None  # the event_seq the workflow last saw; makes a re-run transition a no-op


class RiskRequest(BaseModel):
    tenant_id: str
    payment_id: str
    customer_id: str
    amount_micros: int
    currency: str


class RiskResult(BaseModel):
    allowed: bool
    score: int
    reasons: list[str]
    decline_code: str | None = None


class IntentRequest(BaseModel):
    tenant_id: str
    payment_id: str
    attempt: int
    payment_method_id: str
    amount_micros: int
    currency: str
    description: str | None = None
    request_three_d_secure: bool = False  # asked for by the advisory fraud score


class IntentOutcome(BaseModel):
    intent_id: str | None
    status: str  # a provider IntentStatus value, or "declined"
    decline_code: str | None = None
    failure_message: str | None = None
    next_action_url: str | None = None


# --- refunds ----------------------------------------------------------------------------------------------------
def refund_workflow_id(tenant_id: str, refund_id: str) -> str:
    return f"refund/{tenant_id}/{refund_id}"


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


# --- reconciliation ---------------------------------------------------------------------------------------------
RECONCILIATION_EVENT = "reconciliation"  # ProviderEvent.type of news brought by the reconciler


class ReconcileInput(BaseModel):
    older_than_seconds: float = 600.0
    limit: int = 200
    dry_run: bool = False


class ReconcileReport(BaseModel):
    examined: int = 0
    signalled: int = 0  # news handed to a running payment workflow
    transitioned: int = 0  # applied directly: the payment's workflow was no longer running
    unchanged: int = 0  # the provider is still working on it
    errors: int = 0
    dry_run: bool = False
    actions: list[dict[str, str]] = Field(default_factory=list)


# --- dead letters -----------------------------------------------------------------------------------------------
class DeadLetter(BaseModel):
    tenant_id: str
    dlq_id: str
    workflow_id: str
    payment_id: str | None = None
    step: str
    reason: str
    input: dict[str, Any]


class ReplayRequest(BaseModel):
    dlq_id: str
    actor: str = "operator"
    tenant_id: str | None = None  # filled in by the workflow, which knows its tenant


class ReplayResult(BaseModel):
    dlq_id: str
    status: str


# --- disputes ---------------------------------------------------------------------------------------------------
def dispute_workflow_id(tenant_id: str, dispute_id: str) -> str:
    return f"dispute/{tenant_id}/{dispute_id}"


DAY_SECONDS = 86_400.0


class DisputeInput(BaseModel):
    """The one input of DisputeWorkflow, built from the first webhook about the dispute."""

    tenant_id: str
    dispute_id: str
    payment_id: str
    provider: str
    provider_dispute_id: str
    amount_micros: int
    currency: str
    reason: str | None = None
    provider_status: str = "needs_response"  # the provider's status in that first webhook
    evidence_due_by: datetime | None = None
    actor: str = "webhook"
    # Timings travel with the input (not read from settings) so that a replay sees the values the run saw.
    reminder_offsets_seconds: list[float] = Field(
        default_factory=lambda: [7 * DAY_SECONDS, 3 * DAY_SECONDS, 1 * DAY_SECONDS])
    poll_interval_seconds: float = 6 * 3600.0  # once no evidence can be added, ask the provider this often
    provider_call_timeout_seconds: float = 30.0


class DisputeView(BaseModel):
    id: str
    tenant_id: str
    payment_id: str
    provider: str
    provider_dispute_id: str
    amount_micros: int
    currency: str
    reason: str | None = None
    status: str
    evidence_due_by: datetime | None = None
    funds_withdrawn_micros: int = 0
    funds_reinstated_micros: int = 0
    evidence: dict[str, str] = Field(default_factory=dict)
    evidence_submitted_at: datetime | None = None
    workflow_id: str
    event_seq: int = 1
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None


class DisputeEvent(BaseModel):
    """A provider webhook about a dispute (`charge.dispute.*`); `event_id` de-duplicates inside the workflow."""

    event_id: str
    type: str
    status: str | None = None  # the provider's dispute status in the event


class EvidenceRequest(BaseModel):
    """The `submit_evidence` update: `submit=False` stages the evidence at the provider without submitting it."""

    request_id: str
    evidence: dict[str, str]
    submit: bool = True
    actor: str = "api"


class AcceptRequest(BaseModel):
    request_id: str
    actor: str = "api"


class DisputeChange(BaseModel):
    """One change to a dispute row (a lifecycle event + outbox message). Applied only if the row is still at
    `expected_seq`, so a retried local activity whose first try committed changes nothing."""

    tenant_id: str
    dispute_id: str
    expected_seq: int
    status: str | None = None  # a new status, or None for a change that keeps it (evidence staged, funds)
    event: str | None = None  # the lifecycle event's name when the status does not change
    evidence: dict[str, str] | None = None
    evidence_submitted: bool = False
    funds_withdrawn_micros: int | None = None
    funds_reinstated_micros: int | None = None
    actor: str
    correlation_id: str


class SubmitDisputeEvidence(BaseModel):
    provider_dispute_id: str
    evidence: dict[str, str]
    submit: bool = True
    idempotency_key: str


class ProviderDispute(BaseModel):
    id: str
    status: str  # the provider's dispute status


class Notification(BaseModel):
    """Something finance should hear about. `notification_id` is deterministic: a retried send is recognisable."""

    notification_id: str
    tenant_id: str
    kind: str  # dispute.created | dispute.evidence_reminder | dispute.deadline_passed | dispute.closed
    subject: str
    dispute_id: str | None = None
    payment_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


# --- advisory fraud scoring ---------------------------------------------------------------------------------------
class FraudResult(BaseModel):
    """The advisory score the saga acts on: it may ask for 3-D Secure or flag for review, never decline."""

    score: int
    action: str  # allow | require_3ds | review
    reasons: list[str] = Field(default_factory=list)  # top codes, most weight first

    @property
    def requires_3ds(self) -> bool:
        return self.action in ("require_3ds", "review")
