"""RefundWorkflow: one durable saga per refund.

record (pending; the database enforces the refundable cap) → ask the provider (idempotency key = refund id) →
final state from the provider's answer, its webhook (`refund.updated`, `charge.refunded`, `refund.failed`) or a
status poll → succeeded | failed | canceled.

A refund cannot be compensated (money that went back is back); a provider call that exhausts its retries leaves
the refund `pending` — it still holds its share of the refundable amount — and fails the run for an operator.
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.refunds import RefundActivities
    from contracts import refunds as c
    from contracts.errors import SETTLEMENT_TIMEOUT
    from contracts.refunds import (
        ProviderRefund,
        RecordedRefund,
        RefundEvent,
        RefundInput,
        RefundRejection,
        RefundView,
        SettleRefund,
        SubmitRefund,
    )
    from domain.refund import RefundStatus
    from workflows.steps import Inbox, ProviderPolicy, finish, local_step, provider_call

A = RefundActivities
FINAL = frozenset(s.value for s in RefundStatus if s.is_terminal)


@workflow.defn(name=c.REFUND_WORKFLOW)
class RefundWorkflow:
    def __init__(self) -> None:
        self._inp: RefundInput | None = None
        self._view: RefundView | None = None
        self._rejection: RefundRejection | None = None
        self._submitted = False
        self._events: Inbox[RefundEvent] = Inbox(lambda e: e.event_id)

    @workflow.update(name=c.SUBMITTED_UPDATE)
    async def submitted(self) -> RefundView:
        """Answers once the provider has the refund, or refuses with the reason it was not allowed."""
        await workflow.wait_condition(lambda: self._submitted or self._rejection is not None or self._final)
        if self._rejection is not None:
            raise ApplicationError(self._rejection.message, type=self._rejection.code)
        assert self._view is not None
        return self._view

    @workflow.signal(name=c.PROVIDER_EVENT_SIGNAL)
    def provider_event(self, event: RefundEvent) -> None:
        self._events.offer(event)

    @workflow.query
    def status(self) -> RefundView | None:
        return self._view

    @workflow.run
    async def run(self, inp: RefundInput) -> RefundView | None:
        self._inp = inp
        policy = ProviderPolicy.of(inp.provider_call_timeout_seconds)
        recorded: RecordedRefund = await local_step(A.record_refund, inp)
        if recorded.rejection is not None:
            self._rejection = recorded.rejection
            return await finish(None)
        self._view = recorded.view
        if self._final:
            return await finish(self._view)
        answer: ProviderRefund = await provider_call(A.submit_refund, SubmitRefund(
            tenant_id=inp.tenant_id, refund_id=inp.refund_id, payment_id=inp.payment_id), policy)
        self._view = await local_step(A.attach_provider_refund, self._settle_req("pending", answer))
        self._submitted = True
        await self._apply(answer.status, answer, "provider")
        started = workflow.now()
        while not self._final:
            try:
                await workflow.wait_condition(lambda: bool(self._events),
                                              timeout=timedelta(seconds=inp.webhook_wait_seconds))
            except TimeoutError:
                if workflow.now() - started >= timedelta(seconds=inp.settlement_timeout_seconds):
                    raise ApplicationError("refund not settled in time", type=SETTLEMENT_TIMEOUT) from None
                polled: ProviderRefund = await provider_call(A.get_refund, answer.id, policy)
                await self._apply(polled.status, polled, "poll")
                continue
            while self._events and not self._final:
                event = self._events.pop()
                await self._apply(event.status, ProviderRefund(id=event.provider_refund_id or answer.id,
                                                               status=event.status,
                                                               failure_reason=event.failure_reason),
                                  f"webhook:{event.event_id}")
        return await finish(self._view)

    @property
    def _final(self) -> bool:
        return self._view is not None and RefundStatus(self._view.status).is_terminal

    async def _apply(self, status: str, answer: ProviderRefund, actor: str) -> None:
        if status in FINAL and not self._final:
            self._view = await local_step(A.settle_refund, self._settle_req(status, answer, actor))

    def _settle_req(self, outcome: str, answer: ProviderRefund, actor: str = "workflow") -> SettleRefund:
        assert self._inp is not None
        return SettleRefund(
            tenant_id=self._inp.tenant_id, refund_id=self._inp.refund_id, outcome=outcome,
            provider_refund_id=answer.id, failure_code=answer.failure_reason if outcome == "failed" else None,
            actor=actor, correlation_id=workflow.info().workflow_id,
        )
