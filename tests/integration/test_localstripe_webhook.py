"""A webhook signed by a real Stripe emulator (localstripe) is accepted by our endpoint and lands in the inbox."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from activities.providers.base import CreateIntent
from activities.providers.stripe_provider import StripeProvider
from tests.integration.helpers import customer_with_method, pay
from tests.integration.test_localstripe_interop import localstripe_url, provider, raw  # noqa: F401 (fixtures)
from tests.stack import Stack

pytestmark = pytest.mark.integration


async def test_localstripe_webhook_accepted_by_our_endpoint(
    stack: Stack, tenant: tuple[str, str], provider: StripeProvider, raw: httpx.AsyncClient  # noqa: F811
) -> None:
    tenant_id, key = tenant
    async with stack.http(key) as http:
        cid, pm = await customer_with_method(http, "pm_card_threeDSecure2Required")
        payment = (await pay(http, cid, pm)).json()
    registered = await raw.post(f"/_config/webhooks/paysaga_{uuid.uuid4().hex[:8]}", json={
        "url": f"{stack.base_url}/v1/webhooks/stripe", "secret": stack.settings.webhook_secret_list[0],
        "events": ["payment_intent.succeeded"],
    })
    registered.raise_for_status()
    # An intent at localstripe carrying our payment's metadata, as the Stripe adapter would create it.
    intent = await provider.create_and_confirm(CreateIntent(
        payment_id=payment["id"], tenant_id=tenant_id, amount_minor=1000, currency="USD",
        payment_method="pm_card_visa"))
    async with asyncio.timeout(20):
        while True:
            row = await stack.admin_pool.fetchrow(
                "SELECT event_id, event_type FROM paysaga.inbox WHERE tenant_id = $1 AND source = 'stripe' "
                "AND event_type = 'payment_intent.succeeded'", uuid.UUID(tenant_id))
            if row:
                break
            await asyncio.sleep(0.2)
    assert row["event_id"].startswith("evt_")
    assert intent.id.startswith("pi_")
