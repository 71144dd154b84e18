"""Provider webhooks as the service layer sees them: one `NormalizedEvent`, whatever the rail.

Only a provider's normaliser reads the provider's objects; what handlers need is typed here (`refunds`,
`dispute`). `raw` keeps the provider's object for handlers of kinds paysaga does not know itself.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.payments import ProviderEvent
from domain.intents import DECLINED, PAYMENT_FAILED_EVENT

Kind = Literal["payment", "refund", "dispute", "payout", "account", "other"]
KINDS: tuple[Kind, ...] = ("payment", "refund", "dispute", "payout", "account", "other")


class RefundNews(BaseModel):
    """One paysaga refund an event reports on (`charge.refunded` lists several)."""

    model_config = ConfigDict(frozen=True)

    refund_id: str  # ours (re_…), from the refund's metadata
    provider_refund_id: str | None = None
    status: str = ""
    failure_reason: str | None = None


class DisputeNews(BaseModel):
    """A provider's dispute, as its event describes it."""

    model_config = ConfigDict(frozen=True)

    provider_dispute_id: str
    amount_minor: int | None = None
    currency: str | None = None
    reason: str | None = None
    status: str | None = None
    evidence_due_by: int | None = Field(default=None, description="unix seconds")


class PayoutNotice(BaseModel):
    """A connected account's payout, as its event (`payout.paid`, `payout.failed`, `payout.canceled`) says."""

    model_config = ConfigDict(frozen=True)

    provider_payout_id: str | None = None
    payout_id: str | None = None  # ours (po_…), from the payout's metadata
    status: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    account: str | None = None  # the provider's connected account


class AccountNotice(BaseModel):
    """A connected account's onboarding, as `account.updated` says."""

    model_config = ConfigDict(frozen=True)

    provider_account_id: str
    account_id: str | None = None  # ours (acct_…), from the account's metadata
    payouts_enabled: bool = False
    details_submitted: bool = False
    disabled_reason: str | None = None


class NormalizedEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    provider: str
    event_id: str
    event_type: str  # as the provider named it
    kind: Kind
    tenant_id: str | None = None
    reference_id: str | None = None  # payment id (kind payment), refund id or payment id (refund), …
    payment_id: str | None = None  # the paysaga payment the event concerns, when the event says
    intent_id: str | None = None
    intent_status: str | None = None  # succeeded | declined | processing | requires_action | canceled, or raw
    decline_code: str | None = None
    failure_message: str | None = None
    created: int | None = None
    refunds: tuple[RefundNews, ...] = ()
    dispute: DisputeNews | None = None
    payout: PayoutNotice | None = None
    account: AccountNotice | None = None
    raw: dict[str, Any] = Field(default_factory=dict)  # Stripe: data.object; generic: the whole event

    def to_provider_event(self) -> ProviderEvent:
        """The `provider_event` signal PaymentWorkflow understands."""
        if self.intent_status == DECLINED:
            signal_type = PAYMENT_FAILED_EVENT
        elif self.event_type.startswith("payment_intent."):
            signal_type = self.event_type  # Stripe: exactly what the webhook said
        else:
            signal_type = f"payment_intent.{self.intent_status}"
        return ProviderEvent(event_id=self.event_id, type=signal_type, intent_id=self.intent_id,
                             intent_status=self.intent_status, decline_code=self.decline_code,
                             failure_message=self.failure_message)
