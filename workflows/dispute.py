"""DisputeWorkflow: one durable saga per dispute (chargeback), started by the provider's first webhook about it.

record (needs_response, funds withdrawn) → notify finance → until the dispute is over:
  - reminders before the evidence deadline (e.g. 7, 3 and 1 days before it), each a notification;
  - the `submit_evidence` update (finance, through the API): evidence to the provider → under_review;
  - the `accept` update: the dispute is conceded at the provider → accepted (a loss);
  - `provider_event` signals (`charge.dispute.*`, de-duplicated by event id): closed → won (funds reinstated) |
    lost; funds_reinstated / funds_withdrawn are recorded as they come;
  - once no evidence can be added (submitted, or the deadline passed with none: the provider closes it as lost),
    wait for `charge.dispute.closed`, asking the provider every `poll_interval_seconds` in case it never comes
→ notify the outcome.

Every wait is a workflow timer, so a dispute that lasts weeks costs nothing while it waits, and the
time-skipping test server runs those weeks in milliseconds. One change at a time: the updates and the main loop
take the same lock, and every database change is applied at the event_seq the workflow last saw.
"""

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.disputes import DisputeActivities
    from activities.notifications import NotificationActivities
    from contracts import disputes as c
    from contracts.disputes import (
        AcceptRequest,
        DisputeChange,
        DisputeEvent,
        DisputeInput,
        DisputeView,
        EvidenceRequest,
        ProviderDispute,
        SubmitDisputeEvidence,
    )
    from contracts.errors import (
        INVALID_EVIDENCE,
        INVALID_REQUEST,
        NOT_ACCEPTABLE,
        NOT_ACCEPTING_EVIDENCE,
        PROVIDER_REFUSED,
        PROVIDER_UNAVAILABLE,
    )
    from contracts.notifications import Notification
    from domain.dispute import DisputeStatus, from_provider, moves, outcome
    from domain.money import Money
    from workflows.policies import (
        INTERACTIVE_RETRY,
        INTERACTIVE_SCHEDULE_TO_CLOSE,
        NOTIFY_RETRY,
        NOTIFY_SCHEDULE_TO_CLOSE,
        NOTIFY_TIMEOUT,
    )
    from workflows.steps import Inbox, ProviderPolicy, finish, local_step, provider_call

A = DisputeActivities


@workflow.defn(name=c.DISPUTE_WORKFLOW)
class DisputeWorkflow:
    def __init__(self) -> None:
        self._inp: DisputeInput | None = None
        self._view: DisputeView | None = None
        self._events: Inbox[DisputeEvent] = Inbox(lambda e: e.event_id)
        self._lock = asyncio.Lock()
        self._version = 0  # bumped on every change, so the main loop re-plans its timers
        self._reminders: list[float] = []  # offsets (seconds before the deadline) still to remind at
        self._deadline_passed = False

    # --- messages -------------------------------------------------------------------------------------------
    @workflow.signal(name=c.PROVIDER_EVENT_SIGNAL)
    def provider_event(self, event: DisputeEvent) -> None:
        self._events.offer(event)  # webhooks arrive more than once; each id is acted on once

    @workflow.update(name=c.SUBMIT_EVIDENCE_UPDATE)
    async def submit_evidence(self, req: EvidenceRequest) -> DisputeView:
        async with self._lock:
            self._check_takes_evidence()  # again: the dispute may have moved while this waited for the lock
            assert self._inp is not None and self._view is not None
            answer: ProviderDispute = await self._interactive(
                A.submit_dispute_evidence, SubmitDisputeEvidence(
                    provider_dispute_id=self._inp.provider_dispute_id, evidence=req.evidence, submit=req.submit,
                    idempotency_key=f"{self._inp.dispute_id}:evidence:{req.request_id}"))
            await self._change(
                status=DisputeStatus.UNDER_REVIEW if req.submit else None,
                event=None if req.submit else "dispute.evidence_staged",
                evidence={**self._view.evidence, **req.evidence}, evidence_submitted=req.submit,
                actor=req.actor)
            await self._apply_provider_status(answer.status, "provider")
        assert self._view is not None
        return self._view

    @submit_evidence.validator
    def _validate_evidence(self, req: EvidenceRequest) -> None:
        if not req.evidence:
            raise ApplicationError("no evidence given", type=INVALID_EVIDENCE)
        self._check_takes_evidence()

    @workflow.update(name=c.ACCEPT_UPDATE)
    async def accept(self, req: AcceptRequest) -> DisputeView:
        async with self._lock:
            self._check_acceptable()
            assert self._inp is not None
            answer: ProviderDispute = await self._interactive(A.accept_dispute,
                                                              self._inp.provider_dispute_id)
            if not self._final:
                await self._change(status=DisputeStatus.ACCEPTED, actor=req.actor)
            workflow.logger.info("dispute accepted", extra={"provider_status": answer.status})
        assert self._view is not None
        return self._view

    @accept.validator
    def _validate_accept(self, req: AcceptRequest) -> None:
        self._check_acceptable()

    @workflow.query
    def status(self) -> DisputeView | None:
        return self._view

    # --- the saga -------------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: DisputeInput) -> DisputeView:
        self._inp = inp
        async with self._lock:
            self._view = await local_step(A.record_dispute, inp)
            if self._final:  # a re-run after the dispute was already closed (e.g. a reset)
                return await finish(self._view)
            due = self._due
            now = workflow.now()
            self._reminders = sorted((o for o in inp.reminder_offsets_seconds
                                      if due is not None and due - timedelta(seconds=o) > now), reverse=True)
            await self._notify("dispute.created", "A payment was disputed", {
                "reason": inp.reason, "evidence_due_by": due.isoformat() if due else None})
        while not self._final:
            async with self._lock:
                while self._events and not self._final:
                    await self._on_event(self._events.pop())
            if self._final:
                break
            delay, action = self._next_wake()
            if delay > timedelta(0):
                version = self._version
                try:
                    await workflow.wait_condition(
                        lambda v=version: bool(self._events) or self._version != v, timeout=delay)
                    continue
                except TimeoutError:
                    pass
            async with self._lock:
                if not self._final and self._timer_still_applies(action):
                    await self._on_timer(action)
        async with self._lock:
            await self._notify_outcome()
        assert self._view is not None
        return await finish(self._view)

    def _next_wake(self) -> tuple[timedelta, str]:
        """The next timer: a reminder, the evidence deadline, or (no evidence can be added) a provider poll."""
        assert self._inp is not None and self._view is not None
        due = self._due
        if self._view.status == DisputeStatus.NEEDS_RESPONSE and due is not None and not self._deadline_passed:
            now = workflow.now()
            if self._reminders:
                return due - timedelta(seconds=self._reminders[0]) - now, "reminder"
            return due - now, "deadline"
        return timedelta(seconds=self._inp.poll_interval_seconds), "poll"

    def _timer_still_applies(self, action: str) -> bool:
        """A timer's action still applies (the dispute may have moved while it waited for the lock)."""
        return action == "poll" or (self._view is not None and self._view.status == DisputeStatus.NEEDS_RESPONSE)

    async def _on_timer(self, action: str) -> None:
        assert self._inp is not None and self._view is not None
        due = self._due
        if action == "reminder":
            offset = self._reminders.pop(0)
            await self._notify("dispute.evidence_reminder", "Dispute evidence is due soon", {
                "evidence_due_by": due.isoformat() if due else None, "due_in_seconds": offset},
                suffix=f"_{int(offset)}")
        elif action == "deadline":
            self._deadline_passed = True
            await self._notify("dispute.deadline_passed", "The dispute's evidence deadline passed without evidence",
                               {"evidence_due_by": due.isoformat() if due else None})
        else:
            try:
                polled: ProviderDispute = await provider_call(
                    A.get_dispute, self._inp.provider_dispute_id,
                    ProviderPolicy.of(self._inp.provider_call_timeout_seconds))
            except ActivityError as err:  # keep waiting: the webhook, or the next poll, will tell
                workflow.logger.warning("dispute poll failed", extra={"error": str(err.cause or err)})
                return
            await self._apply_provider_status(polled.status, "poll")

    async def _on_event(self, event: DisputeEvent) -> None:
        assert self._inp is not None and self._view is not None
        actor = f"webhook:{event.event_id}"
        if event.type == c.FUNDS_WITHDRAWN and self._view.funds_withdrawn_micros == 0:
            await self._change(event="dispute.funds_withdrawn", funds_withdrawn_micros=self._inp.amount_micros,
                               actor=actor)
        elif event.type == c.FUNDS_REINSTATED and self._view.funds_reinstated_micros == 0:
            await self._change(event="dispute.funds_reinstated", funds_reinstated_micros=self._reinstated,
                               actor=actor)
        if not self._final:
            await self._apply_provider_status(event.status, actor)

    async def _apply_provider_status(self, provider_status: str | None, actor: str) -> None:
        """Move to what the provider says the dispute is, if that is a move (stale or repeated news is not)."""
        assert self._view is not None
        target = from_provider(provider_status)
        if self._final or not moves(DisputeStatus(self._view.status), target):
            return
        reinstate = target == DisputeStatus.WON and self._view.funds_reinstated_micros == 0
        await self._change(status=target, actor=actor,
                           funds_reinstated_micros=self._reinstated if reinstate else None)

    async def _notify_outcome(self) -> None:
        assert self._view is not None
        money = Money(self._view.amount_micros, self._view.currency)
        await self._notify("dispute.closed", f"Dispute {outcome(DisputeStatus(self._view.status))}", {
            "status": self._view.status, "outcome": outcome(DisputeStatus(self._view.status)),
            "amount": money.to_decimal_string(),
            "funds_reinstated_micros": self._view.funds_reinstated_micros})

    # --- helpers --------------------------------------------------------------------------------------------
    @property
    def _final(self) -> bool:
        return self._view is not None and DisputeStatus(self._view.status).is_terminal

    @property
    def _due(self) -> datetime | None:
        return self._view.evidence_due_by if self._view is not None else None

    @property
    def _reinstated(self) -> int:
        assert self._inp is not None and self._view is not None
        return self._view.funds_withdrawn_micros or self._inp.amount_micros

    def _check_takes_evidence(self) -> None:
        if self._view is None or self._view.status != DisputeStatus.NEEDS_RESPONSE:
            status = self._view.status if self._view else "not recorded yet"
            raise ApplicationError(f"the dispute is {status}: it takes no more evidence", type=NOT_ACCEPTING_EVIDENCE)
        due = self._due
        if self._deadline_passed or (due is not None and workflow.now() >= due):
            raise ApplicationError("the dispute's evidence deadline has passed", type=NOT_ACCEPTING_EVIDENCE)

    def _check_acceptable(self) -> None:
        if self._view is None or self._view.status != DisputeStatus.NEEDS_RESPONSE:
            status = self._view.status if self._view else "not recorded yet"
            raise ApplicationError(f"the dispute is {status}: only a dispute awaiting a response can be accepted",
                                   type=NOT_ACCEPTABLE)

    async def _change(self, *, actor: str, status: DisputeStatus | None = None, **fields: Any) -> None:
        assert self._inp is not None and self._view is not None
        self._view = await local_step(A.apply_dispute_change, DisputeChange(
            tenant_id=self._inp.tenant_id, dispute_id=self._inp.dispute_id, expected_seq=self._view.event_seq,
            status=status.value if status else None, actor=actor, correlation_id=workflow.info().workflow_id,
            **{k: v for k, v in fields.items() if v is not None}))
        self._version += 1

    async def _notify(self, kind: str, subject: str, data: dict[str, Any], suffix: str = "") -> None:
        """A notification must never stall the dispute: after its retries it is logged and skipped."""
        assert self._inp is not None and self._view is not None
        view = self._view
        note = Notification(
            notification_id=f"ntf_{view.id}_{kind.removeprefix('dispute.')}{suffix}", tenant_id=view.tenant_id,
            kind=kind, subject=subject, dispute_id=view.id, payment_id=view.payment_id,
            data={"status": view.status, "amount_micros": view.amount_micros, "currency": view.currency,
                  "provider_dispute_id": view.provider_dispute_id, **data})
        try:
            await workflow.execute_activity(
                NotificationActivities.send_notification, note, start_to_close_timeout=NOTIFY_TIMEOUT,
                schedule_to_close_timeout=NOTIFY_SCHEDULE_TO_CLOSE, retry_policy=NOTIFY_RETRY)
        except ActivityError as err:
            workflow.logger.error("dispute notification failed", extra={"kind": kind, "error": str(err.cause or err)})

    async def _interactive(self, fn: Any, arg: Any) -> Any:
        """A provider call for an update: its failure fails the update (a problem for the caller), not the run."""
        assert self._inp is not None
        try:
            return await workflow.execute_activity(
                fn, arg, start_to_close_timeout=timedelta(seconds=self._inp.provider_call_timeout_seconds),
                schedule_to_close_timeout=INTERACTIVE_SCHEDULE_TO_CLOSE, retry_policy=INTERACTIVE_RETRY)
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == INVALID_REQUEST:
                raise ApplicationError(cause.message, type=PROVIDER_REFUSED) from None
            raise ApplicationError("the provider could not be reached; try again",
                                   type=PROVIDER_UNAVAILABLE) from None
