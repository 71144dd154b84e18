"""RefundWorkflow: one durable saga per refund.

record (pending; the database enforces the refundable cap) → ask the provider (idempotency key = refund id) →
final state from the provider's answer, its webhook (`refund.updated`, `charge.refunded`, `refund.failed`) or a
status poll → succeeded | failed | canceled.

A refund cannot be compensated (money that went back is back); a provider call that exhausts its retries leaves
the refund `pending` — it still holds its share of the refundable amount — and fails the run for an operator.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.refunds import RefundActivities
    from workflows.contracts import (
        ProviderRefund,
        RecordedRefund,
        RefundEvent,
        RefundInput,
        RefundRejection,
        RefundView,
        SettleRefund,
        SubmitRefund,
    )
    from workflows.policies import DB_RETRY, PROVIDER_RETRY

FINAL = {"succeeded", "failed", "canceled"}


@workflow.defn
class RefundWorkflow:
    def __init__(self) -> None:
        self._inp: RefundInput | None = None
        self._view: RefundView | None = None
        self._rejection: RefundRejection | None = None
        self._submitted = False
        self._events: list[RefundEvent] = []
        self._seen: set[str] = set()

    @workflow.update
    async def submitted(self) -> RefundView:
        """Answers once the provider has the refund, or refuses with the reason it was not allowed."""
        await workflow.wait_condition(lambda: self._submitted or self._rejection is not None or self._final)
        if self._rejection is not None:
            raise ApplicationError(self._rejection.message, type=self._rejection.code)
        assert self._view is not None
        return self._view

    @workflow.signal
    def provider_event(self, event: RefundEvent) -> None:
        if event.event_id not in self._seen:
            self._seen.add(event.event_id)
            self._events.append(event)

    @workflow.query
    def status(self) -> RefundView | None:
        return self._view

    @workflow.run
    async def run(self, inp: RefundInput) -> RefundView | None:
        self._inp = inp
        recorded: RecordedRefund = await self._local(RefundActivities.record_refund, inp)
        if recorded.rejection is not None:
            self._rejection = recorded.rejection
            return None
        self._view = recorded.view
        if self._final:
            return self._view
        answer: ProviderRefund = await self._provider(RefundActivities.submit_refund, SubmitRefund(
            tenant_id=inp.tenant_id, refund_id=inp.refund_id, payment_id=inp.payment_id))
        self._view = await self._local(RefundActivities.attach_provider_refund, self._settle_req("pending", answer))
        self._submitted = True
        await self._apply(answer.status, answer, "provider")
        started = workflow.now()
        while not self._final:
            try:
                await workflow.wait_condition(lambda: bool(self._events),
                                              timeout=timedelta(seconds=inp.webhook_wait_seconds))
            except TimeoutError:
                if workflow.now() - started >= timedelta(seconds=inp.settlement_timeout_seconds):
                    raise ApplicationError("refund not settled in time", type="SettlementTimeout") from None
                polled: ProviderRefund = await self._provider(RefundActivities.get_refund, answer.id)
                await self._apply(polled.status, polled, "poll")
                continue
            while self._events and not self._final:
                event = self._events.pop(0)
                await self._apply(event.status, ProviderRefund(id=event.provider_refund_id or answer.id,
                                                               status=event.status,
                                                               failure_reason=event.failure_reason),
                                  f"webhook:{event.event_id}")
        return self._view

    @property
    def _final(self) -> bool:
        return self._view is not None and self._view.status in FINAL

    async def _apply(self, status: str, answer: ProviderRefund, actor: str) -> None:
        if status in FINAL and not self._final:
            self._view = await self._local(RefundActivities.settle_refund, self._settle_req(status, answer, actor))

    def _settle_req(self, outcome: str, answer: ProviderRefund, actor: str = "workflow") -> SettleRefund:
        assert self._inp is not None
        return SettleRefund(
            tenant_id=self._inp.tenant_id, refund_id=self._inp.refund_id, outcome=outcome,
            provider_refund_id=answer.id, failure_code=answer.failure_reason if outcome == "failed" else None,
            actor=actor, correlation_id=workflow.info().workflow_id,
        )

    async def _local(self, fn: Any, arg: Any) -> Any:
        return await workflow.execute_local_activity(
            fn, arg, start_to_close_timeout=timedelta(seconds=10), retry_policy=DB_RETRY)

    async def _provider(self, fn: Any, arg: Any) -> Any:
        assert self._inp is not None
        return await workflow.execute_activity(
            fn, arg, start_to_close_timeout=timedelta(seconds=self._inp.provider_call_timeout_seconds),
            schedule_to_close_timeout=timedelta(hours=23), retry_policy=PROVIDER_RETRY)
