"""PaymentWorkflow on the time-skipping test server: every branch of the saga, against fake activities.

Timers (webhook wait, 3-D Secure timeout) and retry back-off are skipped while a test awaits `handle.result()`;
outside of that, time on the test server runs at wall-clock speed.
"""

from __future__ import annotations

import asyncio

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.payments import PaymentActivities
from contracts import search_attributes as sa
from contracts.dead_letters import ReplayRequest
from contracts.payments import (
    RECONCILIATION_EVENT,
    CancelRequest,
    FraudResult,
    IntentOutcome,
    PaymentView,
    ProviderEvent,
)
from domain.payment import PaymentStatus
from tests.recording import record_history
from tests.workflows.conftest import Saga
from tests.workflows.fakes import Answer, Fail, FakeActivities, LostResponse
from workflows.payment import PaymentWorkflow

S = PaymentStatus
THREE_DS_URL = "https://hooks.example/3ds/challenge"


def succeeded(saga: Saga, event_id: str = "evt_ok") -> ProviderEvent:
    return ProviderEvent(event_id=event_id, type="payment_intent.succeeded", intent_id=saga.intent_id,
                         intent_status="succeeded")


async def test_happy_path(saga: Saga) -> None:
    async with saga.worker():
        handle = await saga.start()
        view = await handle.execute_update(PaymentWorkflow.submitted)
        assert view.status == S.PROCESSING
        assert view.provider_intent_id == saga.intent_id

        await handle.signal(PaymentWorkflow.provider_event, succeeded(saga))
        result = await handle.result()
        await record_history(handle, "happy_path")

        assert result.status == S.COMPLETED
        assert result.failure_code is None
        assert result.risk_score == 12
        assert saga.ledger.transitions == ["mark_processing", "mark_completed"]
        assert saga.ledger.events[-1].actor == "webhook:evt_ok"
        assert saga.provider.calls == ["create_intent"]
        desc = await handle.describe()
        assert desc.typed_search_attributes.get(sa.PAYMENT_STATUS) == "completed"
        assert desc.typed_search_attributes.get(sa.PAYMENT_ID) == saga.payment_id
        assert await handle.query(PaymentWorkflow.status) == result


async def test_provider_decline(saga: Saga) -> None:
    saga.provider.create_default = Answer(status="declined", intent_id="pi_x", decline_code="insufficient_funds",
                                          failure_message="Your card has insufficient funds.")
    async with saga.worker():
        handle = await saga.start()
        view = await handle.execute_update(PaymentWorkflow.submitted)
        result = await handle.result()
        await record_history(handle, "decline")

    assert view.status == S.FAILED  # the update answers once the intent exists, by then the saga has settled
    assert result.status == S.FAILED
    assert result.failure_code == "insufficient_funds"
    assert result.failure_message == "Your card has insufficient funds."
    assert result.provider_intent_id == "pi_x"
    assert saga.ledger.transitions == ["mark_processing", "mark_failed"]
    assert saga.provider.calls == ["create_intent"]  # a decline is an outcome, not an error: no compensation


async def test_hard_decline_without_intent(saga: Saga) -> None:
    saga.provider.create_default = Answer(status="declined", intent_id=None, decline_code="stolen_card")
    async with saga.worker():
        handle = await saga.start()
        result = await handle.result()

    assert result.status == S.FAILED
    assert result.failure_code == "stolen_card"
    assert saga.ledger.transitions == ["mark_failed"]  # created → failed, never processing
    assert saga.provider.calls == ["create_intent"]


async def test_risk_decline(saga: Saga) -> None:
    saga.ledger.risk = saga.ledger.risk.model_copy(update=dict(
        allowed=False, score=95, reasons=["amount_above_limit"], decline_code="amount_above_limit"))
    async with saga.worker():
        handle = await saga.start()
        view = await handle.execute_update(PaymentWorkflow.submitted)  # answers although no intent exists
        result = await handle.result()

    assert view.status == result.status == S.FAILED
    assert result.failure_code == "amount_above_limit"
    assert result.risk_score == 95
    assert saga.ledger.transitions == ["mark_failed"]
    assert saga.provider.calls == []


async def test_transient_provider_errors_create_one_intent(saga: Saga) -> None:
    saga.provider.create_script = [
        Fail(RuntimeError("connection reset")),  # never reached the provider
        LostResponse(Answer(), RuntimeError("read timeout")),  # the provider made the intent, the answer was lost
    ]
    async with saga.worker():
        handle = await saga.start()
        # The webhook may well beat the API answer; the saga queues it until the intent is recorded.
        await handle.signal(PaymentWorkflow.provider_event, succeeded(saga))
        result = await handle.result()  # retry back-off (1 s, 2 s) is skipped

    assert result.status == S.COMPLETED
    assert saga.provider.count("create_intent") == 3
    assert saga.provider.created == 1  # the third try found the intent of the second
    assert saga.ledger.transitions == ["mark_processing", "mark_completed"]


async def test_provider_down_compensates_and_fails(saga: Saga) -> None:
    saga.provider.create_default = Fail(ApplicationError("503 from provider", type="ProviderUnavailable"))
    async with saga.worker():
        handle = await saga.start()
        # eight tries (~2 minutes of back-off), then a dead letter nobody replays for 7 days: all skipped
        result = await handle.result()
        await record_history(handle, "compensation")

    assert result.status == S.FAILED
    assert result.failure_code == "internal_error"
    assert "503 from provider" in (result.failure_message or "")
    assert saga.provider.calls == ["create_intent"] * 8 + ["cancel_intent"]
    assert saga.ledger.transitions == ["mark_failed"]
    assert saga.ledger.dead_letters == {f"dlq_{saga.payment_id}_1": "expired"}
    assert saga.ledger.dead_letter_steps == {f"dlq_{saga.payment_id}_1": "create_intent"}


async def test_dead_letter_replayed_by_an_operator(saga: Saga) -> None:
    saga.provider.create_script = [Fail(ApplicationError("503 from provider"))] * 8  # then the provider is back
    dlq_id = f"dlq_{saga.payment_id}_1"
    async with saga.worker():
        handle = await saga.start(dead_letter_hold_seconds=3600)
        await saga.env.sleep(150)  # the eight tries and their back-off (~2 minutes), skipped
        async with asyncio.timeout(10):
            while saga.ledger.dead_letters.get(dlq_id) != "open":
                await asyncio.sleep(0.02)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(PaymentWorkflow.replay_dead_letter, ReplayRequest(dlq_id="dlq_other"))
        assert isinstance(refused.value.cause, ApplicationError) and refused.value.cause.type == "NotReplayable"

        replayed = await handle.execute_update(PaymentWorkflow.replay_dead_letter, ReplayRequest(dlq_id=dlq_id),
                                               id=f"replay-{dlq_id}")
        assert replayed.status == "replayed"
        assert (await handle.execute_update(PaymentWorkflow.submitted)).status == S.PROCESSING
        await handle.signal(PaymentWorkflow.provider_event, succeeded(saga))
        result = await handle.result()
        await record_history(handle, "dead_letter_replayed")

    assert result.status == S.COMPLETED
    assert saga.provider.calls == ["create_intent"] * 9
    assert saga.provider.created == 1
    assert saga.ledger.dead_letters == {dlq_id: "replayed"}
    assert saga.ledger.transitions == ["mark_processing", "mark_completed"]


async def test_polling_fallback_when_no_webhook(saga: Saga) -> None:
    saga.provider.retrieve_script = ["processing", "succeeded"]
    async with saga.worker():
        handle = await saga.start()
        view = await handle.execute_update(PaymentWorkflow.submitted)
        assert view.status == S.PROCESSING
        result = await handle.result()  # two 30 s webhook waits, skipped
        await record_history(handle, "polling_fallback")

    assert result.status == S.COMPLETED
    assert saga.provider.calls == ["create_intent", "get_intent", "get_intent"]
    assert saga.ledger.transitions == ["mark_processing", "mark_completed"]
    assert saga.ledger.events[-1].actor == "poll"


async def test_three_ds_completed(saga: Saga) -> None:
    saga.provider.create_default = Answer(status="requires_action", next_action_url=THREE_DS_URL)
    async with saga.worker():
        handle = await saga.start()
        view = await handle.execute_update(PaymentWorkflow.submitted)
        assert view.status == S.PENDING
        assert view.next_action == {"type": "redirect_to_url", "redirect_to_url": {"url": THREE_DS_URL}}

        await handle.signal(PaymentWorkflow.provider_event, succeeded(saga, "evt_3ds_ok"))
        result = await handle.result()
        await record_history(handle, "three_ds_completed")

    assert result.status == S.COMPLETED
    assert result.next_action is None
    assert saga.ledger.transitions == ["mark_processing", "settle_from_processing", "confirm_from_pending"]
    assert saga.provider.calls == ["create_intent"]


async def test_three_ds_abandoned(saga: Saga) -> None:
    saga.provider.create_default = Answer(status="requires_action", next_action_url=THREE_DS_URL)
    async with saga.worker():
        handle = await saga.start(webhook_wait_seconds=120, three_ds_timeout_seconds=900)
        view = await handle.execute_update(PaymentWorkflow.submitted)
        assert view.status == S.PENDING
        result = await handle.result()  # 15 minutes, skipped
        await record_history(handle, "three_ds_abandoned")

    assert result.status == S.CANCELED
    assert result.next_action is None
    assert saga.ledger.transitions == ["mark_processing", "settle_from_processing", "mark_canceled"]
    assert saga.ledger.events[-1].actor == "workflow"
    # the challenge is waited out on one timer (no polls while the customer authenticates), then canceled
    assert saga.provider.calls == ["create_intent", "cancel_intent"]
    assert saga.provider.intents[(saga.payment_id, 1)].status == "canceled"
    history = await handle.fetch_history()
    timers = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    assert len(timers) == 1


async def test_duplicate_and_out_of_order_webhooks(saga: Saga) -> None:
    handle = await saga.start()
    # Delivered before the worker runs, so all of them are queued in the run no matter how fast it is.
    await handle.signal(PaymentWorkflow.provider_event, ProviderEvent(
        event_id="evt_0", type="payment_intent.processing", intent_id=saga.intent_id, intent_status="processing"))
    for _ in range(5):
        await handle.signal(PaymentWorkflow.provider_event, succeeded(saga, "evt_1"))
    await handle.signal(PaymentWorkflow.provider_event, ProviderEvent(
        event_id="evt_other", type="payment_intent.payment_failed", intent_id="pi_someone_else"))
    await handle.signal(PaymentWorkflow.provider_event, ProviderEvent(
        event_id="evt_old", type="payment_intent.processing", intent_id=saga.intent_id, intent_status="processing"))
    async with saga.worker():
        result = await handle.result()
        await record_history(handle, "duplicate_webhooks")

    assert result.status == S.COMPLETED
    assert saga.ledger.transitions == ["mark_processing", "mark_completed"]
    assert [e.actor for e in saga.ledger.events if e.transition == "mark_completed"] == ["webhook:evt_1"]
    assert saga.provider.calls == ["create_intent"]


async def test_cancel_while_three_ds_pending(saga: Saga) -> None:
    saga.provider.create_default = Answer(status="requires_action", next_action_url=THREE_DS_URL)
    async with saga.worker():
        handle = await saga.start()
        assert (await handle.execute_update(PaymentWorkflow.submitted)).status == S.PENDING
        view = await handle.execute_update(PaymentWorkflow.cancel, CancelRequest(request_id="c1", reason="fraud"))
        result = await handle.result()
        await record_history(handle, "cancel_pending")

    assert view.status == result.status == S.CANCELED
    assert saga.ledger.transitions == ["mark_processing", "settle_from_processing", "mark_canceled"]
    assert saga.provider.calls == ["create_intent", "cancel_intent"]
    assert saga.provider.intents[(saga.payment_id, 1)].status == "canceled"


async def test_cancel_while_processing_is_rejected(saga: Saga) -> None:
    async with saga.worker():
        handle = await saga.start()
        assert (await handle.execute_update(PaymentWorkflow.submitted)).status == S.PROCESSING
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(PaymentWorkflow.cancel, CancelRequest(request_id="c1"))
        assert isinstance(err.value.cause, ApplicationError)
        assert err.value.cause.type == "NotCancelable"

        await handle.signal(PaymentWorkflow.provider_event, succeeded(saga))
        result = await handle.result()

    assert result.status == S.COMPLETED
    assert saga.ledger.transitions == ["mark_processing", "mark_completed"]
    assert "cancel_intent" not in saga.provider.calls
    history = await handle.fetch_history()  # a rejected update leaves no trace in the history
    accepted = [e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
                for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED]
    assert accepted == ["submitted"]


async def test_cancel_before_the_provider_is_called(saga: Saga) -> None:
    handle = await saga.start()
    # Admitted (validated) in the run's first task, before record_payment: the saga stops after the risk check.
    update = asyncio.create_task(handle.execute_update(PaymentWorkflow.cancel, CancelRequest(request_id="c1")))
    await asyncio.sleep(0.2)
    async with saga.worker():
        result = await handle.result()
        view = await update

    assert view.status == result.status == S.CANCELED
    assert saga.ledger.transitions == ["mark_canceled"]
    assert saga.provider.calls == []


async def test_cancel_admitted_then_payment_moves_to_processing(private_env: WorkflowEnvironment) -> None:
    # Its own test server: once a workflow task deadlocks, the server's clock stops skipping for good
    # (even after the run is terminated), which would hang every later test on a shared server.
    env = private_env
    saga = Saga(env)
    saga.provider.create_default = Answer(status="requires_action", next_action_url=THREE_DS_URL)
    async with saga.worker():
        handle = await saga.start()
        try:
            assert (await handle.execute_update(PaymentWorkflow.submitted)).status == S.PENDING
            saga.ledger.transition_gate = asyncio.Event()
            # The customer passed 3-D Secure, settlement is asynchronous: the saga records `processing` ...
            await handle.signal(PaymentWorkflow.provider_event, ProviderEvent(
                event_id="evt_p", type="payment_intent.processing", intent_id=saga.intent_id,
                intent_status="processing"))
            await asyncio.wait_for(saga.ledger.transition_started.wait(), 10)
            # Still pending while that step is in flight, so the validator admits the cancel ...
            update = await handle.start_update(PaymentWorkflow.cancel, CancelRequest(request_id="c1"),
                                               wait_for_stage=WorkflowUpdateStage.ACCEPTED)
            saga.ledger.transition_gate.set()  # ... and then the step lands `processing`: too late to cancel.
            async with asyncio.timeout(10):
                while saga.ledger.transitions[-1:] != ["mark_processing"] or len(saga.ledger.transitions) < 3:
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.5)  # no webhook yet: the saga goes back to waiting for one
            await handle.signal(PaymentWorkflow.provider_event, succeeded(saga))
            # The payment completes; the cancel, admitted too early to know better, answers that it could not act.
            result = await _result_unless_task_fails(handle, timeout=15)
            assert result.status == S.COMPLETED
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await update.result()
            assert isinstance(refused.value.cause, ApplicationError)
            assert refused.value.cause.type == "NotCancelable"
            assert saga.ledger.transitions == ["mark_processing", "settle_from_processing", "mark_processing",
                                               "mark_completed"]
            assert "cancel_intent" not in saga.provider.calls
        finally:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test over")


async def _result_unless_task_fails(
    handle: WorkflowHandle[PaymentWorkflow, PaymentView], timeout: float
) -> PaymentView:
    """The run's result; fails fast (instead of hanging) once a workflow task fails, e.g. on a deadlock."""
    async with asyncio.timeout(timeout):
        while True:
            if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                return await handle.result()
            history = await handle.fetch_history()
            for e in history.events:
                if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                    failure = e.workflow_task_failed_event_attributes.failure
                    raise AssertionError(f"workflow task failed: {failure.message}")
            await asyncio.sleep(0.1)


async def test_settlement_timeout_compensates(saga: Saga) -> None:
    saga.provider.retrieve_default = "processing"  # the provider never settles, no webhook ever comes
    async with saga.worker():
        handle = await saga.start(webhook_wait_seconds=60, settlement_timeout_seconds=300)
        result = await handle.result()

    assert result.status == S.FAILED
    assert result.failure_code == "internal_error"
    assert "no settlement in time" in (result.failure_message or "")
    assert saga.ledger.transitions == ["mark_processing", "mark_failed"]
    # polls back off (after 60 s, then 120 s more), and the last wait ends at the settlement deadline
    assert saga.provider.calls == ["create_intent"] + ["get_intent"] * 2 + ["cancel_intent"]


async def test_three_ds_succeeds_as_it_times_out(saga: Saga) -> None:
    saga.provider.create_default = Answer(status="requires_action", next_action_url=THREE_DS_URL)

    def customer_finishes_just_now(intent: IntentOutcome) -> None:
        intent.status, intent.next_action_url = "succeeded", None  # cancel_intent then leaves it alone

    saga.provider.on_cancel = customer_finishes_just_now
    async with saga.worker():
        handle = await saga.start(webhook_wait_seconds=300, three_ds_timeout_seconds=900)
        result = await handle.result()

    assert saga.provider.intents[(saga.payment_id, 1)].status == "succeeded"  # the money moved ...
    assert result.status == S.COMPLETED  # ... so the payment says so, instead of `canceled`
    assert saga.ledger.transitions == ["mark_processing", "settle_from_processing", "confirm_from_pending"]
    assert saga.ledger.events[-1].actor == "cancel_intent"
    assert saga.provider.calls[-1] == "cancel_intent"


async def test_reconciler_news_settles_a_processing_payment(saga: Saga) -> None:
    async with saga.worker():
        handle = await saga.start()
        assert (await handle.execute_update(PaymentWorkflow.submitted)).status == S.PROCESSING
        await handle.signal(PaymentWorkflow.provider_event, ProviderEvent(
            event_id="recon_1", type=RECONCILIATION_EVENT, intent_id=saga.intent_id, intent_status="declined",
            decline_code="expired_card"))
        result = await handle.result()

    assert result.status == S.FAILED
    assert result.failure_code == "expired_card"
    assert saga.ledger.transitions == ["mark_processing", "reconcile"]
    assert saga.ledger.events[-1].actor == "reconciler"


def test_the_fakes_cover_every_activity() -> None:
    """A new activity the fakes lack would not fail a test: the workflow would retry it until the test times out."""
    def names(cls: type) -> set[str]:
        return {d.name for f in vars(cls).values() if callable(f) and (d := activity._Definition.from_callable(f))}

    assert names(FakeActivities) == names(PaymentActivities)


async def test_failing_polls_are_not_dead_lettered_and_a_webhook_still_completes(saga: Saga) -> None:
    saga.provider.get_error = ApplicationError("503 from provider")  # polls fail; webhooks still come through
    async with saga.worker():
        handle = await saga.start(dead_letter_hold_seconds=3600)
        assert (await handle.execute_update(PaymentWorkflow.submitted)).status == S.PROCESSING
        await saga.env.sleep(30 + 150)  # no webhook: a poll and its eight failed tries, then the wait goes on
        saga.provider.intents[(saga.payment_id, 1)].status = "succeeded"
        await handle.signal(PaymentWorkflow.provider_event, succeeded(saga))  # the money moved, and we are told
        result = await handle.result()

    assert saga.ledger.dead_letters == {}  # a poll is a fallback: its failures never park the saga
    assert result.status == S.COMPLETED


async def test_compensation_finds_the_intent_succeeded(saga: Saga) -> None:
    saga.provider.retrieve_default = "processing"

    def settled_just_now(intent: IntentOutcome) -> None:
        intent.status = "succeeded"  # cancel_intent leaves a succeeded intent alone and says so

    saga.provider.on_cancel = settled_just_now
    async with saga.worker():
        handle = await saga.start(webhook_wait_seconds=60, settlement_timeout_seconds=300)
        result = await handle.result()

    assert saga.provider.calls[-1] == "cancel_intent"
    assert saga.provider.intents[(saga.payment_id, 1)].status == "succeeded"  # the money moved ...
    assert result.status == S.COMPLETED  # ... today: failed / internal_error


# --- advisory fraud scoring ---------------------------------------------------------------------------------------
async def test_fraud_score_asks_for_3ds_and_never_declines(saga: Saga) -> None:
    saga.ledger.fraud = FraudResult(score=75, action="review", reasons=["country_mismatch", "payment_method_first_use"])
    async with saga.worker():
        handle = await saga.start()
        await handle.execute_update(PaymentWorkflow.submitted)
        await handle.signal(PaymentWorkflow.provider_event, succeeded(saga))
        result = await handle.result()
        attrs = (await handle.describe()).typed_search_attributes

    assert result.status == S.COMPLETED  # a high score is advice, not a decline
    assert [r.request_three_d_secure for r in saga.provider.requests] == [True]
    assert attrs.get(sa.FRAUD_SCORE) == 75 and attrs.get(sa.FRAUD_ACTION) == "review"


async def test_fraud_model_failure_does_not_stop_the_payment(saga: Saga) -> None:
    saga.ledger.fraud = ApplicationError("model down", type="InvalidRequest", non_retryable=True)
    async with saga.worker():
        handle = await saga.start()
        await handle.execute_update(PaymentWorkflow.submitted)
        await handle.signal(PaymentWorkflow.provider_event, succeeded(saga))
        result = await handle.result()

    assert result.status == S.COMPLETED
    assert [r.request_three_d_secure for r in saga.provider.requests] == [False]
