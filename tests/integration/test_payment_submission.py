"""The submission step's activity on the real database: what the provider's confirm answer says the charge
settled is booked from that answer, without a second request to the provider."""

from __future__ import annotations

import uuid

import pytest
from temporalio.testing import ActivityEnvironment

from activities.payments import PaymentActivities
from activities.providers.base import BalanceTransaction, ProviderUnavailable
from activities.providers.sandbox import SandboxProvider
from contracts.payments import IntentRequest, PaymentInput, SubmitRequest
from domain.payment import PaymentStatus
from paysaga.db import create_pool
from tests.integration.helpers import customer_with_method
from tests.stack import Stack
from worker import risk_limits

pytestmark = pytest.mark.integration


class SilentAfterConfirm(SandboxProvider):
    """The sandbox, except that it cannot say afterwards what a charge settled."""

    asked: list[str]

    async def balance_transactions_of(self, source_id: str) -> list[BalanceTransaction]:
        self.asked.append(source_id)
        raise ProviderUnavailable("balance transactions are not available")


async def test_what_the_confirm_answer_settled_is_booked_without_asking_the_provider_again(
        stack: Stack, tenant: tuple[str, str]) -> None:
    tenant_id = tenant[0]
    async with stack.http(tenant[1]) as http:
        customer_id, method_id = await customer_with_method(http)
    pool = await create_pool(stack.settings.database_url, max_size=2)
    try:
        provider = SilentAfterConfirm(pool, stack.settings)
        provider.asked = []
        acts = PaymentActivities(pool, provider, risk_limits(stack.settings))
        inp = PaymentInput(tenant_id=tenant_id, payment_id=f"pay_{uuid.uuid4().hex[:12]}", customer_id=customer_id,
                           payment_method_id=method_id, amount_micros=12_340_000, currency="USD")
        env = ActivityEnvironment()
        admission = await env.run(acts.admit_payment, inp)
        intent = IntentRequest(tenant_id=tenant_id, payment_id=inp.payment_id, attempt=admission.view.attempt,
                               payment_method_id=method_id, amount_micros=inp.amount_micros, currency="USD",
                               payment_method_token=admission.payment_method_token,
                               settlement_currency=admission.settlement_currency)
        done = await env.run(acts.submit_intent, SubmitRequest(
            intent=intent, expected_seq=admission.view.event_seq, correlation_id=f"test/{inp.payment_id}"))
    finally:
        await pool.close()
    assert done.view.status == PaymentStatus.COMPLETED and done.outcome.status == "succeeded"
    assert provider.asked == []
    booked = await stack.admin_pool.fetchrow(  # type: ignore[attr-defined]
        "SELECT * FROM paysaga.provider_balance_transactions WHERE tenant_id = $1 AND source_id = $2",
        uuid.UUID(tenant_id), inp.payment_id)
    assert booked is not None and booked["amount_micros"] == 12_340_000
