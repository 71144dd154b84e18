"""DunningWorkflow on the time-skipping test server (a server per test: each skips days), against in-memory fake
activities and a stand-in PaymentWorkflow whose outcome the payment method decides.

The whole ladder: recovery at each stage, exhaustion, a hard decline then a new card, a hard decline and no new
card, a payment during a wait, and advice on the hour taken within the policy's limits.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts import search_attributes as sa
from contracts.dunning import (
    INVOICE_SETTLED_SIGNAL,
    PAYMENT_METHOD_SIGNAL,
    AdviceRequest,
    DunningInput,
    DunningPolicyModel,
    DunningPrepared,
    DunningRecord,
    DunningSetup,
    DunningState,
    FinalDunning,
    InvoiceSettled,
    PaymentMethodUpdated,
    RetryAdviceModel,
    dunning_workflow_id,
)
from contracts.invoices import CollectionPlan, InvoiceState, InvoiceStep, PayPlan
from contracts.notifications import Notification
from tests.recording import record_history
from tests.workflows.standins import StandInPayment
from workflows.dunning import DunningWorkflow

TENANT = "11111111-1111-1111-1111-111111111111"
DAY = timedelta(days=1)


@dataclass
class Book:
    """The invoice and what each charge attempt is made with (attempt n uses methods[n - 2], then `method`)."""

    status: str = "open"
    method: str = "pm_declined"
    methods: list[str] = field(default_factory=list)
    advice: RetryAdviceModel | None = None
    charges: list[tuple[str, datetime]] = field(default_factory=list)
    records: list[DunningRecord] = field(default_factory=list)
    finals: list[FinalDunning] = field(default_factory=list)
    notes: list[Notification] = field(default_factory=list)


class FakeActivities:
    def __init__(self, book: Book, env: WorkflowEnvironment) -> None:
        self.book = book
        self.env = env  # the test server's clock, which skips with the workflow's timers

    @activity.defn(name="dunning_setup")
    async def dunning_setup(self, step: InvoiceStep) -> DunningSetup:
        return DunningSetup(policy=DunningPolicyModel(), currency="EUR", amount_remaining_micros=20_000_000,
                            number="INV-000007")

    @activity.defn(name="advise_retry")
    async def advise_retry(self, req: AdviceRequest) -> RetryAdviceModel | None:
        return self.book.advice

    @activity.defn(name="record_dunning")
    async def record_dunning(self, record: DunningRecord) -> None:
        self.book.records.append(record)

    @activity.defn(name="finish_dunning")
    async def finish_dunning(self, final: FinalDunning) -> None:
        self.book.finals.append(final)
        self.book.status = "uncollectible"

    @activity.defn(name="invoice_state")
    async def invoice_state(self, step: InvoiceStep) -> InvoiceState:
        if self.book.charges and self.book.charges[-1][0] == "pm_ok":
            self.book.status = "paid"
        return InvoiceState(invoice_id=step.invoice_id, status=self.book.status, customer_id="cus_1",  # type: ignore[arg-type]
                            currency="EUR", collection_method="charge_automatically",
                            amount_remaining_micros=20_000_000)

    @activity.defn(name="plan_collection")
    async def plan_collection(self, plan: PayPlan) -> CollectionPlan:
        attempt = len(self.book.charges) + 2  # the original charge was attempt 1
        index = attempt - 2
        method = self.book.methods[index] if index < len(self.book.methods) else self.book.method
        self.book.charges.append((method, (await self.env.get_current_time()).astimezone(UTC)))
        return CollectionPlan(payment_method_id=method, amount_micros=20_000_000, currency="EUR",
                              customer_id="cus_1", attempt=attempt)

    @activity.defn(name="send_notification")
    async def send_notification(self, note: Notification) -> None:
        self.book.notes.append(note)

    def all(self) -> list[Any]:
        return [self.dunning_setup, self.advise_retry, self.record_dunning, self.finish_dunning, self.invoice_state,
                self.plan_collection, self.send_notification]


class Run:
    def __init__(self, env: WorkflowEnvironment, decline: str = "card_declined") -> None:
        self.env = env
        self.book = Book()
        self.task_queue = f"dunning-{uuid.uuid4().hex[:8]}"
        self.invoice_id = f"in_{uuid.uuid4().hex[:8]}"
        self.decline = decline

    async def start(self, prepared: DunningPrepared | None = None) -> WorkflowHandle[Any, DunningState]:
        now = (await self.env.get_current_time()).astimezone(UTC).replace(microsecond=0)
        self.started_at = now
        inp = DunningInput(tenant_id=TENANT, invoice_id=self.invoice_id, customer_id="cus_1",
                           subscription_id="sub_1", first_failure_at=now, decline_code=self.decline,
                           failed_payment_id=f"pay_{self.invoice_id}_1", prepared=prepared)
        return await self.env.client.start_workflow(
            DunningWorkflow.run, inp, id=dunning_workflow_id(TENANT, self.invoice_id), task_queue=self.task_queue,
            search_attributes=sa.at_start((sa.TENANT_ID, TENANT), (sa.INVOICE_ID, self.invoice_id)),
            result_type=DunningState)

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[Worker]:
        async with Worker(self.env.client, task_queue=self.task_queue, workflows=[DunningWorkflow, StandInPayment],
                          activities=FakeActivities(self.book, self.env).all()) as worker, asyncio.timeout(60):
            yield worker

    def kinds(self) -> list[str]:
        return [r.type for r in self.book.records]


@pytest.fixture
async def run(private_env: WorkflowEnvironment) -> Run:
    return Run(private_env)


@pytest.mark.parametrize("stage", [1, 2, 3, 4])
async def test_recovery_at_each_stage(private_env: WorkflowEnvironment, stage: int) -> None:
    run = Run(private_env)
    run.book.methods = ["pm_declined"] * (stage - 1) + ["pm_ok"]
    async with run.worker():
        handle = await run.start()
        result = await handle.result()
        if stage == 2:
            await record_history(handle, "recovered_at_stage_2", kind="dunning")
    assert result.outcome == "recovered" and result.stage == stage
    assert run.kinds() == ["dunning_started"] + ["dunning_retry_failed"] * (stage - 1) + ["dunning_recovered"]
    assert run.book.records[-1].metadata["stage"] == stage
    # The retries ran on the schedule: 1, 3, 5, 7 days after the first failure.
    days = [round((at - run.started_at) / DAY) for _, at in run.book.charges]
    assert days == [1, 3, 5, 7][:stage]
    assert [n.data["stage"] for n in run.book.notes] == list(range(1, stage + 1))


async def test_exhaustion_applies_the_final_action(run: Run) -> None:
    async with run.worker():
        handle = await run.start()
        result = await handle.result()
        await record_history(handle, "exhausted", kind="dunning")
    assert result.outcome == "exhausted" and len(run.book.charges) == 4
    assert [(f.subscription_end, f.mark_invoice_uncollectible) for f in run.book.finals] == [("unpaid", True)]
    assert run.book.notes[-1].data["template"] == "subscription_payment_failed_final"
    assert "scheduled retries are used up" in result.explanations[-1]


async def test_a_hard_decline_waits_for_a_new_card_then_retries_at_once(private_env: WorkflowEnvironment) -> None:
    run = Run(private_env, decline="lost_card")
    run.book.method = "pm_ok"
    async with run.worker():
        handle = await run.start()
        await private_env.sleep(2 * DAY)
        state = await handle.query("status", result_type=DunningState)
        assert state.waiting_for == "payment_method" and run.book.charges == []  # never retried on that card
        now = (await private_env.get_current_time()).astimezone(UTC).replace(microsecond=0)
        await handle.signal(PAYMENT_METHOD_SIGNAL, PaymentMethodUpdated(event_id="pm_new", payment_method_id="pm_ok",
                                                                       at=now))
        result = await handle.result()
        await record_history(handle, "hard_decline_new_card", kind="dunning")
    assert result.outcome == "recovered" and len(run.book.charges) == 1
    assert round((run.book.charges[0][1] - run.started_at) / DAY) == 2  # at once, not at a stage's time
    assert run.book.notes[0].data["template"] == "update_payment_method"


async def test_a_new_card_in_the_failures_own_second_retries_at_once(private_env: WorkflowEnvironment) -> None:
    # The signal's instant equals the failure's to the second (and may even read a little earlier on another
    # clock): it came after the failure was recorded, so it is new.
    run = Run(private_env, decline="lost_card")
    run.book.method = "pm_ok"
    async with run.worker():
        handle = await run.start()
        await handle.signal(PAYMENT_METHOD_SIGNAL, PaymentMethodUpdated(
            event_id="pm_same_second", payment_method_id="pm_ok", at=run.started_at))
        result = await handle.result()
    assert result.outcome == "recovered" and [m for m, _ in run.book.charges] == ["pm_ok"]
    assert (run.book.charges[0][1] - run.started_at) < timedelta(minutes=1)  # at once, not after days of waiting
    assert run.kinds() == ["dunning_started", "dunning_recovered"]
    assert run.book.records[-1].metadata["trigger"] == "payment_method_updated"
    assert "a new payment method was added" in result.explanations[-1]


async def test_the_card_that_failed_again_is_not_new(private_env: WorkflowEnvironment) -> None:
    # A new card retried at once and declined softly: that card is now the latest failure's, so the schedule
    # goes on from there (the next stage), with no second immediate retry.
    run = Run(private_env, decline="lost_card")
    run.book.methods = ["pm_declined", "pm_ok"]
    async with run.worker():
        handle = await run.start()
        await private_env.sleep(DAY / 2)
        now = (await private_env.get_current_time()).astimezone(UTC).replace(microsecond=0)
        await handle.signal(PAYMENT_METHOD_SIGNAL, PaymentMethodUpdated(
            event_id="pm_new", payment_method_id="pm_declined", at=now))
        result = await handle.result()
    assert result.outcome == "recovered" and [m for m, _ in run.book.charges] == ["pm_declined", "pm_ok"]
    assert [round((at - run.started_at) / (DAY / 2)) for _, at in run.book.charges] == [1, 2]  # at once, then day 1
    assert run.kinds() == ["dunning_started", "dunning_retry_failed", "dunning_recovered"]


async def test_a_hard_decline_with_no_new_card_ends_at_the_schedules_end(private_env: WorkflowEnvironment) -> None:
    run = Run(private_env, decline="expired_card")
    async with run.worker():
        handle = await run.start()
        result = await handle.result()
    assert result.outcome == "exhausted" and run.book.charges == []
    assert "hard decline" in result.explanations[-1]


async def test_a_payment_during_a_wait_stops_dunning_at_once(run: Run) -> None:
    async with run.worker():
        handle = await run.start()
        await run.env.sleep(DAY / 2)
        run.book.status = "paid"  # paid out of band
        await handle.signal(INVOICE_SETTLED_SIGNAL, InvoiceSettled(event_id="paid-oob", status="paid"))
        result = await handle.result()
        await record_history(handle, "settled_during_wait", kind="dunning")
    assert result.outcome == "settled_elsewhere" and run.book.charges == []
    assert run.kinds() == ["dunning_started", "dunning_stopped"]


async def test_advice_moves_the_hour_within_the_policy(run: Run) -> None:
    run.book.methods = ["pm_ok"]
    run.book.advice = RetryAdviceModel(hour_of_day=14, tone="friendly", reason="pays at 14:00")
    async with run.worker():
        handle = await run.start()
        result = await handle.result()
    retry_at = run.book.charges[0][1]
    assert retry_at.hour == 14 or retry_at.date() != (run.started_at + DAY).date()
    assert run.book.notes[0].data["tone"] == "friendly"
    assert "accepted" in result.explanations[0]


async def test_advice_outside_the_policy_is_refused_and_explained(run: Run) -> None:
    run.book.methods = ["pm_ok"]
    run.book.advice = RetryAdviceModel(hour_of_day=3, tone="shouty", reason="night owl")
    async with run.worker():
        result = await (await run.start()).result()
    assert round((run.book.charges[0][1] - run.started_at) / timedelta(hours=1)) == 24  # the schedule's time
    assert run.book.notes[0].data["tone"] == "neutral"
    assert "refused" in result.explanations[0]


async def test_a_prepared_start_waits_at_once_and_dunns_as_any_other(private_env: WorkflowEnvironment) -> None:
    # Its starter recorded `dunning_started`, asked for advice and sent the first stage's notice: the first task
    # starts the timer alone (no local step: the run costs its start and its timer until the first retry).
    run = Run(private_env)
    run.book.methods = ["pm_declined", "pm_ok"]
    prepared = DunningPrepared(
        setup=DunningSetup(policy=DunningPolicyModel(), currency="EUR", amount_remaining_micros=20_000_000),
        advice=RetryAdviceModel(hour_of_day=14, tone="friendly", reason="pays at 14:00"), notified=["retry_1"])
    async with run.worker():
        handle = await run.start(prepared)
        result = await handle.result()
        await record_history(handle, "prepared_recovered_at_stage_2", kind="dunning")
    events = [e async for e in handle.fetch_history_events()]
    timer = next(i for i, e in enumerate(events) if e.HasField("timer_started_event_attributes"))
    assert not [e for e in events[:timer] if e.HasField("marker_recorded_event_attributes")]
    assert result.outcome == "recovered" and result.stage == 2
    assert run.kinds() == ["dunning_retry_failed", "dunning_recovered"]  # the start was its starter's record
    assert [n.data["stage"] for n in run.book.notes] == [2]  # and so was stage 1's notice
    retry_at = run.book.charges[0][1]  # the prepared advice moved the first retry's hour
    assert retry_at.hour == 14 or retry_at.date() != (run.started_at + DAY).date()
    assert "accepted" in result.explanations[0]
    assert [round((at - run.started_at) / DAY) for _, at in run.book.charges] == [1, 3]
