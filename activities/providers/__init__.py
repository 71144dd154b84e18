"""Payment-provider adapters behind one port (`base.PaymentProvider`)."""

from __future__ import annotations

import asyncpg

from activities.providers.base import PaymentProvider
from paysaga.settings import Settings


def build_provider(settings: Settings, pool: asyncpg.Pool) -> PaymentProvider:
    if settings.provider == "stripe":
        from activities.providers.stripe_provider import StripeProvider

        return StripeProvider(api_key=settings.stripe_api_key, api_base=settings.stripe_api_base)
    from activities.providers.sandbox import SandboxProvider

    return SandboxProvider(pool, settings)
