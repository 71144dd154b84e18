"""RenewalRunWorkflow on the time-skipping test server against in-memory fake activities: every due subscription is
invoiced once and charged once whatever the batches' failures and retries, across continue-as-new; invoicing
runs ahead of a slow (paced) charging; the progress query answers mid-run; a dry run changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

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
from tests.recording import record_history
from workflows.renewals import RenewalRunWorkflow

TENANT = "11111111-1111-1111-1111-111111111111"
AT = datetime(2027, 1, 1, tzinfo=UTC)


@dataclass
class Book:
    """Due subscriptions in keyset order; what the fake database did with them."""

    n: int
    declined_every: int = 0  # every k-th charge is declined (and handed to dunning)
    fail_invoice_first: set[int] = field(default_factory=set)  # these batches' first invoicing attempt fails
    fail_charge_first: set[int] = field(default_factory=set)
    charge_delay: float = 0.0  # seconds per charging batch (real time: it is an activity): a paced provider
    invoiced: Counter[str] = field(default_factory=Counter)  # effective writes (idempotent: at most 1 each)
    charged: Counter[str] = field(default_factory=Counter)
    invoice_calls: Counter[int] = field(default_factory=Counter)
    charge_calls: Counter[int] = field(default_factory=Counter)
    by_batch: dict[int, list[str]] = field(default_factory=dict)
    results: dict[int, InvoiceBatchResult] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # activity calls, in order

    def __post_init__(self) -> None:
        self.ids = [f"sub_{i:06d}" for i in range(self.n)]
        self.due = set(self.ids)

    def key(self, sid: str) -> Key:
        return Key(at=AT, tenant_id=TENANT, subscription_id=sid)


class FakeRenewals:
    def __init__(self, book: Book) -> None:
        self.book = book

    @activity.defn(name="sweep")
    async def sweep(self, run_id: str) -> SweepResult:
        return SweepResult()

    @activity.defn(name="due_summary")
    async def due_summary(self, at: datetime) -> dict[str, int]:
        return {"active": len(self.book.due)}

    @activity.defn(name="plan_batches")
    async def plan_batches(self, req: PlanRequest) -> list[Batch]:
        # Keyset pagination over what is still due, after the cursor.
        after = req.after.subscription_id if req.after else ""
        rest = sorted(s for s in self.book.ids if s > after)[: req.batch_size * req.batches]
        batches: list[Batch] = []
        prev = req.after
        for i in range(0, len(rest), req.batch_size):
            chunk = rest[i:i + req.batch_size]
            batches.append(Batch(batch_no=req.next_batch_no + len(batches), after=prev,
                                 last=self.book.key(chunk[-1]), tenants=[TENANT], n=len(chunk)))
            prev = batches[-1].last
        return batches

    @activity.defn(name="invoice_batch")
    async def invoice_batch(self, req: InvoiceBatchRequest) -> InvoiceBatchResult:
        book, no = self.book, req.batch.batch_no
        book.invoice_calls[no] += 1
        book.order.append(f"invoice:{no}")
        if no not in book.results:  # one transaction: the renewals and what the batch did
            after = req.batch.after.subscription_id if req.batch.after else ""
            mine = [s for s in book.ids if after < s <= req.batch.last.subscription_id]
            fresh = [s for s in mine if s in book.due]
            for s in fresh:  # the renewal moves the due instant in the invoice's transaction
                book.invoiced[s] += 1
                book.due.discard(s)
            book.by_batch[no] = mine
            book.results[no] = InvoiceBatchResult(batch_no=no, tenants=[TENANT], due=len(fresh),
                                                  invoiced=len(fresh), to_charge=len(fresh), renewed=len(fresh))
        if no in book.fail_invoice_first and book.invoice_calls[no] == 1:
            raise ApplicationError("connection reset after commit")
        return book.results[no]

    @activity.defn(name="charge_batch")
    async def charge_batch(self, req: ChargeBatchRequest) -> ChargeBatchResult:
        book, no = self.book, req.batch_no
        book.charge_calls[no] += 1
        book.order.append(f"charge:{no}")
        if book.charge_delay:
            await asyncio.sleep(book.charge_delay)
        for s in book.by_batch[no]:
            if book.charged[s]:
                continue  # charges are found by their state: a retried batch sends only what is left
            book.charged[s] += 1
            if no in book.fail_charge_first and book.charge_calls[no] == 1:
                raise ApplicationError("worker lost mid-batch")
        # The outcome is the batch's tally in the database, whichever attempt made the charges.
        declined = sum(1 for s in book.by_batch[no] if book.declined_every and int(s[4:]) % book.declined_every == 0)
        mine = len(book.by_batch[no])
        return ChargeBatchResult(batch_no=no, charged=mine, succeeded=mine - declined, failed=declined,
                                 handed_to_dunning=declined)

    def all(self) -> list[object]:
        return [self.sweep, self.due_summary, self.plan_batches, self.invoice_batch, self.charge_batch]


async def run(env: WorkflowEnvironment, book: Book, inp: RenewalRunInput, *, case: str | None = None,
              query_midway: bool = False) -> tuple[RenewalProgress, list[RenewalProgress]]:
    queue = f"renewals-{uuid.uuid4().hex[:8]}"
    seen: list[RenewalProgress] = []
    async with Worker(env.client, task_queue=queue, workflows=[RenewalRunWorkflow],
                      activities=FakeRenewals(book).all()):
        handle: WorkflowHandle[RenewalRunWorkflow, RenewalProgress] = await env.client.start_workflow(
            RENEWAL_RUN_WORKFLOW, inp, id=f"renewals-{uuid.uuid4().hex[:8]}", task_queue=queue,
            result_type=RenewalProgress)
        if query_midway:
            while len(book.order) < 3:
                await asyncio.sleep(0.01)
            seen.append(await handle.query(PROGRESS_QUERY, result_type=RenewalProgress))
        result = await handle.result()
        if case:
            await record_history(handle, case, kind="renewal_run")
    return result, seen


def assert_each_once(book: Book, progress: RenewalProgress) -> None:
    assert set(book.invoiced) == set(book.ids) and set(book.invoiced.values()) == {1}
    assert set(book.charged) == set(book.ids) and set(book.charged.values()) == {1}
    assert progress.done and progress.due == progress.invoiced == progress.charged == book.n
    assert progress.succeeded + progress.failed == book.n


async def test_every_due_subscription_is_invoiced_and_charged_once_across_continue_as_new(
        env: WorkflowEnvironment) -> None:
    book = Book(n=230, declined_every=10, fail_invoice_first={1, 4}, fail_charge_first={2})
    progress, _ = await run(env, book, RenewalRunInput(at=AT, batch_size=20, batches_per_run=4, invoice_window=2,
                                                       charge_window=2), case="continue_as_new")
    assert_each_once(book, progress)
    assert progress.batches == 12 and progress.runs >= 3
    assert progress.failed == progress.handed_to_dunning == 23
    assert progress.rate_per_second >= 0 and progress.finished_at is not None
    # Retried batches were called again, and did nothing twice.
    assert book.invoice_calls[1] == 2 and book.invoice_calls[4] == 2 and book.charge_calls[2] == 2


async def test_invoicing_never_waits_for_a_paced_collection(env: WorkflowEnvironment) -> None:
    book = Book(n=100, charge_delay=0.2)
    progress, seen = await run(env, book, RenewalRunInput(at=AT, batch_size=10, batches_per_run=100,
                                                          invoice_window=2, charge_window=1), query_midway=True)
    assert_each_once(book, progress)
    # Every batch was invoiced before the third charge started: the charging window did not hold invoicing back.
    third_charge = [i for i, op in enumerate(book.order) if op.startswith("charge:")][2]
    assert all(i < third_charge for i, op in enumerate(book.order) if op.startswith("invoice:"))
    assert seen and not seen[0].done and seen[0].run_id


async def test_a_dry_run_counts_and_changes_nothing(env: WorkflowEnvironment) -> None:
    book = Book(n=42)
    progress, _ = await run(env, book, RenewalRunInput(at=AT, dry_run=True), case="dry_run")
    assert progress.dry_run and progress.done and progress.due == 42
    assert not book.invoiced and not book.charged and not book.invoice_calls


async def test_nothing_due_finishes_at_once(env: WorkflowEnvironment) -> None:
    book = Book(n=0)
    progress, _ = await run(env, book, RenewalRunInput(at=AT))
    assert progress.done and progress.due == 0 and progress.batches == 0 and progress.runs == 1
