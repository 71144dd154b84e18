"""Connected accounts (the sellers a tenant pays out to) and the tenant's settings for money across borders and
out to sellers: request bodies and the account as the layers exchange it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from contracts.common import Body, Currency, DecimalAmount, Metadata
from contracts.customers import Country, Email, Name

WeekdayName = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[str, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
Onboarding = Literal["pending", "restricted", "enabled", "rejected"]
# The provider's token for a bank account or debit card (Stripe: ba_…, card_…, btok_…): never the number itself.
PayoutToken = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,12}_[A-Za-z0-9]{6,250}$")]


class PayoutScheduleBody(Body):
    interval: Literal["weekly", "daily", "manual"] = "weekly"
    weekday: WeekdayName = Field(default="monday", description="The weekly payout day")
    delay_days: int = Field(default=7, ge=0, le=365, description="Days after a charge until its funds are payable")
    minimum: DecimalAmount | None = Field(
        default=None, description="In the settlement currency: a smaller payout waits for the next one")


class ReserveBody(Body):
    basis_points: int = Field(default=0, ge=0, le=10_000,
                              description="Held back of each charge's share, for hold_days (a rolling reserve)")
    hold_days: int = Field(default=0, ge=0, le=3650)
    fixed: DecimalAmount | None = Field(default=None, description="Always held, in the settlement currency")


class PayoutMethodBody(Body):
    token: PayoutToken = Field(description="The provider's token for the bank account (e.g. ba_1Nq…), never its "
                                           "number: bank details are sent to the provider, which keeps them")
    last4: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z]{4}$")] | None = None


class ConnectedAccountCreate(Body):
    country: Country
    settlement_currency: Currency = Field(description="What its payouts are paid in")
    display_name: Name | None = None
    email: Email | None = None
    payout_schedule: PayoutScheduleBody = Field(default_factory=PayoutScheduleBody)
    reserve: ReserveBody = Field(default_factory=ReserveBody)
    payout_method: PayoutMethodBody | None = None
    metadata: Metadata = Field(default_factory=dict)


class ConnectedAccountUpdate(Body):
    """Only the fields sent change."""

    onboarding_status: Onboarding | None = Field(
        default=None, description="Where onboarding stands (with Stripe, account.updated webhooks set it too)")
    settlement_currency: Currency | None = None
    display_name: Name | None = None
    email: Email | None = None
    payout_schedule: PayoutScheduleBody | None = None
    reserve: ReserveBody | None = None
    payout_method: PayoutMethodBody | None = None
    metadata: Metadata | None = None


class TenantSettingsBody(Body):
    settlement_currency: Currency | None = Field(
        default=None, description="The currency the provider settles the tenant's charges in; none: each in its "
                                  "own currency")
    payout_approval_required: bool = Field(default=False, description="Payout runs wait for finance's approval")
    payout_approval_hours: int = Field(default=48, ge=1, le=720, description="… this long, then expire")
    payout_reminder_hours: int = Field(default=24, ge=0, le=719, description="Finance is reminded this long "
                                                                             "before the deadline")


class TenantSettings(BaseModel):
    settlement_currency: str | None = None
    payout_approval_required: bool = False
    payout_approval_hours: int = 48
    payout_reminder_hours: int = 24


class AccountNews(BaseModel):
    """What a provider's `account.updated` says about a connected account's onboarding."""

    provider_account_id: str
    charges_enabled: bool = False
    payouts_enabled: bool = False
    details_submitted: bool = False
    disabled_reason: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
