"""Payments: the PaymentWorkflow's input, messages and names, the payment view, and the steps' requests."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints
from temporalio.common import TypedSearchAttributes

from contracts import search_attributes as sa
from contracts.common import Body, Currency, DecimalAmount, Id, Metadata
from domain.intents import CLEARS_NEXT_ACTION, after_confirm
from domain.payment import PaymentStatus, Transition, TransitionCommand

# Names the workflow is registered and messaged under: a caller needs these, not the workflow's code.
PAYMENT_WORKFLOW = "PaymentWorkflow"
SUBMITTED_UPDATE = "submitted"
CANCEL_UPDATE = "cancel"
REPLAY_DEAD_LETTER_UPDATE = "replay_dead_letter"
PROVIDER_EVENT_SIGNAL = "provider_event"
STATUS_QUERY = "status"

RECONCILIATION_EVENT = "reconciliation"  # ProviderEvent.type of news brought by the reconciler


def payment_workflow_id(tenant_id: str, payment_id: str) -> str:
    """One workflow per payment; the id is a business id so a retried start joins the same run."""
    return f"payment/{tenant_id}/{payment_id}"


def start_search_attributes(inp: PaymentInput) -> TypedSearchAttributes:
    """What an SRE finds a payment by, set with the start request."""
    return sa.at_start((sa.TENANT_ID, inp.tenant_id), (sa.CUSTOMER_ID, inp.customer_id),
                       (sa.PAYMENT_ID, inp.payment_id), (sa.CURRENCY, inp.currency),
                       (sa.PAYMENT_STATUS, PaymentStatus.CREATED.value))


# --- the API's requests ---------------------------------------------------------------------------------------
class PaymentCreate(Body):
    customer_id: Id
    payment_method_id: Id
    amount: DecimalAmount = Field(description="Decimal string in the major unit, e.g. \"12.34\"; never a JSON number")
    currency: Currency
    description: Annotated[str, StringConstraints(max_length=500)] | None = None
    metadata: Metadata = Field(default_factory=dict)
    destination: Id | None = Field(default=None, description="A connected account (acct_…): a split charge whose "
                                                            "share, less the application fee, is owed to it")
    application_fee: DecimalAmount | None = Field(
        default=None, description="What the platform keeps of a split charge, in the charge's currency (with a "
                                  "destination only; default 0)")


class CancelBody(Body):
    reason: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,64}$")] = "requested_by_customer"


# --- the workflow ---------------------------------------------------------------------------------------------
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
    invoice_id: str | None = None  # the invoice this payment collects, if any
    destination_account_id: str | None = None  # a split charge: the connected account owed its share
    application_fee_micros: int | None = None  # … and what the platform keeps of it
    # Timings travel with the input (not read from settings) so that a replay sees the values the run saw.
    webhook_wait_seconds: float = 30.0  # the first poll, if no webhook came; later polls back off from it
    poll_max_interval_seconds: float = 900.0  # the longest wait between two polls
    three_ds_timeout_seconds: float = 900.0
    settlement_timeout_seconds: float = 86_400.0
    provider_call_timeout_seconds: float = 30.0
    provider_max_attempts: int = 8  # then the call goes to the dead-letter queue
    provider_retry_initial_seconds: float = 1.0  # exponential backoff, doubling, per the provider's (rail's) policy
    provider_retry_max_interval_seconds: float = 60.0
    dead_letter_hold_seconds: float = 7 * 86_400.0  # how long a dead letter waits for a replay


class PaymentView(BaseModel):
    """A payment as its row holds it."""

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
    invoice_id: str | None = None
    destination_account_id: str | None = None
    application_fee_micros: int | None = None
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
    """One named transition of one payment, with its data, applied only if the row is still at `expected_seq`."""

    tenant_id: str
    payment_id: str
    transition: Transition
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

    def command(self) -> TransitionCommand:
        return TransitionCommand(self.transition, provider_intent_id=self.provider_intent_id,
                                 failure_code=self.failure_code, failure_message=self.failure_message,
                                 reason=self.reason, outcome=self.outcome)

    @classmethod
    def of(cls, command: TransitionCommand, *, tenant_id: str, payment_id: str, actor: str, correlation_id: str,
           expected_seq: int | None, next_action: dict[str, Any] | None = None,
           clear_next_action: bool = False) -> TransitionRequest:
        """The request that applies `command` (the inverse of `command()`)."""
        return cls(tenant_id=tenant_id, payment_id=payment_id, transition=command.transition, actor=actor,
                   correlation_id=correlation_id, expected_seq=expected_seq,
                   provider_intent_id=command.provider_intent_id, failure_code=command.failure_code,
                   failure_message=command.failure_message, reason=command.reason, outcome=command.outcome,
                   next_action=next_action, clear_next_action=clear_next_action)


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


class FraudResult(BaseModel):
    """The advisory score the saga acts on: it may ask for 3-D Secure or flag for review, never decline."""

    score: int
    action: str  # allow | require_3ds | review
    reasons: list[str] = Field(default_factory=list)  # top codes, most weight first

    @property
    def requires_3ds(self) -> bool:
        return self.action in ("require_3ds", "review")


class Admission(BaseModel):
    """The payment's first step: recorded, checked against the hard rules (a decline is already applied to
    `view`) and scored for fraud (None when scoring was unavailable or the payment was declined)."""

    view: PaymentView
    risk: RiskResult
    fraud: FraudResult | None = None
    payment_method_token: str | None = None  # what the provider is asked to charge (a token, never a card number)
    settlement_currency: str | None = None  # the tenant's, when it has one: the provider converts into it


class IntentRequest(BaseModel):
    tenant_id: str
    payment_id: str
    attempt: int
    payment_method_id: str
    amount_micros: int
    currency: str
    description: str | None = None
    request_three_d_secure: bool = False  # asked for by the advisory fraud score
    payment_method_token: str | None = None  # known from the admission step; else looked up
    destination_account_id: str | None = None
    application_fee_micros: int | None = None
    settlement_currency: str | None = None


class IntentOutcome(BaseModel):
    intent_id: str | None
    status: str  # a provider IntentStatus value, or "declined"
    decline_code: str | None = None
    failure_message: str | None = None
    next_action_url: str | None = None

    def next_action(self) -> dict[str, Any] | None:
        """What the customer must do next, as the payment shows it (a 3-D Secure redirect), if anything."""
        return {"type": "redirect_to_url", "redirect_to_url": {"url": self.next_action_url}} \
            if self.next_action_url else None


class SubmitRequest(BaseModel):
    """Create and confirm the intent, then record what the answer means for the payment, as one step."""

    intent: IntentRequest
    expected_seq: int  # the payment's event_seq before the step: its transitions take the next slots
    correlation_id: str


class Submission(BaseModel):
    outcome: IntentOutcome
    view: PaymentView

    @staticmethod
    def transitions(req: SubmitRequest, outcome: IntentOutcome) -> list[TransitionRequest]:
        """The transitions the intent's answer drives, each at its own event slot (so a re-run step re-applies
        none of them): the first in the saga's name, the rest as the confirmation's news."""
        commands = after_confirm(outcome.intent_id, outcome.status, outcome.decline_code, outcome.failure_message)
        return [TransitionRequest.of(
            command, tenant_id=req.intent.tenant_id, payment_id=req.intent.payment_id,
            actor="confirm" if n else "workflow", correlation_id=req.correlation_id, expected_seq=req.expected_seq + n,
            next_action=outcome.next_action() if n else None,
            clear_next_action=bool(n) and command.transition in CLEARS_NEXT_ACTION)
            for n, command in enumerate(commands)]
