"""InvoiceWorkflow on the time-skipping test server, against in-memory fake activities and stand-in child
workflows (a PaymentWorkflow whose outcome the payment method decides, a RefundWorkflow that records its start).

Days until a send_invoice invoice is due pass in milliseconds.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts import search_attributes as sa
from contracts.invoices import (
    ACTION_UPDATE,
    FINALIZE_UPDATE,
    PAY_UPDATE,
    ActionOutcome,
    CollectionPlan,
    CreditNotePlan,
    FinalizeOutcome,
    FinalizeRequest,
    Handover,
    InvoiceAction,
    InvoiceInput,
    InvoiceState,
    InvoiceStep,
    PayPlan,
    PayRequest,
    SettledNotice,
    invoice_workflow_id,
)
from contracts.notifications import Notification
from contracts.payments import PaymentInput
from contracts.refunds import RefundInput
from contracts.tax import TaxReversalRequest
from tests.recording import record_history
from tests.workflows.standins import StandInDunning, StandInPayment, StandInRefund
from workflows.invoice import InvoiceWorkflow

TENANT = "11111111-1111-1111-1111-111111111111"
TOTAL = 119_000_000


# --- the invoice, in memory -----------------------------------------------------------------------------------
@dataclass
class Book:
    status: str = "draft"
    collection_method: str = "charge_automatically"
    default_pm: str | None = "pm_ok"
    due: date = date(2026, 12, 31)
    refuse_finalize: str | None = None
    payments: list[PaymentInput] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)
    handovers: list[Handover] = field(default_factory=list)
    notes: list[Notification] = field(default_factory=list)
    reversals: list[TaxReversalRequest] = field(default_factory=list)
    actions: list[InvoiceAction] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)

    def state(self) -> InvoiceState:
        return InvoiceState(invoice_id="in_1", status=self.status, number="INV-000001", customer_id="cus_1",  # type: ignore[arg-type]
                            currency="EUR", collection_method=self.collection_method,  # type: ignore[arg-type]
                            amount_remaining_micros=0 if self.status == "paid" else TOTAL, due_date=self.due,
                            default_payment_method_id=self.default_pm, payment_attempts=len(self.planned))


class FakeInvoiceActivities:
    def __init__(self, book: Book) -> None:
        self.book = book

    @activity.defn(name="finalize_invoice")
    async def finalize_invoice(self, step: InvoiceStep) -> FinalizeOutcome:
        self.book.steps.append("finalize")
        if self.book.refuse_finalize:
            return FinalizeOutcome(refusal_code=self.book.refuse_finalize, refusal_message="no")
        self.book.status = "open"
        return FinalizeOutcome(state=self.book.state())

    @activity.defn(name="commit_tax")
    async def commit_tax(self, step: InvoiceStep) -> None:
        self.book.steps.append("commit_tax")

    @activity.defn(name="store_invoice_pdf")
    async def store_invoice_pdf(self, step: InvoiceStep) -> str:
        self.book.steps.append("pdf")
        return f"invoices/{step.tenant_id}/{step.invoice_id}.pdf"

    @activity.defn(name="invoice_state")
    async def invoice_state(self, step: InvoiceStep) -> InvoiceState:
        # A completed payment of the invoice has paid it (the real one does so in the payment's transaction).
        if self.book.planned and self.book.planned[-1] == "pm_ok" and self.book.status == "open":
            self.book.status = "paid"
        return self.book.state()

    @activity.defn(name="plan_collection")
    async def plan_collection(self, plan: PayPlan) -> CollectionPlan:
        if self.book.status not in ("open", "uncollectible"):
            return CollectionPlan(refusal_code="invoice-action-not-allowed", refusal_message=self.book.status)
        method = plan.payment_method_id or self.book.default_pm
        if method is None:
            return CollectionPlan(refusal_code="no-payment-method", refusal_message="none")
        self.book.planned.append(method)
        return CollectionPlan(payment_method_id=method, amount_micros=TOTAL, currency="EUR", customer_id="cus_1",
                              attempt=len(self.book.planned))

    @activity.defn(name="hand_over")
    async def hand_over(self, handover: Handover) -> InvoiceState:
        self.book.handovers.append(handover)
        return self.book.state()

    @activity.defn(name="apply_invoice_action")
    async def apply_invoice_action(self, action: InvoiceAction) -> ActionOutcome:
        self.book.actions.append(action)
        if action.kind == "void":
            if self.book.status not in ("open", "uncollectible"):
                return ActionOutcome(refusal_code="invoice-action-not-allowed", refusal_message="not open")
            self.book.status = "void"
            return ActionOutcome(state=self.book.state(), result={"id": "in_1", "status": "void"},
                                 tax_reversal=TaxReversalRequest(tenant_id=action.tenant_id,
                                                                 original_reference="in_1", reference="in_1_void"))
        assert action.kind == "credit_note" and action.credit_note is not None
        refund = RefundInput(tenant_id=action.tenant_id, refund_id=f"re_{action.credit_note.credit_note_id}",
                             payment_id="pay_in_1_1", amount_micros=10_000_000)
        return ActionOutcome(state=self.book.state(), result={"id": action.credit_note.credit_note_id},
                             tax_reversal=TaxReversalRequest(tenant_id=action.tenant_id, original_reference="in_1",
                                                             reference=action.credit_note.credit_note_id,
                                                             amount_micros=10_000_000),
                             refund=refund)

    @activity.defn(name="reverse_tax")
    async def reverse_tax(self, req: TaxReversalRequest) -> None:
        self.book.reversals.append(req)

    @activity.defn(name="tell_dunning")
    async def tell_dunning(self, notice: SettledNotice) -> None:
        self.book.steps.append(f"tell_dunning:{notice.settled.status}")

    @activity.defn(name="send_notification")
    async def send_notification(self, note: Notification) -> None:
        self.book.notes.append(note)

    def all(self) -> list[Any]:
        return [self.finalize_invoice, self.commit_tax, self.store_invoice_pdf, self.invoice_state,
                self.plan_collection, self.hand_over, self.apply_invoice_action, self.reverse_tax,
                self.tell_dunning, self.send_notification]


class Bench:
    def __init__(self, env: WorkflowEnvironment) -> None:
        self.env = env
        self.client = env.client
        self.book = Book()
        self.task_queue = f"invoices-{uuid.uuid4().hex[:10]}"
        self.invoice_id = "in_1"
        self.wf_id = invoice_workflow_id(TENANT, f"{self.invoice_id}-{uuid.uuid4().hex[:8]}")

    def start_op(self, start: str = "finalize") -> Any:
        from temporalio.client import WithStartWorkflowOperation

        return WithStartWorkflowOperation(
            InvoiceWorkflow.run, InvoiceInput(tenant_id=TENANT, invoice_id=self.invoice_id, start=start),  # type: ignore[arg-type]
            id=self.wf_id, task_queue=self.task_queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=sa.at_start((sa.TENANT_ID, TENANT), (sa.INVOICE_ID, self.invoice_id)))

    async def finalize(self) -> InvoiceState:
        result: InvoiceState = await self.client.execute_update_with_start_workflow(
            FINALIZE_UPDATE, FinalizeRequest(), start_workflow_operation=self.start_op(), result_type=InvoiceState)
        return result

    async def update(self, name: str, arg: Any, result_type: type, start: str = "resume") -> Any:
        return await self.client.execute_update_with_start_workflow(
            name, arg, start_workflow_operation=self.start_op(start), result_type=result_type)

    async def terminate_leftovers(self) -> None:
        """A run left on the shared test server (a child whose worker is gone) stops its clock for every later
        test: end whatever this test started."""
        ids = [self.wf_id, f"refund/{TENANT}/re_cn_1", f"dunning/{TENANT}/in_1"] + [
            f"payment/{TENANT}/pay_in_1_{n}" for n in range(1, 4)]
        for wf_id in ids:
            with suppress(RPCError):
                handle = self.client.get_workflow_handle(wf_id)
                if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                    await handle.terminate("test over")

    def handle(self) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(self.wf_id, result_type=InvoiceState)

    @asynccontextmanager
    async def worker(self, timeout: float = 30) -> AsyncIterator[Worker]:
        acts = FakeInvoiceActivities(self.book)
        async with Worker(self.client, task_queue=self.task_queue,
                          workflows=[InvoiceWorkflow, StandInPayment, StandInRefund, StandInDunning],
                          activities=acts.all()) as worker, asyncio.timeout(timeout):
            yield worker


@pytest.fixture
async def bench(private_env: WorkflowEnvironment) -> AsyncIterator[Bench]:
    # A server per test: children that outlive their parent (payments, dunning) and external signals have left
    # the shared time-skipping server unable to skip time for the tests after them.
    bench = Bench(private_env)
    yield bench
    await bench.terminate_leftovers()


# --- the tests ------------------------------------------------------------------------------------------------
async def test_an_invoice_charged_automatically_is_delivered_then_paid(bench: Bench) -> None:
    async with bench.worker():
        state = await bench.finalize()
        assert state.status == "open" and state.number == "INV-000001"
        final: InvoiceState = await bench.handle().result()
        await record_history(bench.handle(), "charged_automatically", kind="invoice")
    assert final.status == "paid" and final.last_payment_id == "pay_in_1_1"
    assert bench.book.steps == ["finalize", "commit_tax", "pdf", "tell_dunning:paid"]
    assert [n.kind for n in bench.book.notes] == ["invoice.finalized"]
    assert bench.book.notes[0].data["pdf_key"] == f"invoices/{TENANT}/in_1.pdf"
    assert bench.book.handovers == []


async def test_a_failed_charge_leaves_the_invoice_open_and_hands_it_over(bench: Bench) -> None:
    bench.book.default_pm = "pm_declined"
    async with bench.worker():
        await bench.finalize()
        final: InvoiceState = await bench.handle().result()
        await record_history(bench.handle(), "payment_failed", kind="invoice")
    assert final.status == "open" and final.handed_over == "payment_failed"
    assert [(h.reason, h.payment_id, h.failure_code) for h in bench.book.handovers] == [
        ("payment_failed", "pay_in_1_1", "card_declined")]
    assert [n.kind for n in bench.book.notes] == ["invoice.finalized", "invoice.payment_failed"]
    dunning = await bench.client.get_workflow_handle(f"dunning/{TENANT}/in_1").describe()
    assert dunning.status is not None  # the failed automatic charge started the invoice's dunning


async def test_no_payment_method_hands_over_without_a_charge(bench: Bench) -> None:
    bench.book.default_pm = None
    async with bench.worker():
        await bench.finalize()
        final: InvoiceState = await bench.handle().result()
    assert final.handed_over == "no_payment_method" and bench.book.planned == []


async def test_a_refused_finalization_answers_why_and_ends(bench: Bench) -> None:
    bench.book.refuse_finalize = "seller-profile-required"
    async with bench.worker():
        with pytest.raises(WorkflowUpdateFailedError) as failed:
            await bench.finalize()
        assert isinstance(failed.value.cause, ApplicationError)
        assert failed.value.cause.type == "seller-profile-required"
        assert await bench.handle().result() is None
    assert bench.book.steps == ["finalize"]


async def test_send_invoice_waits_until_due_then_is_overdue(private_env: WorkflowEnvironment) -> None:
    # A server of its own: skipping a month moves its clock for every test that shares it.
    bench = Bench(private_env)
    bench.book.collection_method = "send_invoice"
    bench.book.due = (datetime.now(UTC) + timedelta(days=30)).date()
    async with bench.worker():
        await bench.finalize()
        await bench.env.sleep(timedelta(days=31))  # the server skips the month
        final: InvoiceState = await bench.handle().result()
        await record_history(bench.handle(), "overdue", kind="invoice")
    assert final.status == "open" and final.handed_over == "overdue"
    assert [h.reason for h in bench.book.handovers] == ["overdue"]


async def test_pay_now_while_waiting_collects_and_a_repeat_answers_the_same_attempt(bench: Bench) -> None:
    bench.book.collection_method = "send_invoice"
    bench.book.due = (datetime.now(UTC) + timedelta(days=30)).date()
    bench.book.default_pm = None
    async with bench.worker():
        await bench.finalize()
        req = PayRequest(request_id="req_1", payment_method_id="pm_ok")
        first: InvoiceState = await bench.update(PAY_UPDATE, req, InvoiceState)
        again: InvoiceState = await bench.update(PAY_UPDATE, req, InvoiceState)
        final: InvoiceState = await bench.handle().result()
    assert first.last_payment_id == again.last_payment_id == "pay_in_1_1"
    assert final.status == "paid" and bench.book.planned == ["pm_ok"] and bench.book.handovers == []


async def test_pay_after_the_run_ended_starts_a_new_run_for_the_attempt(bench: Bench) -> None:
    bench.book.default_pm = "pm_declined"
    async with bench.worker():
        await bench.finalize()
        await bench.handle().result()
        state: InvoiceState = await bench.update(PAY_UPDATE, PayRequest(request_id="req_2",
                                                                        payment_method_id="pm_ok"), InvoiceState)
        assert state.last_payment_id == "pay_in_1_2"
        final: InvoiceState = await bench.handle().result()
    assert final.status == "paid" and bench.book.planned == ["pm_declined", "pm_ok"]


async def test_a_void_after_the_run_ended_reverses_its_tax_in_a_new_run(bench: Bench) -> None:
    bench.book.default_pm = "pm_declined"
    async with bench.worker():
        await bench.finalize()
        await bench.handle().result()
        result = await bench.update(ACTION_UPDATE, InvoiceAction(request_id="req_v", kind="void", reason="dup"),
                                    dict)
        assert result["status"] == "void"
        final: InvoiceState = await bench.handle().result()
        await record_history(bench.handle(), "void_after_handover", kind="invoice")
        with pytest.raises(WorkflowUpdateFailedError) as refused:  # a second void: the state refuses it
            await bench.update(ACTION_UPDATE, InvoiceAction(request_id="req_w", kind="void", reason="dup"), dict)
        assert refused.value.cause.type == "invoice-action-not-allowed"  # type: ignore[union-attr]
    assert final.status == "void"
    assert [r.reference for r in bench.book.reversals] == ["in_1_void"]
    assert bench.book.actions[0].tenant_id == TENANT and bench.book.actions[0].invoice_id == "in_1"


async def test_a_credit_note_reverses_its_tax_and_starts_its_refund_once(bench: Bench) -> None:
    async with bench.worker():
        await bench.finalize()
        await bench.handle().result()  # paid
        action = InvoiceAction(request_id="cn_1", kind="credit_note", credit_note=CreditNotePlan(
            credit_note_id="cn_1", reason="duplicate", amount_micros=10_000_000, refund_micros=11_900_000))
        first = await bench.update(ACTION_UPDATE, action, dict)
        again = await bench.update(ACTION_UPDATE, action, dict)
        await bench.handle().result()
        await record_history(bench.handle(), "credit_note_refund", kind="invoice")
        refund = bench.client.get_workflow_handle(f"refund/{TENANT}/re_cn_1")
        await refund.result()  # started once, as a child that outlives the invoice's run
    assert first == again == {"id": "cn_1"}
    assert [r.reference for r in bench.book.reversals] == ["cn_1"]
