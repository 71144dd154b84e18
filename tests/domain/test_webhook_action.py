"""What the webhook endpoint does with news about a payment, by the payment's status and who sends its call."""

from __future__ import annotations

import pytest

from domain.intents import OUTCOMES, WebhookAction, webhook_action
from domain.payment import PaymentStatus

S = PaymentStatus


@pytest.mark.parametrize("news", sorted(OUTCOMES))
def test_an_outcome_for_a_created_payment_is_sent_again_unless_its_sender_records_the_answer(news: str) -> None:
    assert webhook_action(S.CREATED, news) is WebhookAction.RETRY_LATER
    assert webhook_action(S.CREATED, news, sender_records_answer=True) is WebhookAction.NOT_SUBMITTED


@pytest.mark.parametrize("sender_records_answer", [False, True])
def test_progress_for_a_created_payment_is_already_carried_by_its_own_call(sender_records_answer: bool) -> None:
    assert webhook_action(S.CREATED, "processing", sender_records_answer=sender_records_answer) \
        is WebhookAction.NOT_SUBMITTED
    assert webhook_action(S.CREATED, None, sender_records_answer=sender_records_answer) \
        is WebhookAction.NOT_SUBMITTED


@pytest.mark.parametrize("status", [s for s in S if s.is_terminal])
def test_news_of_a_settled_payment_wakes_nobody_whoever_sent_it(status: PaymentStatus) -> None:
    assert webhook_action(status, "succeeded") is WebhookAction.SETTLED
    assert webhook_action(status, "succeeded", sender_records_answer=True) is WebhookAction.SETTLED
