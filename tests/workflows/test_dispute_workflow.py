"""DisputeWorkflow on the time-skipping test server, against in-memory fake activities.

Days of waiting (reminders, the evidence deadline, provider polls) pass in milliseconds: the server skips time
while a test awaits `handle.result()` or `env.sleep()`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.disputes import (
    DAY_SECONDS,
    AcceptRequest,
    DisputeChange,
    DisputeEvent,
    DisputeInput,
    DisputeView,
    EvidenceRequest,
    ProviderDispute,
    SubmitDisputeEvidence,
    dispute_workflow_id,
)
from contracts.errors import INVALID_REQUEST, INVALID_TRANSITION, NOT_ACCEPTABLE, NOT_ACCEPTING_EVIDENCE
from contracts.notifications import Notification
from domain.dispute import DisputeStatus, InvalidDisputeTransition, check_transition
from workflows.dispute import DisputeWorkflow

DAY = timedelta(days=1)
AMOUNT = 25_000_000


# --- fakes ----------------------------------------------------------------------------------------------------
@dataclass
class Change:
    event: str
    old: str
    new: str
    actor: str


@dataclass
class Sent:
    kind: str
    at: datetime  # workflow time at which the notification was scheduled
    note: Notification


@dataclass
class FakeDisputes:
    """One dispute row (transitions checked by the domain's table), a scriptable provider and a notifier."""

    view: DisputeView | None = None
    changes: list[Change] = field(default_factory=list)
    provider_status: str = "needs_response"
    poll_script: list[str] = field(default_factory=list)  # statuses get_dispute reports, one per call
    provider_calls: list[str] = field(default_factory=list)
    submitted_evidence: list[dict[str, str]] = field(default_factory=list)
    notifications: list[Sent] = field(default_factory=list)
    submit_error: BaseException | None = None

    @property
    def kinds(self) -> list[str]:
        return [n.kind for n in self.notifications]

    @property
    def transitions(self) -> list[str]:
        return [c.new for c in self.changes if c.old != c.new]

    @activity.defn(name="record_dispute")
    async def record_dispute(self, inp: DisputeInput) -> DisputeView:
        if self.view is None:
            now = datetime.now(UTC)
            self.view = DisputeView(
                id=inp.dispute_id, tenant_id=inp.tenant_id, payment_id=inp.payment_id, provider=inp.provider,
                provider_dispute_id=inp.provider_dispute_id, amount_micros=inp.amount_micros, currency=inp.currency,
                reason=inp.reason, status="needs_response", evidence_due_by=inp.evidence_due_by,
                funds_withdrawn_micros=inp.amount_micros, workflow_id=dispute_workflow_id(inp.tenant_id,
                                                                                          inp.dispute_id),
                created_at=now, updated_at=now)
        return self.view

    @activity.defn(name="apply_dispute_change")
    async def apply_dispute_change(self, req: DisputeChange) -> DisputeView:
        assert self.view is not None
        if req.expected_seq != self.view.event_seq:
            return self.view
        old = DisputeStatus(self.view.status)
        new = DisputeStatus(req.status) if req.status else old
        try:
            if new != old:
                check_transition(old, new)
            elif old.is_terminal:
                raise InvalidDisputeTransition("terminal")
        except InvalidDisputeTransition as exc:
            raise ApplicationError(str(exc), type=INVALID_TRANSITION, non_retryable=True) from exc
        update: dict[str, Any] = {"status": new.value, "event_seq": self.view.event_seq + 1,
                                  "updated_at": datetime.now(UTC)}
        for name in ("evidence", "funds_withdrawn_micros", "funds_reinstated_micros"):
            if getattr(req, name) is not None:
                update[name] = getattr(req, name)
        self.view = self.view.model_copy(update=update)
        self.changes.append(Change(req.event or f"dispute.{new.value}", old.value, new.value, req.actor))
        return self.view

    @activity.defn(name="submit_dispute_evidence")
    async def submit_dispute_evidence(self, req: SubmitDisputeEvidence) -> ProviderDispute:
        self.provider_calls.append("submit_dispute_evidence")
        if self.submit_error is not None:
            raise self.submit_error
        self.submitted_evidence.append(req.evidence)
        if req.submit:
            self.provider_status = "under_review"
        return ProviderDispute(id=req.provider_dispute_id, status=self.provider_status)

    @activity.defn(name="accept_dispute")
    async def accept_dispute(self, provider_dispute_id: str) -> ProviderDispute:
        self.provider_calls.append("accept_dispute")
        self.provider_status = "lost"
        return ProviderDispute(id=provider_dispute_id, status="lost")

    @activity.defn(name="get_dispute")
    async def get_dispute(self, provider_dispute_id: str) -> ProviderDispute:
        self.provider_calls.append("get_dispute")
        if self.poll_script:
            self.provider_status = self.poll_script.pop(0)
        return ProviderDispute(id=provider_dispute_id, status=self.provider_status)

    @activity.defn(name="send_notification")
    async def send_notification(self, note: Notification) -> None:
        self.notifications.append(Sent(note.kind, activity.info().scheduled_time, note))

    def all(self) -> list[Callable[..., Any]]:
        return [self.record_dispute, self.apply_dispute_change, self.submit_dispute_evidence, self.accept_dispute,
                self.get_dispute, self.send_notification]


class Case:
    def __init__(self, env: WorkflowEnvironment) -> None:
        self.env = env
        self.fake = FakeDisputes()
        self.task_queue = f"disputes-{uuid.uuid4().hex[:10]}"
        self.dispute_id = f"dsp_{uuid.uuid4().hex[:12]}"
        self.tenant_id = "11111111-1111-1111-1111-111111111111"
        self.started_at: datetime | None = None

    async def start(self, due_in: timedelta = 10 * DAY, **overrides: Any) -> WorkflowHandle[Any, DisputeView]:
        self.started_at = await self.env.get_current_time()
        fields: dict[str, Any] = dict(
            tenant_id=self.tenant_id, dispute_id=self.dispute_id, payment_id="pay_1", provider="fake",
            provider_dispute_id="dp_1", amount_micros=AMOUNT, currency="EUR", reason="fraudulent",
            evidence_due_by=self.started_at + due_in, poll_interval_seconds=6 * 3600.0,
        )
        inp = DisputeInput(**(fields | overrides))
        handle = await self.env.client.start_workflow(
            DisputeWorkflow.run, inp, id=dispute_workflow_id(self.tenant_id, self.dispute_id),
            task_queue=self.task_queue)
        async with asyncio.timeout(10):  # the row is recorded (updates are refused before that)
            while await handle.query(DisputeWorkflow.status) is None:
                await asyncio.sleep(0.02)
        return handle

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[Worker]:
        async with Worker(self.env.client, task_queue=self.task_queue, workflows=[DisputeWorkflow],
                          activities=self.fake.all()) as worker:
            yield worker

    def sent_after_start(self, kind: str) -> list[timedelta]:
        assert self.started_at is not None
        return [n.at - self.started_at for n in self.fake.notifications if n.kind == kind]


@pytest.fixture
def case(env: WorkflowEnvironment) -> Case:
    return Case(env)


def closed(status: str, event_id: str = "evt_closed") -> DisputeEvent:
    return DisputeEvent(event_id=event_id, type="charge.dispute.closed", status=status)


def evidence(text: str = "winning_evidence", submit: bool = True) -> EvidenceRequest:
    return EvidenceRequest(request_id=uuid.uuid4().hex, evidence={"uncategorized_text": text}, submit=submit,
                           actor="api:key_finance")


# --- tests ----------------------------------------------------------------------------------------------------
async def test_evidence_before_the_deadline_wins(case: Case) -> None:
    async with case.worker():
        handle = await case.start()
        view = await handle.execute_update(DisputeWorkflow.submit_evidence, evidence())
        assert view.status == "under_review"
        assert view.evidence == {"uncategorized_text": "winning_evidence"}
        await handle.signal(DisputeWorkflow.provider_event,
                            DisputeEvent(event_id="evt_re", type="charge.dispute.funds_reinstated", status="won"))
        await handle.signal(DisputeWorkflow.provider_event, closed("won"))
        result = await handle.result()

    assert result.status == "won"
    assert result.funds_withdrawn_micros == result.funds_reinstated_micros == AMOUNT
    assert case.fake.transitions == ["under_review", "won"]
    assert case.fake.provider_calls == ["submit_dispute_evidence"]
    assert case.fake.submitted_evidence == [{"uncategorized_text": "winning_evidence"}]
    assert case.fake.kinds == ["dispute.created", "dispute.closed"]
    assert case.fake.notifications[-1].note.data["outcome"] == "won"
    assert case.fake.changes[-1].actor.startswith("webhook:evt_")


async def test_reminders_fire_before_the_deadline_then_the_provider_closes_it_lost(case: Case) -> None:
    case.fake.poll_script = ["needs_response", "lost"]  # the provider closes it some hours after the deadline
    async with case.worker():
        handle = await case.start(due_in=10 * DAY)
        result = await handle.result()

    assert result.status == "lost"
    assert result.funds_reinstated_micros == 0
    assert case.fake.kinds == ["dispute.created", "dispute.evidence_reminder", "dispute.evidence_reminder",
                               "dispute.evidence_reminder", "dispute.deadline_passed", "dispute.closed"]
    reminders = case.sent_after_start("dispute.evidence_reminder")
    assert [round(r / DAY, 3) for r in reminders] == [3.0, 7.0, 9.0]  # 7, 3 and 1 days before the deadline
    assert [n.note.data["due_in_seconds"] for n in case.fake.notifications
            if n.kind == "dispute.evidence_reminder"] == [7 * DAY_SECONDS, 3 * DAY_SECONDS, 1 * DAY_SECONDS]
    assert [round(d / DAY, 3) for d in case.sent_after_start("dispute.deadline_passed")] == [10.0]
    assert case.fake.provider_calls == ["get_dispute", "get_dispute"]  # polled after the deadline, every 6 h
    assert [round(d / timedelta(hours=1), 1) for d in case.sent_after_start("dispute.closed")] == [252.0]
    assert case.fake.transitions == ["lost"]
    assert case.fake.changes[-1].actor == "poll"
    ids = [n.note.notification_id for n in case.fake.notifications]
    assert len(set(ids)) == len(ids)  # each notification is recognisable when a send is retried


async def test_reminders_already_past_when_the_dispute_opens_are_skipped(case: Case) -> None:
    case.fake.poll_script = ["lost"]
    async with case.worker():
        handle = await case.start(due_in=2 * DAY)
        await handle.result()
    assert [round(r / DAY, 3) for r in case.sent_after_start("dispute.evidence_reminder")] == [1.0]


async def test_no_evidence_the_closed_webhook_after_the_deadline_loses_it(case: Case, env: WorkflowEnvironment) -> None:
    async with case.worker():
        handle = await case.start(due_in=2 * DAY, poll_interval_seconds=30 * DAY_SECONDS)
        await env.sleep(2 * DAY + timedelta(hours=1))
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(DisputeWorkflow.submit_evidence, evidence())
        assert isinstance(refused.value.cause, ApplicationError)
        assert refused.value.cause.type == NOT_ACCEPTING_EVIDENCE
        await handle.signal(DisputeWorkflow.provider_event, closed("lost"))
        result = await handle.result()

    assert result.status == "lost"
    assert case.fake.provider_calls == []  # the webhook came before the first poll
    assert case.fake.kinds[-2:] == ["dispute.deadline_passed", "dispute.closed"]


async def test_accept_concedes_the_dispute(case: Case) -> None:
    async with case.worker():
        handle = await case.start()
        view = await handle.execute_update(DisputeWorkflow.accept, AcceptRequest(request_id="a1", actor="api:k"))
        assert view.status == "accepted"
        await handle.signal(DisputeWorkflow.provider_event, closed("lost"))  # the provider's news of it: stale
        result = await handle.result()

    assert result.status == "accepted"
    assert result.funds_reinstated_micros == 0
    assert case.fake.transitions == ["accepted"]
    assert case.fake.provider_calls == ["accept_dispute"]
    assert case.fake.kinds == ["dispute.created", "dispute.closed"]
    assert case.fake.notifications[-1].note.data["outcome"] == "lost"


async def test_duplicate_closed_signals_make_one_transition(case: Case) -> None:
    async with case.worker():
        handle = await case.start()
        await handle.execute_update(DisputeWorkflow.submit_evidence, evidence("losing_evidence"))
        for event in (closed("lost", "evt_1"), closed("lost", "evt_1"), closed("lost", "evt_2"),
                      closed("won", "evt_3")):
            await handle.signal(DisputeWorkflow.provider_event, event)
        result = await handle.result()

    assert result.status == "lost"
    assert case.fake.transitions == ["under_review", "lost"]
    assert [c.actor for c in case.fake.changes if c.new == "lost"] == ["webhook:evt_1"]
    assert case.fake.kinds.count("dispute.closed") == 1


async def test_updates_are_refused_once_the_dispute_moved_on(case: Case) -> None:
    async with case.worker():
        handle = await case.start()
        staged = await handle.execute_update(DisputeWorkflow.submit_evidence, evidence("draft", submit=False))
        assert staged.status == "needs_response" and staged.evidence == {"uncategorized_text": "draft"}
        await handle.execute_update(DisputeWorkflow.submit_evidence, evidence())
        for update, arg, kind in (
            (DisputeWorkflow.submit_evidence, evidence(), NOT_ACCEPTING_EVIDENCE),
            (DisputeWorkflow.accept, AcceptRequest(request_id="a2"), NOT_ACCEPTABLE),
        ):
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(update, arg)
            assert isinstance(refused.value.cause, ApplicationError) and refused.value.cause.type == kind
        await handle.signal(DisputeWorkflow.provider_event, closed("won"))
        result = await handle.result()

    assert result.status == "won"
    assert [c.event for c in case.fake.changes] == ["dispute.evidence_staged", "dispute.under_review", "dispute.won"]
    assert case.fake.submitted_evidence == [{"uncategorized_text": "draft"}, {"uncategorized_text": "winning_evidence"}]


async def test_a_provider_refusal_fails_the_update_not_the_dispute(case: Case) -> None:
    case.fake.submit_error = ApplicationError("dispute already closed", type=INVALID_REQUEST, non_retryable=True)
    async with case.worker():
        handle = await case.start()
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(DisputeWorkflow.submit_evidence, evidence())
        assert isinstance(refused.value.cause, ApplicationError)
        assert refused.value.cause.type == "ProviderRefused"
        await handle.signal(DisputeWorkflow.provider_event, closed("lost"))
        result = await handle.result()
    assert result.status == "lost"
    assert case.fake.transitions == ["lost"]
