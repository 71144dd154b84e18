"""The catalogue and a tenant's billing policy: the API's requests.

Ids of products and price families are chosen by the tenant (or made up when omitted); a price's id is its
family and version, `<family>.v<n>` (domain/catalogue.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from contracts.common import Body, Currency, DecimalAmount, Metadata
from contracts.dunning import DunningPolicyModel

CatalogueId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,100}$")]
PriceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,100}\.v[0-9]{1,6}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=250)]
Nickname = Annotated[str, StringConstraints(max_length=250)]
TaxCode = Annotated[str, StringConstraints(pattern=r"^txcd_[0-9]{8}$")]
Interval = Literal["month", "year"]
BillingScheme = Literal["flat", "per_unit"]
TimingName = Literal["now", "period_end"]
ProrationBehaviorName = Literal["create_prorations", "always_invoice", "none"]


class ProductCreate(Body):
    id: CatalogueId | None = Field(default=None, description="Yours, or one is made up (prod_…)")
    name: Name
    metadata: Metadata = Field(default_factory=dict)


class PriceCreate(Body):
    """Version 1 of a new price family."""

    family: CatalogueId | None = Field(default=None, description="The family's id, yours or made up (price_…); "
                                                                 "the price's id is `<family>.v1`")
    product_id: CatalogueId
    currency: Currency
    unit_amount: DecimalAmount = Field(description='Decimal string in the major unit, at most six decimals: "19.99"')
    billing_scheme: BillingScheme = Field(default="per_unit", description="flat: per period; per_unit: per seat")
    interval: Interval = "month"
    interval_count: int = Field(default=1, ge=1, le=36)
    nickname: Nickname = ""
    tax_code: TaxCode = "txcd_10000000"


class PriceRevise(Body):
    """What the next version changes; the rest is copied. The version revised is archived; subscriptions on it
    keep it until they are moved explicitly."""

    unit_amount: DecimalAmount | None = None
    billing_scheme: BillingScheme | None = None
    interval: Interval | None = None
    interval_count: int | None = Field(default=None, ge=1, le=36)
    nickname: Nickname | None = None


class ChangePolicyBody(Body):
    """When a change of price or quantity applies, per kind (upgrade: more per month, exactly), and how changes
    applied now are prorated."""

    upgrades: TimingName = "now"
    downgrades: TimingName = "period_end"
    lateral: TimingName = "now"
    proration_behavior: ProrationBehaviorName = "create_prorations"


class BillingPolicyUpdate(Body):
    change_policy: ChangePolicyBody | None = None
    trial_end_behavior: Literal["pause", "cancel"] | None = Field(
        default=None, description="What a trial ending without a payment method does (default pause)")
    dunning_policy: DunningPolicyModel | None = Field(
        default=None, description="The dunning ladder (stages, final action, hard declines); null: the default")
