"""The admission and submission steps' activities on the real database: the fraud score stored once, in the
admission's transaction or (a remote model) after it; what the provider's confirm answer says the charge settled
booked from that answer, without a second request to the provider."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from temporalio.testing import ActivityEnvironment

from activities.payments import PaymentActivities
from activities.providers.base import BalanceTransaction, ProviderUnavailable
from activities.providers.sandbox import SandboxProvider
from contracts.payments import IntentRequest, PaymentInput, SubmitRequest
from domain.fraud import FraudAssessment, FraudFeatures, FraudPolicy, score
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


class RemoteModel:
    """A stand-in for a hosted model: while it is asked, it checks that the admission let go of its connection."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.free_while_asked: list[bool] = []

    async def score_payment(self, features: FraudFeatures) -> FraudAssessment:
        self.free_while_asked.append(self.pool.get_idle_size() == self.pool.get_size())
        return score(features, FraudPolicy())


@pytest.mark.parametrize("remote", [False, True], ids=["in-process scorer", "remote model"])
async def test_admission_stores_the_fraud_score_and_a_remote_model_never_holds_a_connection(
        stack: Stack, tenant: tuple[str, str], remote: bool) -> None:
    """The built-in scorer is asked inside the admission's transaction (one transaction for record, rules and
    score); any other model after it, with no connection held. Either way the score is stored once."""
    tenant_id = tenant[0]
    async with stack.http(tenant[1]) as http:
        customer_id, method_id = await customer_with_method(http)
    pool = await create_pool(stack.settings.database_url, min_size=1, max_size=1)
    try:
        model = RemoteModel(pool) if remote else None
        acts = PaymentActivities(pool, SandboxProvider(pool, stack.settings), risk_limits(stack.settings), model)
        inp = PaymentInput(tenant_id=tenant_id, payment_id=f"pay_{uuid.uuid4().hex[:12]}", customer_id=customer_id,
                           payment_method_id=method_id, amount_micros=5_000_000, currency="USD")
        env = ActivityEnvironment()
        first = await env.run(acts.admit_payment, inp)
        again = await env.run(acts.admit_payment, inp)  # a re-run keeps the stored score
    finally:
        await pool.close()
    assert first.fraud is not None and again.fraud == first.fraud
    if model is not None:
        assert model.free_while_asked == [True, True]
    stored = await stack.admin_pool.fetchrow(  # type: ignore[attr-defined]
        "SELECT fraud_score, fraud_action FROM paysaga.payments WHERE payment_id = $1", inp.payment_id)
    assert (stored["fraud_score"], stored["fraud_action"]) == (first.fraud.score, first.fraud.action)
