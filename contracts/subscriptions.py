"""Subscriptions: the API's requests, and the ids every path derives the same way (so a renewal attempted twice,
by whichever path, names the same invoice and the same payment)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from contracts.catalogue import PriceId, ProrationBehaviorName, TimingName
from contracts.common import Body, Id, Instant, Metadata
from domain.billing_cycle import iso

SubscriptionStatusName = Literal["incomplete", "incomplete_expired", "trialing", "active", "past_due", "unpaid",
                                 "canceled", "paused"]
CollectionMethod = Literal["charge_automatically", "send_invoice"]
PauseBehaviorName = Literal["keep_as_draft", "mark_uncollectible", "void"]
SUBSCRIPTIONS_PATH = "/v1/subscriptions"


def period_invoice_id(subscription_id: str, period_start: datetime) -> str:
    """The invoice of a subscription's period (its first, a renewal, a resumption): one per (subscription,
    period start), whatever retries or crashes happen, because every path derives it from the renewal key."""
    digest = hashlib.sha256(f"subscription:{subscription_id}:renewal:{iso(period_start)}".encode()).hexdigest()
    return f"in_{digest[:24]}"


def change_invoice_id(subscription_id: str, event_seq: int) -> str:
    """The invoice of what a change bills now (its event's sequence number names it)."""
    digest = hashlib.sha256(f"subscription:{subscription_id}:change:{event_seq}".encode()).hexdigest()
    return f"in_{digest[:24]}"


def proration_credit_note_id(subscription_id: str, event_seq: int, n: int) -> str:
    """The n-th credit note of the unused time a change (event `event_seq`) credits."""
    digest = hashlib.sha256(f"subscription:{subscription_id}:credit:{event_seq}:{n}".encode()).hexdigest()
    return f"cn_{digest[:24]}"


class AnchorConfig(Body):
    """Calendar billing: the first such instant on or after the start (a 31st bills on the last day of shorter
    months; `month` only for yearly prices)."""

    day_of_month: int = Field(ge=1, le=31)
    month: int | None = Field(default=None, ge=1, le=12)
    hour: int = Field(default=0, ge=0, le=23)
    minute: int = Field(default=0, ge=0, le=59)
    second: int = Field(default=0, ge=0, le=59)


class SubscriptionCreate(Body):
    customer_id: Id
    price_id: PriceId
    quantity: int = Field(default=1, ge=1, le=1_000_000)
    trial_end: Instant | None = Field(default=None, description="The trial ends then (RFC 3339, whole seconds)")
    trial_period_days: int | None = Field(default=None, ge=1, le=730)
    billing_cycle_anchor: Instant | None = Field(
        default=None, description="An explicit anchor (at most one interval after the start): the first period up "
                                  "to it is partial and prorated")
    billing_cycle_anchor_config: AnchorConfig | None = None
    prorate_first_period: bool = Field(default=True, description="false: the time up to the anchor is free")
    default_payment_method_id: Id | None = Field(default=None, description="Default: the customer's")
    collection_method: CollectionMethod = "charge_automatically"
    days_until_due: int | None = Field(default=None, ge=0, le=365, description="send_invoice only")
    trial_end_behavior: Literal["pause", "cancel"] | None = Field(
        default=None, description="A trial ending without a payment method pauses (default) or cancels")
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_of_each(self) -> SubscriptionCreate:
        if self.trial_end is not None and self.trial_period_days is not None:
            raise ValueError("give trial_end or trial_period_days, not both")
        if self.billing_cycle_anchor is not None and self.billing_cycle_anchor_config is not None:
            raise ValueError("give billing_cycle_anchor or billing_cycle_anchor_config, not both")
        return self


class SubscriptionChange(Body):
    """A new price and/or quantity. When it applies (now or at the period's end) and how it is prorated follow the
    tenant's change policy unless `timing` / `proration_behavior` say otherwise."""

    price_id: PriceId | None = None
    quantity: int | None = Field(default=None, ge=1, le=1_000_000)
    proration_behavior: ProrationBehaviorName | None = None
    proration_date: Instant | None = Field(default=None, description="Prorate as of then (within the period)")
    timing: TimingName | None = None

    @model_validator(mode="after")
    def _something(self) -> SubscriptionChange:
        if self.price_id is None and self.quantity is None:
            raise ValueError("give price_id and/or quantity")
        return self


class SubscriptionCancel(Body):
    at_period_end: bool = Field(default=False, description="true: at the end of the period (undo until then)")
    prorate: bool = Field(default=False, description="Now: credit the unused time of the paid period")
    invoice_now: bool = Field(default=False, description="Now: invoice proration charges still pending")
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class PauseCollectionBody(Body):
    behavior: PauseBehaviorName
    resumes_at: Instant | None = None


class PaymentMethodBody(Body):
    payment_method_id: Id
