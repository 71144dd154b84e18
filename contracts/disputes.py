"""Disputes: the DisputeWorkflow's input, messages and names, the dispute view, and the steps' requests."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from contracts.common import Body

DISPUTE_WORKFLOW = "DisputeWorkflow"
SUBMIT_EVIDENCE_UPDATE = "submit_evidence"
ACCEPT_UPDATE = "accept"
PROVIDER_EVENT_SIGNAL = "provider_event"

DAY_SECONDS = 86_400.0
CLOSED = "charge.dispute.closed"
FUNDS_WITHDRAWN = "charge.dispute.funds_withdrawn"
FUNDS_REINSTATED = "charge.dispute.funds_reinstated"


def dispute_workflow_id(tenant_id: str, dispute_id: str) -> str:
    return f"dispute/{tenant_id}/{dispute_id}"


def dispute_id_for(provider: str, provider_dispute_id: str) -> str:
    """Our id of a provider's dispute: derived, so every webhook about it names the same dispute and workflow."""
    return "dsp_" + hashlib.sha256(f"{provider}:{provider_dispute_id}".encode()).hexdigest()[:24]


# --- the API's requests ---------------------------------------------------------------------------------------
LongText = Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=500)]
FileId = Annotated[str, StringConstraints(pattern=r"^file_[A-Za-z0-9_]{1,200}$")]
MAX_EVIDENCE_TEXT = 150_000  # Stripe's limit on all text evidence together


class DisputeEvidence(Body):
    """Evidence in Stripe's vocabulary: text fields, and `file_…` ids of documents uploaded to the provider.
    `submit: false` stages the evidence (more can be added); `true` (the default) sends it to the issuer.
    Never a card number: a body carrying anything shaped like one is refused before it gets here."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=lambda schema: schema.update(
        anyOf=[{"required": [name]} for name in schema["properties"] if name != "submit"]))

    uncategorized_text: LongText | None = None
    product_description: LongText | None = None
    access_activity_log: LongText | None = None
    refund_policy_disclosure: LongText | None = None
    refund_refusal_explanation: LongText | None = None
    cancellation_policy_disclosure: LongText | None = None
    cancellation_rebuttal: LongText | None = None
    duplicate_charge_explanation: LongText | None = None
    customer_name: ShortText | None = None
    customer_email_address: ShortText | None = None
    customer_purchase_ip: ShortText | None = None
    billing_address: ShortText | None = None
    shipping_address: ShortText | None = None
    shipping_carrier: ShortText | None = None
    shipping_tracking_number: ShortText | None = None
    shipping_date: ShortText | None = None
    service_date: ShortText | None = None
    customer_communication: FileId | None = None
    receipt: FileId | None = None
    shipping_documentation: FileId | None = None
    service_documentation: FileId | None = None
    refund_policy: FileId | None = None
    cancellation_policy: FileId | None = None
    customer_signature: FileId | None = None
    duplicate_charge_documentation: FileId | None = None
    uncategorized_file: FileId | None = None
    submit: bool = True

    @model_validator(mode="after")
    def _some_evidence(self) -> DisputeEvidence:
        fields = self.fields()
        if not fields:
            raise ValueError("give at least one evidence field")
        if sum(len(v) for v in fields.values()) > MAX_EVIDENCE_TEXT:
            raise ValueError(f"evidence may not exceed {MAX_EVIDENCE_TEXT} characters in total")
        return self

    def fields(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump(exclude={"submit"}).items() if v is not None}


class AcceptBody(Body):
    pass


# --- the workflow ---------------------------------------------------------------------------------------------
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
