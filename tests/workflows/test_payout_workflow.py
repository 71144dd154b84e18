"""PayoutWorkflow and the weekly fan-out (PayoutRunsWorkflow) on the time-skipping test server, against in-memory
fake activities: batches of accounts, approval with its reminder and deadline (days pass in milliseconds), payout
news by signal, the polling fallback, failed payouts returned to their sellers, and a run that follows up."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts import payouts as c
from contracts.errors import PAYOUT_RUN_DECIDED, PAYOUT_RUN_NOT_AWAITING_APPROVAL
from contracts.notifications import Notification
from contracts.payouts import (
    ComputePage,
    DecisionRequest,
    NewsBatch,
    PageDone,
    PayBatch,
    PayBatchDone,
    PayoutNews,
    PayoutRunInput,
    PayoutRunsInput,
    ReturnFunds,
    RunChange,
    RunState,
    RunStep,
    Settled,
    payout_run_workflow_id,
    scheduled_run_id,
    start_search_attributes,
)
from domain.payout_runs import RunStatus, check_run_move
from tests.recording import record_history
from workflows.payout import PayoutRunsWorkflow, PayoutWorkflow

TENANT = "11111111-1111-1111-1111-111111111111"
AS_OF = date(2026, 12, 7)
HOUR = timedelta(hours=1)


@dataclass
class Sent:
    kind: str
    at: datetime
    note: Notification


@dataclass
class Book:
    """A tenant's accounts and a run in memory; payouts go in transit when paid out and move by news."""

    accounts: list[str] = field(default_factory=lambda: [f"acct_{n}" for n in range(1, 6)])
    not_payable: set[str] = field(default_factory=lambda: {"acct_3"})  # nothing available
    refused: set[str] = field(default_factory=set)  # the provider refuses their transfer
    approval_required: bool = False
    status: str = "computing"
    seq: int = 1
    lines: list[str] = field(default_factory=list)
    payouts: dict[str, str] = field(default_factory=dict)  # payout id → status
    returned: set[str] = field(default_factory=set)
    provider_status: dict[str, str] = field(default_factory=dict)  # what a poll finds
    pages: list[str | None] = field(default_factory=list)
    batches: list[str | None] = field(default_factory=list)
    moves: list[tuple[str, str, str]] = field(default_factory=list)  # (old, new, actor)
    polls: int = 0
    notes: list[Sent] = field(default_factory=list)
    tenants: list[str] = field(default_factory=list)
    deadline: datetime | None = None

    @property
    def kinds(self) -> list[str]:
        return [n.kind for n in self.notes]

    def state(self, run_id: str = "prun_1") -> RunState:
        counts: dict[str, int] = {}
        for status in self.payouts.values():
            counts[status] = counts.get(status, 0) + 1
        return RunState(run_id=run_id, tenant_id=TENANT, status=self.status, as_of=AS_OF, trigger="api",
                        requested_by="api:key_1", approval_required=self.approval_required, approval_hours=48,
                        reminder_hours=24, accounts=len(self.accounts), payable=len(self.lines), payouts=counts,
                        totals={"EUR": 10_000_000 * len(self.lines)}, event_seq=self.seq,
                        approval_deadline=self.deadline)


class FakePayoutActivities:
    def __init__(self, book: Book) -> None:
        self.book = book

    @activity.defn(name="open_payout_run")
    async def open_payout_run(self, inp: PayoutRunInput) -> RunState:
        return self.book.state(inp.run_id)

    @activity.defn(name="payout_run_state")
    async def payout_run_state(self, step: RunStep) -> RunState:
        return self.book.state(step.run_id)

    @activity.defn(name="change_payout_run")
    async def change_payout_run(self, change: RunChange) -> RunState:
        if change.expected_seq == self.book.seq:
            check_run_move(RunStatus(self.book.status), RunStatus(change.status))
            self.book.moves.append((self.book.status, change.status, change.actor))
            self.book.status, self.book.seq = change.status, self.book.seq + 1
            self.book.deadline = change.approval_deadline or self.book.deadline
        return self.book.state(change.run_id)

    @activity.defn(name="list_payout_tenants")
    async def list_payout_tenants(self, inp: PayoutRunsInput) -> list[str]:
        return list(self.book.tenants)

    @activity.defn(name="compute_payout_page")
    async def compute_payout_page(self, page: ComputePage) -> PageDone:
        self.book.pages.append(page.after)
        ids = [a for a in self.book.accounts if page.after is None or a > page.after][:page.limit]
        payable = [a for a in ids if a not in self.book.not_payable]
        self.book.lines += [a for a in payable if a not in self.book.lines]
        return PageDone(next_after=ids[-1] if len(ids) == page.limit else None, accounts=len(ids),
                        payable=len(payable))

    @activity.defn(name="pay_out_batch")
    async def pay_out_batch(self, batch: PayBatch) -> PayBatchDone:
        self.book.batches.append(batch.after)
        lines = [a for a in self.book.lines if batch.after is None or a > batch.after][:batch.limit]
        refused = []
        for account in lines:
            payout_id = f"po_{account}"
            if account in self.book.refused:
                self.book.payouts[payout_id] = "failed"
                self.book.returned.add(payout_id)  # nothing had left: nothing to give back
                refused.append(payout_id)
            else:
                self.book.payouts.setdefault(payout_id, "in_transit")
        return PayBatchDone(next_after=lines[-1] if len(lines) == batch.limit else None, made=len(lines),
                            returned=refused)

    def _apply(self, news: list[PayoutNews]) -> Settled:
        failed = []
        for n in news:
            old = self.book.payouts.get(n.payout_id)
            if old is None or (old in ("paid", "failed", "canceled") and not (old == "paid" and n.status == "failed")):
                continue
            self.book.payouts[n.payout_id] = n.status
            if n.status in ("failed", "canceled"):
                failed.append({"payout_id": n.payout_id, "account_id": n.payout_id.removeprefix("po_"),
                               "amount_micros": 10_000_000, "currency": "EUR", "status": n.status,
                               "failure_code": n.failure_code})
        returned = [p for p, s in self.book.payouts.items() if s in ("failed", "canceled")
                    and p not in self.book.returned]
        return Settled(returned=returned, failed=failed, state=self.book.state())

    @activity.defn(name="apply_payout_news")
    async def apply_payout_news(self, batch: NewsBatch) -> Settled:
        return self._apply(batch.news)

    @activity.defn(name="poll_payouts")
    async def poll_payouts(self, step: RunStep) -> Settled:
        self.book.polls += 1
        news = [PayoutNews(event_id=f"poll:{p}:{s}", payout_id=p, status=s)
                for p, s in self.book.provider_status.items() if self.book.payouts.get(p) == "in_transit"]
        return self._apply(news)

    @activity.defn(name="return_payout_funds")
    async def return_payout_funds(self, req: ReturnFunds) -> RunState:
        self.book.returned |= set(req.payout_ids)
        return self.book.state(req.run_id)

    @activity.defn(name="send_notification")
    async def send_notification(self, note: Notification) -> None:
        self.book.notes.append(Sent(note.kind, activity.info().current_attempt_scheduled_time, note))

    def all(self) -> list[Any]:
        return [self.open_payout_run, self.payout_run_state, self.change_payout_run, self.list_payout_tenants,
                self.compute_payout_page, self.pay_out_batch, self.apply_payout_news, self.poll_payouts,
                self.return_payout_funds, self.send_notification]


class Bench:
    def __init__(self, env: WorkflowEnvironment) -> None:
        self.env, self.client, self.book = env, env.client, Book()
        self.task_queue = f"payouts-{uuid.uuid4().hex[:10]}"
        self.run_id = f"prun_{uuid.uuid4().hex[:8]}"
        self.started: list[str] = []

    def input(self, **overrides: Any) -> PayoutRunInput:
        return PayoutRunInput(**({"tenant_id": TENANT, "run_id": self.run_id, "as_of": AS_OF, "trigger": "api",
                                  "requested_by": "api:key_1", "batch_size": 2, "poll_seconds": 3600.0}
                                 | overrides))

    @property
    def wf_id(self) -> str:
        return payout_run_workflow_id(TENANT, self.run_id)

    async def start(self, **overrides: Any) -> WorkflowHandle[Any, RunState]:
        inp = self.input(**overrides)
        handle = await self.client.start_workflow(PayoutWorkflow.run, inp, id=self.wf_id, task_queue=self.task_queue,
                                                  search_attributes=start_search_attributes(inp))
        self.started.append(self.wf_id)
        return handle

    async def opened(self, handle: WorkflowHandle[Any, RunState]) -> RunState:
        return await handle.execute_update(c.OPENED_UPDATE, result_type=RunState)

    async def decide(self, handle: WorkflowHandle[Any, RunState], decision: str, request_id: str = "r1") -> RunState:
        """As the service sends it: the update's id names the request, so a retry is the same update."""
        return await handle.execute_update(c.DECIDE_UPDATE, DecisionRequest(
            request_id=request_id, decision=decision, actor="api:key_finance"),  # type: ignore[arg-type]
            id=f"decide-{request_id}-{decision}", result_type=RunState)

    async def news(self, handle: WorkflowHandle[Any, RunState], status: str, *payout_ids: str) -> None:
        for payout_id in payout_ids:
            for _ in range(2):  # providers deliver more than once
                await handle.signal(c.PAYOUT_EVENT_SIGNAL, PayoutNews(event_id=f"evt_{payout_id}_{status}",
                                                                      payout_id=payout_id, status=status))

    async def until(self, check: Any, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.02)

    async def terminate_leftovers(self) -> None:
        for wf_id in self.started:
            with suppress(RPCError):
                handle = self.client.get_workflow_handle(wf_id)
                if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                    await handle.terminate("test over")

    @asynccontextmanager
    async def worker(self, timeout: float = 30) -> AsyncIterator[Worker]:
        async with Worker(self.client, task_queue=self.task_queue, workflows=[PayoutWorkflow, PayoutRunsWorkflow],
                          activities=FakePayoutActivities(self.book).all()) as worker, asyncio.timeout(timeout):
            yield worker


@pytest.fixture
async def bench(env: WorkflowEnvironment) -> AsyncIterator[Bench]:
    b = Bench(env)
    yield b
    await b.terminate_leftovers()


@pytest.fixture
async def private_bench(private_env: WorkflowEnvironment) -> AsyncIterator[Bench]:
    # Skipping days moves the server's clock for every test that shares it: a server of its own.
    b = Bench(private_env)
    yield b
    await b.terminate_leftovers()


PAYABLE = ["po_acct_1", "po_acct_2", "po_acct_4", "po_acct_5"]


async def test_a_run_without_approval_computes_in_batches_pays_and_settles_by_webhook(bench: Bench) -> None:
    async with bench.worker():
        handle = await bench.start()
        opened = await bench.opened(handle)
        assert opened.run_id == bench.run_id
        await bench.until(lambda: len(bench.book.payouts) == 4 and bench.book.status == "settling")
        await bench.news(handle, "paid", *PAYABLE)
        final = await handle.result()
        await record_history(handle, "paid_by_webhook", kind="payout")
        described = await handle.describe()
    assert final.status == "completed" and final.payouts == {"paid": 4}
    assert bench.book.pages == [None, "acct_2", "acct_4"]  # five accounts, two per call: no workflow per account
    assert bench.book.batches == [None, "acct_2", "acct_5"]  # four lines, two per call (the last finds none)
    assert [m[1] for m in bench.book.moves] == ["paying", "settling", "completed"]
    assert bench.book.kinds == ["payout.run_completed"]
    assert described.typed_search_attributes.get(c.sa.PAYOUT_STATUS) == "completed"
    assert described.typed_search_attributes.get(c.sa.PAYOUT_RUN_ID) == [bench.run_id]


async def test_approval_waits_reminds_and_pays_once_finance_approves(private_bench: Bench) -> None:
    bench, env = private_bench, private_bench.env
    bench.book.approval_required = True
    async with bench.worker():
        handle = await bench.start()
        await bench.opened(handle)
        await bench.until(lambda: bench.book.kinds == ["payout.run_awaiting_approval"])
        assert bench.book.status == "awaiting_approval"
        assert bench.book.batches == []  # nothing moves before the decision
        await env.sleep(timedelta(hours=25))  # the reminder is due 24 h before the 48 h deadline
        await bench.until(lambda: "payout.run_approval_reminder" in bench.book.kinds)
        approved = await bench.decide(handle, "approve")
        assert approved.status in ("paying", "settling")
        again = await bench.decide(handle, "approve")  # a retried request: the same answer, nothing twice
        assert again.status == approved.status or again.status == "settling"
        await bench.until(lambda: bench.book.status == "settling")
        await bench.news(handle, "paid", *PAYABLE)
        final = await handle.result()
        await record_history(handle, "approved_after_reminder", kind="payout")
    assert final.status == "completed"
    assert bench.book.moves[:2] == [("computing", "awaiting_approval", "workflow"),
                                    ("awaiting_approval", "paying", "api:key_finance")]
    reminder = next(n for n in bench.book.notes if n.kind == "payout.run_approval_reminder")
    awaiting = next(n for n in bench.book.notes if n.kind == "payout.run_awaiting_approval")
    assert timedelta(hours=23) < reminder.at - awaiting.at < timedelta(hours=25)


async def test_no_decision_by_the_deadline_expires_the_run_and_moves_nothing(private_bench: Bench) -> None:
    bench = private_bench
    bench.book.approval_required = True
    async with bench.worker():
        handle = await bench.start()
        final = await handle.result()  # the server skips the 48 h
        await record_history(handle, "expired", kind="payout")
        with pytest.raises(RPCError):  # the run is over: no decision can reach it
            await bench.decide(handle, "approve")
    assert final.status == "expired"
    assert bench.book.kinds == ["payout.run_awaiting_approval", "payout.run_approval_reminder", "payout.run_expired"]
    assert bench.book.batches == [] and bench.book.payouts == {}
    expired = next(n for n in bench.book.notes if n.kind == "payout.run_expired")
    awaiting = next(n for n in bench.book.notes if n.kind == "payout.run_awaiting_approval")
    assert timedelta(hours=47) < expired.at - awaiting.at < timedelta(hours=49)


async def test_a_rejected_run_pays_nothing_and_a_second_decision_is_refused(bench: Bench) -> None:
    bench.book.approval_required = True
    async with bench.worker():
        handle = await bench.start()
        await bench.until(lambda: bench.book.status == "awaiting_approval")
        rejected = await bench.decide(handle, "reject")
        # Refused by the run's validator, or by the server once the run has ended: never applied.
        with pytest.raises((WorkflowUpdateFailedError, RPCError)) as refused:
            await bench.decide(handle, "approve", request_id="r2")
        final = await handle.result()
    assert rejected.status == "rejected" and final.status == "rejected"
    if isinstance(refused.value, WorkflowUpdateFailedError):
        assert isinstance(refused.value.cause, ApplicationError)
        assert refused.value.cause.type in (PAYOUT_RUN_DECIDED, PAYOUT_RUN_NOT_AWAITING_APPROVAL)
    assert bench.book.batches == [] and bench.book.payouts == {}


async def test_a_run_that_needs_no_approval_refuses_a_decision(bench: Bench) -> None:
    async with bench.worker():
        handle = await bench.start()
        await bench.until(lambda: bench.book.status == "settling")
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await bench.decide(handle, "approve")
        await bench.news(handle, "paid", *PAYABLE)
        await handle.result()
    assert isinstance(refused.value.cause, ApplicationError)
    assert refused.value.cause.type == PAYOUT_RUN_NOT_AWAITING_APPROVAL


async def test_failed_and_refused_payouts_go_back_to_the_balance_and_finance_hears_of_each(bench: Bench) -> None:
    bench.book.refused = {"acct_5"}
    async with bench.worker():
        handle = await bench.start()
        await bench.until(lambda: bench.book.status == "settling")
        await bench.news(handle, "paid", "po_acct_1", "po_acct_2")
        await handle.signal(c.PAYOUT_EVENT_SIGNAL, PayoutNews(event_id="evt_4_failed", payout_id="po_acct_4",
                                                              status="failed", failure_code="account_closed"))
        final = await handle.result()
        await record_history(handle, "failed_payout_returned", kind="payout")
    assert final.status == "completed" and final.payouts == {"paid": 2, "failed": 2}
    assert bench.book.returned == {"po_acct_4", "po_acct_5"}
    failures = [n.note for n in bench.book.notes if n.kind == "payout.failed"]
    assert sorted(n.notification_id for n in failures) == [f"ntf_{bench.run_id}_failed_po_acct_4",
                                                           f"ntf_{bench.run_id}_failed_po_acct_5"]
    assert next(n.data for n in failures if "acct_4" in n.notification_id)["failure_code"] == "account_closed"


async def test_without_webhooks_the_run_polls_the_provider(private_bench: Bench) -> None:
    bench = private_bench
    bench.book.provider_status = {p: "paid" for p in PAYABLE}
    async with bench.worker():
        handle = await bench.start()
        final = await handle.result()  # an hour of silence, then a poll finds every payout paid
    assert final.status == "completed" and final.payouts == {"paid": 4} and bench.book.polls == 1


async def test_a_run_started_again_to_follow_up_applies_late_news(bench: Bench) -> None:
    bench.book.status, bench.book.lines = "settling", ["acct_1"]
    bench.book.payouts = {"po_acct_1": "in_transit"}
    async with bench.worker():
        inp = bench.input(start="follow")
        handle = await bench.client.start_workflow(
            PayoutWorkflow.run, inp, id=bench.wf_id, task_queue=bench.task_queue,
            start_signal=c.PAYOUT_EVENT_SIGNAL, start_signal_args=[PayoutNews(
                event_id="evt_late", payout_id="po_acct_1", status="paid")],
            search_attributes=start_search_attributes(inp))
        bench.started.append(bench.wf_id)
        final = await handle.result()
    assert final.status == "completed" and bench.book.payouts == {"po_acct_1": "paid"}
    assert bench.book.pages == []  # nothing computed again


async def test_a_payout_returned_after_its_run_completed_gives_the_funds_back(bench: Bench) -> None:
    bench.book.status, bench.book.lines = "completed", ["acct_1"]
    bench.book.payouts = {"po_acct_1": "paid"}
    async with bench.worker():
        inp = bench.input(start="follow")
        handle = await bench.client.start_workflow(
            PayoutWorkflow.run, inp, id=bench.wf_id, task_queue=bench.task_queue,
            start_signal=c.PAYOUT_EVENT_SIGNAL, start_signal_args=[PayoutNews(
                event_id="evt_returned", payout_id="po_acct_1", status="failed", failure_code="account_closed")],
            search_attributes=start_search_attributes(inp))
        bench.started.append(bench.wf_id)
        final = await handle.result()
    assert final.status == "completed" and bench.book.payouts == {"po_acct_1": "failed"}
    assert bench.book.returned == {"po_acct_1"} and bench.book.moves == []  # the run itself does not move
    assert [n.kind for n in bench.book.notes] == ["payout.failed", "payout.run_completed"]


async def test_the_weekly_fan_out_opens_one_run_per_tenant_once(bench: Bench) -> None:
    tenants = ["22222222-2222-2222-2222-222222222222", "33333333-3333-3333-3333-333333333333"]
    bench.book.tenants = tenants
    bench.book.lines = []  # nothing payable: each run completes at once
    bench.book.accounts = []
    async with bench.worker():
        fan_out = await bench.client.start_workflow(
            PayoutRunsWorkflow.run, PayoutRunsInput(as_of=AS_OF), id=f"payout-runs-{uuid.uuid4().hex[:6]}",
            task_queue=bench.task_queue)
        bench.started += [payout_run_workflow_id(t, scheduled_run_id(t, AS_OF)) for t in tenants]
        first = await fan_out.result()
        await record_history(fan_out, "two_tenants", kind="payout_runs")
        await record_history(bench.client.get_workflow_handle(bench.started[-2]),
                             "scheduled_nothing_to_pay", kind="payout")
        again = await bench.client.execute_workflow(
            PayoutRunsWorkflow.run, PayoutRunsInput(as_of=AS_OF), id=f"payout-runs-{uuid.uuid4().hex[:6]}",
            task_queue=bench.task_queue)
        for wf_id in bench.started[-2:]:
            run = await bench.client.get_workflow_handle(wf_id, result_type=RunState).result()
            assert run.status == "completed"
    assert (first.opened, first.already_open) == (2, 0)
    assert (again.opened, again.already_open) == (0, 2)



async def scheduled_run(bench: Bench, as_of: date | None = None) -> WorkflowHandle[Any, RunState]:
    """What the weekly Schedule starts (no day given: the day it fires), and the one tenant's run it opened."""
    result = await bench.client.execute_workflow(
        PayoutRunsWorkflow.run, PayoutRunsInput(as_of=as_of), id=f"payout-runs-{uuid.uuid4().hex[:6]}",
        task_queue=bench.task_queue)
    assert result.opened == 1
    bench.started.append(payout_run_workflow_id(TENANT, scheduled_run_id(TENANT, result.as_of)))
    handle = bench.client.get_workflow_handle(bench.started[-1], result_type=RunState)
    await bench.opened(handle)
    return handle


async def test_the_scheduled_run_awaits_approval_reminds_and_pays_once_approved(private_bench: Bench) -> None:
    bench, env = private_bench, private_bench.env
    bench.book.tenants, bench.book.approval_required = [TENANT], True
    async with bench.worker(timeout=60):
        handle = await scheduled_run(bench)
        await bench.until(lambda: bench.book.status == "awaiting_approval")
        await env.sleep(timedelta(hours=25))
        await bench.until(lambda: "payout.run_approval_reminder" in bench.book.kinds)
        assert (await bench.decide(handle, "approve")).status in ("paying", "settling")
        await bench.until(lambda: bench.book.status == "settling")
        await bench.news(handle, "paid", *PAYABLE)
        final = await handle.result()
    assert final.status == "completed" and final.payouts == {"paid": 4}
    assert bench.book.moves[1] == ("awaiting_approval", "paying", "api:key_finance")


async def test_the_scheduled_run_expires_at_its_deadline_without_a_decision(private_bench: Bench) -> None:
    """The run as the fan-out opens it (trigger schedule, the day's run id); started here, so that the test
    client waits on it and the server skips the 48 h by itself."""
    bench = private_bench
    bench.book.approval_required = True
    bench.run_id = scheduled_run_id(TENANT, AS_OF)
    async with bench.worker(timeout=60):
        handle = await bench.start(trigger="schedule", requested_by="schedule")
        final = await handle.result()
    assert final.status == "expired"
    assert bench.book.kinds == ["payout.run_awaiting_approval", "payout.run_approval_reminder", "payout.run_expired"]
    assert bench.book.batches == [] and bench.book.payouts == {}
    expired = next(n for n in bench.book.notes if n.kind == "payout.run_expired")
    awaiting = next(n for n in bench.book.notes if n.kind == "payout.run_awaiting_approval")
    assert timedelta(hours=47) < expired.at - awaiting.at < timedelta(hours=49)
