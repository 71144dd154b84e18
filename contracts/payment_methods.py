"""Payment methods: provider tokens and what the provider says about the card behind them."""

from __future__ import annotations

from pydantic import Field

from contracts.common import Body, ProviderToken


class PaymentMethodCreate(Body):
    token: ProviderToken = Field(description="A provider payment-method id or token, e.g. pm_card_visa")
