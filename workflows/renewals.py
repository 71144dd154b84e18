"""RenewalRunWorkflow: renews everything due at an instant in batches, without a workflow per subscription.

    sweep (credits and dunning starts owed, charges an earlier run left) →
    plan batches of due subscriptions in keyset order (their keys only) →
    invoice them, `invoice_window` batches in flight (one transaction per batch and tenant) →
    as each is invoiced, charge it, `charge_window` batches in flight (paced per provider account; a batch
    polls for its asynchronous outcomes) → done when nothing is due and every invoiced batch was charged.

Invoicing never waits for collection: the two windows are independent, so a provider's rate limit slows the
charges, not the invoices. The run continues as new after `batches_per_run` batches (its history stays small),
carrying its cursor, its invoiced-but-uncharged batches and its progress. A crash anywhere is a retried
activity: each batch's work is idempotent in the database (the renewal moved the subscription's due instant in
the invoice's transaction; charges are found by their state), so nothing is skipped or done twice.

The `progress` query answers what was due, invoiced, charged, succeeded, failed, handed to dunning, the rate
and the pacing applied.
"""

import asyncio
from collections import deque
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.renewals import RenewalActivities
    from contracts.errors import NON_RETRYABLE
    from contracts.renewals import (
        PROGRESS_QUERY,
        RENEWAL_RUN_WORKFLOW,
        Batch,
        ChargeBatchRequest,
        ChargeBatchResult,
        InvoiceBatchRequest,
        InvoiceBatchResult,
        Key,
        PlanRequest,
        RenewalProgress,
        RenewalRunInput,
        SweepResult,
    )
    from workflows.policies import BATCH_RETRY

A = RenewalActivities
# A batch retries until it is done: its work is idempotent, and giving up would leave renewals for later.
BATCH_WORK_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                               maximum_interval=timedelta(minutes=1), non_retryable_error_types=list(NON_RETRYABLE))
HEARTBEAT = timedelta(seconds=30)
INVOICE_COUNTS = ("due", "invoiced", "not_charged", "renewed", "trials_converted", "trials_paused",
                  "trials_canceled", "trial_notices", "ended", "expired", "collection_resumed", "deferred")
CHARGE_COUNTS = ("charged", "succeeded", "failed", "handed_to_dunning", "handed_to_customer", "still_processing")


@workflow.defn(name=RENEWAL_RUN_WORKFLOW)
class RenewalRunWorkflow:
    def __init__(self) -> None:
        self._progress = RenewalProgress()

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> RenewalProgress:
        return self._progress

    @workflow.run
    async def run(self, inp: RenewalRunInput) -> RenewalProgress:
        at = (inp.at or workflow.now()).replace(microsecond=0)
        first = inp.progress is None
        progress = inp.progress or RenewalProgress(run_id=inp.run_id or workflow.info().workflow_id, at=at,
                                                   dry_run=inp.dry_run, started_at=workflow.now())
        progress.pacing.rate_per_second = inp.pacing.rate_per_second
        progress.pacing.account = inp.pacing.account
        self._progress = progress
        if inp.dry_run:
            return await self._dry_run(inp, at)
        if first:
            swept: SweepResult = await workflow.execute_activity(
                A.sweep, progress.run_id, start_to_close_timeout=timedelta(minutes=30), heartbeat_timeout=HEARTBEAT,
                retry_policy=BATCH_RETRY)
            progress.credits_issued += swept.credits_issued
            progress.dunning_starts_recovered += swept.dunning_started
        return await self._renew(inp, at)

    async def _dry_run(self, inp: RenewalRunInput, at: datetime) -> RenewalProgress:
        summary: dict[str, int] = await workflow.execute_activity(
            A.due_summary, at, start_to_close_timeout=timedelta(minutes=5), retry_policy=BATCH_RETRY)
        self._progress.due = sum(summary.values())
        workflow.logger.info("renewal dry run", extra={"summary": summary})
        return self._finish()

    async def _renew(self, inp: RenewalRunInput, at: datetime) -> RenewalProgress:
        progress = self._progress
        cursor: Key | None = inp.cursor
        next_batch_no = inp.next_batch_no
        planned: deque[Batch] = deque()
        to_charge: deque[Batch] = deque(inp.pending_charges)
        invoicing: dict[asyncio.Task[InvoiceBatchResult], Batch] = {}
        charging: dict[asyncio.Task[ChargeBatchResult], Batch] = {}
        started = 0
        exhausted = False
        draining = False  # about to continue as new: start nothing, let what is in flight finish
        while True:
            while not draining and len(invoicing) < inp.invoice_window and not exhausted:
                if not planned:
                    batches: list[Batch] = await workflow.execute_activity(
                        A.plan_batches, PlanRequest(at=at, after=cursor, batch_size=inp.batch_size,
                                                    batches=max(inp.invoice_window * 2, 2),
                                                    next_batch_no=next_batch_no),
                        start_to_close_timeout=timedelta(minutes=2), retry_policy=BATCH_WORK_RETRY)
                    if not batches:
                        exhausted = True
                        break
                    planned.extend(batches)
                    cursor = batches[-1].last
                    next_batch_no = batches[-1].batch_no + 1
                batch = planned.popleft()
                invoicing[asyncio.create_task(self._invoice(at, batch))] = batch
                started += 1
            while not draining and len(charging) < inp.charge_window and to_charge:
                batch = to_charge.popleft()
                charging[asyncio.create_task(self._charge(inp, batch))] = batch
            if not invoicing and not charging:
                if draining:
                    # Keep the history small: the next run takes over from the first batch not yet invoiced,
                    # with the batches invoiced here still to be charged.
                    progress.runs += 1
                    workflow.continue_as_new(inp.model_copy(update={
                        "at": at, "run_id": progress.run_id, "cursor": planned[0].after if planned else cursor,
                        "pending_charges": list(to_charge),
                        "next_batch_no": planned[0].batch_no if planned else next_batch_no, "progress": progress}))
                break
            done, _ = await workflow.wait([*invoicing, *charging], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task in invoicing:
                    batch = invoicing.pop(task)  # type: ignore[call-overload]
                    result: InvoiceBatchResult = task.result()  # type: ignore[assignment]
                    for name in INVOICE_COUNTS:
                        setattr(progress, name, getattr(progress, name) + getattr(result, name))
                    progress.batches += 1
                    if result.tenants:
                        to_charge.append(batch.model_copy(update={"tenants": result.tenants}))
                else:
                    charging.pop(task)  # type: ignore[call-overload]
                    charged: ChargeBatchResult = task.result()  # type: ignore[assignment]
                    for name in CHARGE_COUNTS:
                        setattr(progress, name, getattr(progress, name) + getattr(charged, name))
                    progress.pacing.waited_seconds += charged.waited_seconds
                    progress.pacing.throttled += charged.throttled
            self._rate()
            more = bool(planned) or not exhausted or bool(to_charge)
            if more and (started >= inp.batches_per_run or workflow.info().is_continue_as_new_suggested()):
                draining = True
        return self._finish()

    async def _invoice(self, at: datetime, batch: Batch) -> InvoiceBatchResult:
        result: InvoiceBatchResult = await workflow.execute_activity(
            A.invoice_batch, InvoiceBatchRequest(run_id=self._progress.run_id, at=at, batch=batch),
            start_to_close_timeout=timedelta(minutes=10), heartbeat_timeout=HEARTBEAT, retry_policy=BATCH_WORK_RETRY)
        return result

    async def _charge(self, inp: RenewalRunInput, batch: Batch) -> ChargeBatchResult:
        result: ChargeBatchResult = await workflow.execute_activity(
            A.charge_batch, ChargeBatchRequest(run_id=self._progress.run_id, batch_no=batch.batch_no,
                                               tenants=batch.tenants, pacing=inp.pacing,
                                               settle_wait_seconds=inp.settle_wait_seconds),
            start_to_close_timeout=timedelta(hours=2), heartbeat_timeout=HEARTBEAT, retry_policy=BATCH_WORK_RETRY)
        return result

    def _rate(self) -> None:
        progress = self._progress
        if progress.started_at is not None:
            elapsed = (workflow.now() - progress.started_at).total_seconds()
            progress.rate_per_second = round(progress.due / elapsed, 1) if elapsed > 0 else 0.0

    def _finish(self) -> RenewalProgress:
        self._rate()
        self._progress.done = True
        self._progress.finished_at = workflow.now()
        return self._progress
