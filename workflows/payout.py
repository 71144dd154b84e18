"""PayoutWorkflow: one payout run of one tenant; PayoutRunsWorkflow: the weekly Schedule's, which opens one run per
tenant.

    open (the run row) → compute the lines, a batch of accounts per activity call (domain/payouts.py) →
    [the tenant requires approval: wait for finance's approve or reject update, reminding before the deadline;
     no decision by then: expired, nothing moved] →
    pay, a batch of lines per activity call (transfer + payout each, keyed by account, period and currency) →
    settle: apply payout news as it comes (webhooks, by signal; a poll every `poll_seconds` when none comes),
    return the funds of failed payouts to their sellers' balances and tell finance → completed.
    News after that (a paid payout the bank returns days later) starts the run again ("follow"): it applies the
    news and returns the funds; the run stays completed.

No workflow per account: the work for thousands of accounts is a few dozen activity calls (PERFORMANCE-NOTES).
While settling, news is applied in batches, and a run whose history grows long continues as new (start
"follow"), which reads where the run stands from the database. Every wait is a timer, so a run that waits days
for approval or for banks costs nothing meanwhile. Search attributes: PayoutRunId (and ConnectedAccountId for a
run of one account) at start, PayoutStatus on each change of the run's status.
"""

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.notifications import NotificationActivities
    from activities.payouts import PayoutActivities
    from contracts import payouts as c
    from contracts import search_attributes as sa
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
        PayoutRunsResult,
        ReturnFunds,
        RunChange,
        RunState,
        RunStep,
        Settled,
        payout_run_workflow_id,
        scheduled_run_id,
        start_search_attributes,
    )
    from domain.money import Money
    from domain.payout_runs import RunStatus
    from workflows.policies import (
        BATCH_RETRY,
        NOTIFY_RETRY,
        NOTIFY_SCHEDULE_TO_CLOSE,
        NOTIFY_TIMEOUT,
        PROVIDER_RETRY,
        PROVIDER_SCHEDULE_TO_CLOSE,
    )
    from workflows.steps import Inbox, finish, local_step

A = PayoutActivities
# News applied per database step: each payout is its own short transaction.
NEWS_PER_STEP = 200
# A batch of lines makes two provider calls per line, a few at a time.
PAY_BATCH_TIMEOUT = timedelta(minutes=30)
BATCH_HEARTBEAT = timedelta(minutes=2)
COMPUTE_TIMEOUT = timedelta(minutes=10)


@workflow.defn(name=c.PAYOUT_WORKFLOW)
class PayoutWorkflow:
    @workflow.init
    def __init__(self, inp: PayoutRunInput) -> None:
        self._inp = inp
        self._state: RunState | None = None
        self._decision: DecisionRequest | None = None
        self._news: Inbox[PayoutNews] = Inbox(lambda n: n.event_id)
        self._published = "computing"  # PayoutStatus as set with the start request
        self._deadline: datetime | None = None  # of the approval, when the run awaits one

    # --- messages -------------------------------------------------------------------------------------------
    @workflow.update(name=c.OPENED_UPDATE)
    async def opened(self) -> RunState:
        """Answers once the run is recorded (POST /v1/payouts/runs answers with it)."""
        await workflow.wait_condition(lambda: self._state is not None)
        assert self._state is not None
        return self._state

    @workflow.update(name=c.DECIDE_UPDATE)
    async def decide(self, req: DecisionRequest) -> RunState:
        """Finance approves or rejects a run awaiting approval; answers once the run has moved."""
        if self._decision is None:
            self._decision = req
        await workflow.wait_condition(lambda: self._state is not None
                                      and self._state.status != RunStatus.AWAITING_APPROVAL)
        assert self._state is not None
        return self._state

    @decide.validator
    def _validate_decision(self, req: DecisionRequest) -> None:
        if self._decision is not None and self._decision.request_id != req.request_id:
            raise ApplicationError(f"the run was already {self._decision.decision}d", type=PAYOUT_RUN_DECIDED)
        if self._state is None or self._state.status != RunStatus.AWAITING_APPROVAL:
            status = self._state.status if self._state else "opening"
            raise ApplicationError(f"the run is {status}: it awaits no approval",
                                   type=PAYOUT_RUN_NOT_AWAITING_APPROVAL)

    @workflow.signal(name=c.PAYOUT_EVENT_SIGNAL)
    def payout_event(self, news: PayoutNews) -> None:
        self._news.offer(news)  # webhooks arrive more than once; each id is acted on once

    @workflow.query(name=c.STATUS_QUERY)
    def status(self) -> RunState | None:
        return self._state

    # --- the run --------------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: PayoutRunInput) -> RunState:
        step = RunStep(tenant_id=inp.tenant_id, run_id=inp.run_id, correlation_id=workflow.info().workflow_id)
        if inp.start == "open":
            self._state = await local_step(A.open_payout_run, inp)
            opened_at = workflow.now()
            if self._state.status == RunStatus.COMPUTING:
                payable = await self._compute()
                state = self._state
                if state.approval_required and payable:
                    self._deadline = opened_at + timedelta(hours=state.approval_hours)
                    await self._move(RunStatus.AWAITING_APPROVAL, approval_deadline=self._deadline)
                else:
                    await self._move(RunStatus.PAYING if payable else RunStatus.COMPLETED)
            if self._state.status == RunStatus.AWAITING_APPROVAL:
                await self._await_decision()
        else:
            self._state = await local_step(A.payout_run_state, step)
            if self._state.status == RunStatus.COMPLETED:
                await self._late_news(step)
        self._publish()
        if self._state.status == RunStatus.PAYING:
            await self._pay(step)
        if self._state.status == RunStatus.SETTLING:
            await self._settle(step)
        if self._state.status == RunStatus.COMPLETED:  # the notification's id names the run: told once
            await self._notify("payout.run_completed", "Payout run completed", self._summary())
            # News that came while the run was ending (a payout paid and returned at once) reached this run, not
            # a follow-up: apply it before ending.
            await self._late_news(step)
        return await finish(self._state)

    async def _compute(self) -> int:
        """Every account's lines, a page at a time; how many lines pay."""
        assert self._state is not None
        inp, after, payable = self._inp, None, 0
        while True:
            page: PageDone = await workflow.execute_activity(
                A.compute_payout_page, ComputePage(tenant_id=inp.tenant_id, run_id=inp.run_id, as_of=inp.as_of,
                                                   connected_account_id=inp.connected_account_id, after=after,
                                                   limit=inp.batch_size),
                start_to_close_timeout=COMPUTE_TIMEOUT, heartbeat_timeout=BATCH_HEARTBEAT, retry_policy=BATCH_RETRY)
            payable += page.payable
            if page.next_after is None:
                return payable
            after = page.next_after

    async def _await_decision(self) -> None:
        """Wait for finance: a reminder before the deadline, then the deadline itself."""
        assert self._state is not None
        deadline = self._deadline or self._state.approval_deadline
        assert deadline is not None
        await self._notify("payout.run_awaiting_approval", "A payout run awaits your approval",
                           {**self._summary(), "approval_deadline": deadline.isoformat()})
        reminder_at = deadline - timedelta(hours=self._state.reminder_hours)
        if self._state.reminder_hours and reminder_at > workflow.now():
            try:
                await workflow.wait_condition(lambda: self._decision is not None,
                                              timeout=reminder_at - workflow.now())
            except TimeoutError:
                await self._notify("payout.run_approval_reminder", "A payout run still awaits your approval",
                                   {**self._summary(), "approval_deadline": deadline.isoformat()})
        if self._decision is None:
            try:
                await workflow.wait_condition(lambda: self._decision is not None,
                                              timeout=max(deadline - workflow.now(), timedelta(seconds=1)))
            except TimeoutError:
                await self._move(RunStatus.EXPIRED, reason="no decision by the approval deadline")
                await self._notify("payout.run_expired", "A payout run expired without approval: nothing was paid",
                                   self._summary())
                return
        decision = self._decision
        assert decision is not None
        await self._move(RunStatus.PAYING if decision.decision == "approve" else RunStatus.REJECTED,
                         actor=decision.actor, reason=decision.reason)

    async def _pay(self, step: RunStep) -> None:
        assert self._state is not None
        inp, after, refused = self._inp, None, []
        while True:
            done: PayBatchDone = await workflow.execute_activity(
                A.pay_out_batch, PayBatch(tenant_id=inp.tenant_id, run_id=inp.run_id, after=after,
                                          limit=inp.batch_size, correlation_id=step.correlation_id),
                start_to_close_timeout=PAY_BATCH_TIMEOUT, heartbeat_timeout=BATCH_HEARTBEAT,
                schedule_to_close_timeout=PROVIDER_SCHEDULE_TO_CLOSE, retry_policy=PROVIDER_RETRY)
            refused += done.returned
            if done.next_after is None:
                break
            after = done.next_after
        settled: Settled = await local_step(A.apply_payout_news, NewsBatch(
            tenant_id=inp.tenant_id, run_id=inp.run_id, news=[], correlation_id=step.correlation_id))
        await self._failed_payouts(settled, step, refused)
        await self._move(RunStatus.SETTLING if self._state.open_payouts else RunStatus.COMPLETED)

    async def _settle(self, step: RunStep) -> None:
        assert self._state is not None
        while self._state.open_payouts:
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._inp.model_copy(update={"start": "follow"}))
            try:
                await workflow.wait_condition(lambda: bool(self._news),
                                              timeout=timedelta(seconds=self._inp.poll_seconds))
            except TimeoutError:  # no news in that long: ask the provider
                settled: Settled = await workflow.execute_activity(
                    A.poll_payouts, step, start_to_close_timeout=PAY_BATCH_TIMEOUT,
                    heartbeat_timeout=BATCH_HEARTBEAT, retry_policy=BATCH_RETRY)
            else:
                batch = []
                while self._news and len(batch) < NEWS_PER_STEP:
                    batch.append(self._news.pop())
                settled = await local_step(A.apply_payout_news, NewsBatch(
                    tenant_id=self._inp.tenant_id, run_id=self._inp.run_id, news=batch,
                    correlation_id=step.correlation_id))
            await self._failed_payouts(settled, step, [])
        await self._move(RunStatus.COMPLETED)

    async def _late_news(self, step: RunStep) -> None:
        """News after the run completed (a bank returns a paid payout days later): the run stays completed, the
        payout moves, and a failed one's funds go back to the seller's balance."""
        while self._news:
            batch = []
            while self._news and len(batch) < NEWS_PER_STEP:
                batch.append(self._news.pop())
            settled: Settled = await local_step(A.apply_payout_news, NewsBatch(
                tenant_id=self._inp.tenant_id, run_id=self._inp.run_id, news=batch,
                correlation_id=step.correlation_id))
            await self._failed_payouts(settled, step, [])

    async def _failed_payouts(self, settled: Settled, step: RunStep, refused: list[str]) -> None:
        """Failed payouts' funds go back to the sellers' balances, and finance hears of each."""
        self._state = settled.state
        if settled.returned:
            self._state = await workflow.execute_activity(
                A.return_payout_funds, ReturnFunds(tenant_id=step.tenant_id, run_id=step.run_id,
                                                   payout_ids=settled.returned, correlation_id=step.correlation_id),
                start_to_close_timeout=PAY_BATCH_TIMEOUT, heartbeat_timeout=BATCH_HEARTBEAT,
                schedule_to_close_timeout=PROVIDER_SCHEDULE_TO_CLOSE, retry_policy=PROVIDER_RETRY)
        told = set()
        for failed in settled.failed:
            told.add(failed["payout_id"])
            amount = Money(int(failed["amount_micros"] or 0), str(failed["currency"]))
            await self._notify("payout.failed", f"A payout of {amount} to {failed['account_id']} {failed['status']}",
                               {**failed, "amount": amount.to_decimal_string(), "funds_returned_to_balance": True},
                               suffix=f"_{failed['payout_id']}")
        for payout_id in refused:
            if payout_id not in told:
                await self._notify("payout.failed", "A payout was refused by the provider",
                                   {"payout_id": payout_id, "funds_returned_to_balance": True},
                                   suffix=f"_{payout_id}")

    # --- helpers --------------------------------------------------------------------------------------------
    async def _move(self, status: RunStatus, *, actor: str = "workflow", reason: str | None = None,
                    approval_deadline: Any = None) -> None:
        assert self._state is not None
        self._state = await local_step(A.change_payout_run, RunChange(
            tenant_id=self._inp.tenant_id, run_id=self._inp.run_id, status=status.value,
            expected_seq=self._state.event_seq, actor=actor, correlation_id=workflow.info().workflow_id,
            reason=reason, approval_deadline=approval_deadline))
        self._publish()

    def _publish(self) -> None:
        """PayoutStatus changes a handful of times per run: one visibility write each."""
        if self._state is not None and self._state.status != self._published:
            workflow.upsert_search_attributes([sa.PAYOUT_STATUS.value_set(self._state.status)])
            self._published = self._state.status

    def _summary(self) -> dict[str, Any]:
        assert self._state is not None
        s = self._state
        return {"run_id": s.run_id, "status": s.status, "as_of": s.as_of.isoformat(), "accounts": s.accounts,
                "payable": s.payable, "payouts": s.payouts,
                "totals": {cur: Money(net, cur).to_decimal_string() for cur, net in s.totals.items()}}

    async def _notify(self, kind: str, subject: str, data: dict[str, Any], suffix: str = "") -> None:
        """A notification never stalls a run: after its retries it is logged and skipped."""
        note = Notification(notification_id=f"ntf_{self._inp.run_id}_{kind.removeprefix('payout.')}{suffix}",
                            tenant_id=self._inp.tenant_id, kind=kind, subject=subject, data=data)
        try:
            await workflow.execute_activity(
                NotificationActivities.send_notification, note, start_to_close_timeout=NOTIFY_TIMEOUT,
                schedule_to_close_timeout=NOTIFY_SCHEDULE_TO_CLOSE, retry_policy=NOTIFY_RETRY)
        except ActivityError as err:
            workflow.logger.error("payout notification failed", extra={"kind": kind, "error": str(err.cause or err)})


# Tenants opened per run of the fan-out before it continues as new (its history stays short).
TENANTS_PER_RUN = 500


@workflow.defn(name=c.PAYOUT_RUNS_WORKFLOW)
class PayoutRunsWorkflow:
    """The weekly Schedule's action: a PayoutWorkflow for every tenant with a connected account to pay, each with
    the day's run id (a Schedule that fires twice opens one run per tenant). Runs outlive this one (ABANDON)."""

    @workflow.run
    async def run(self, inp: PayoutRunsInput) -> PayoutRunsResult:
        as_of = inp.as_of or workflow.now().date()
        result = PayoutRunsResult(as_of=as_of)
        tenants: list[str] = await local_step(A.list_payout_tenants, inp)
        for tenant_id in tenants[:TENANTS_PER_RUN]:
            run = PayoutRunInput(tenant_id=tenant_id, run_id=scheduled_run_id(tenant_id, as_of), as_of=as_of,
                                 trigger="schedule", requested_by="schedule", batch_size=inp.batch_size,
                                 poll_seconds=inp.poll_seconds,
                                 provider_call_timeout_seconds=inp.provider_call_timeout_seconds)
            try:
                await workflow.start_child_workflow(
                    c.PAYOUT_WORKFLOW, run, id=payout_run_workflow_id(tenant_id, run.run_id),
                    parent_close_policy=ParentClosePolicy.ABANDON, search_attributes=start_search_attributes(run),
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
                result.opened += 1
            except WorkflowAlreadyStartedError:
                result.already_open += 1
        if len(tenants) > TENANTS_PER_RUN:
            workflow.continue_as_new(inp.model_copy(update={"as_of": as_of,
                                                            "after_tenant": tenants[TENANTS_PER_RUN - 1]}))
        return result
