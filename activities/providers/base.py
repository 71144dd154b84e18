"""The payment-provider port: what the saga needs from a card processor, and nothing more.

Adapters: `sandbox` (the embedded default, Stripe's test semantics, state in Postgres) and `stripe` (the official
SDK, async). Both are driven by the same activities; they must be idempotent on `idempotency_key` and findable
by `metadata["payment_id"]` so a retried activity never creates a second PaymentIntent.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, Field


class IntentStatus(StrEnum):
    """Stripe's PaymentIntent statuses (the subset the saga distinguishes)."""

    REQUIRES_PAYMENT_METHOD = "requires_payment_method"  # after a decline
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"  # 3-D Secure
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"


class CreateIntent(BaseModel):
    payment_id: str
    tenant_id: str
    attempt: int = 1
    amount_minor: int = Field(description="In the currency's minor units (cents), as providers count")
    currency: str = Field(description="ISO 4217, upper case; adapters lower-case it for Stripe")
    payment_method: str = Field(description="Provider token or test payment method id, never a PAN")
    customer_ref: str | None = None
    description: str | None = None
    return_url: str | None = None
    request_three_d_secure: bool = False  # challenge the customer even if the card would not require it
    off_session: bool = False  # the customer is not there (a renewal): an issuer asking for them is an answer
    key: str | None = Field(default=None, description="The idempotency key, when the caller derives its own "
                                                      "(a renewal's: subscription, period, attempt)")

    @property
    def idempotency_key(self) -> str:
        # Business ids only: a retried activity or a replayed workflow sends the same key.
        return self.key or f"{self.payment_id}:{self.attempt}"

    @property
    def metadata(self) -> dict[str, str]:
        return {"tenant_id": self.tenant_id, "payment_id": self.payment_id, "attempt": str(self.attempt)}


class Intent(BaseModel):
    id: str
    status: IntentStatus
    amount_minor: int
    currency: str
    metadata: dict[str, str] = Field(default_factory=dict)
    decline_code: str | None = None
    failure_message: str | None = None
    next_action_url: str | None = None


class RefundResult(BaseModel):
    id: str
    status: str  # Stripe's refund statuses: pending | requires_action | succeeded | failed | canceled
    amount_minor: int
    failure_reason: str | None = None


class CardDetails(BaseModel):
    """What a provider tells about a stored card: display data and a fingerprint, never the number."""

    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    fingerprint: str | None = Field(
        default=None, description="The provider's card fingerprint: equal for two tokens of the same card number"
    )
    country: str | None = Field(default=None, description="ISO 3166-1 alpha-2 of the issuing bank")


class ChargeResult(BaseModel):
    """One charge of a batch: the intent it made (succeeded, processing, or asking for the customer), a decline,
    or an error worth retrying (`throttled`: the provider said 429)."""

    payment_id: str
    attempt: int = 1
    intent: Intent | None = None
    decline_code: str | None = None
    failure_message: str | None = None
    error: str | None = None
    throttled: bool = False

    @property
    def declined(self) -> bool:
        return self.decline_code is not None


class CardDeclined(Exception):
    """A business outcome, not a fault: never retried."""

    def __init__(self, intent_id: str | None, decline_code: str, message: str) -> None:
        super().__init__(message)
        self.intent_id = intent_id
        self.decline_code = decline_code
        self.message = message


class ProviderUnavailable(Exception):
    """Network error, 5xx, 429, lock conflict: retried with backoff."""


class PaymentProvider(Protocol):
    name: str

    async def create_and_confirm(self, req: CreateIntent) -> Intent:
        """Create and confirm a PaymentIntent. Raises CardDeclined (with the intent id when one exists)."""
        ...

    async def create_and_confirm_many(self, reqs: list[CreateIntent]) -> list[ChargeResult]:
        """Many charges at once (renewals), each idempotent on its own key as `create_and_confirm` is, one result
        per request in order; declines and retryable errors are results, never raised."""
        ...

    async def retrieve_many(self, intent_ids: list[str]) -> list[Intent]:
        """Many intents at once (the renewal run's poll of what is still processing)."""
        ...

    async def find_intent(self, payment_id: str, attempt: int) -> Intent | None:
        """The intent created for this payment attempt, if any (lookup by metadata)."""
        ...

    async def retrieve(self, intent_id: str) -> Intent: ...

    async def cancel(self, intent_id: str) -> Intent:
        """Cancel if still cancelable; returns the intent as it now is (idempotent)."""
        ...

    async def refund(
        self, intent_id: str, amount_minor: int | None, idempotency_key: str, metadata: dict[str, str] | None = None
    ) -> RefundResult:
        """Refund (part of) a succeeded intent. `metadata` comes back on the refund's webhooks."""
        ...

    async def retrieve_refund(self, refund_id: str) -> RefundResult: ...

    async def describe_payment_method(self, token: str) -> CardDetails:
        """Brand, last4, expiry, fingerprint and country of a payment-method token. Raises ValueError for an
        unknown token, ProviderUnavailable when the provider cannot answer."""
        ...

    # --- disputes (chargebacks): they arrive by webhook; these answer them ---------------------------------
    async def submit_dispute_evidence(
        self, dispute_id: str, evidence: dict[str, str], submit: bool, idempotency_key: str | None = None
    ) -> DisputeResult:
        """Attach evidence to a dispute; `submit=True` sends it to the issuer (no more changes after that).
        Raises ValueError when the dispute no longer takes evidence (closed, already submitted)."""
        ...

    async def accept_dispute(self, dispute_id: str) -> DisputeResult:
        """Concede the dispute (Stripe: close it): it becomes `lost`. Idempotent on a dispute already lost."""
        ...

    async def retrieve_dispute(self, dispute_id: str) -> DisputeResult: ...


class DisputeResult(BaseModel):
    """A provider's dispute, in Stripe's vocabulary (`status`: needs_response, under_review, won, lost, warning_…)."""

    id: str
    status: str
    amount_minor: int
    currency: str
    reason: str | None = None
    payment_intent: str | None = None
    evidence_due_by: int | None = Field(default=None, description="unix seconds")
