"""Collecting an invoice: one attempt is a child PaymentWorkflow for what remains, whoever asks (the invoice's
own workflow, a customer's "pay now", a dunning retry). The payment id is the invoice's and the attempt's, so
the same attempt never charges twice, and the payment outlives the workflow that started it (ABANDON): money in
flight is never cut off."""

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ChildWorkflowError, WorkflowAlreadyStartedError
from temporalio.workflow import ChildWorkflowHandle, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from contracts import search_attributes as sa
    from contracts.invoices import CollectionPlan, CollectionTimings, collection_payment_id
    from contracts.payments import PAYMENT_WORKFLOW, PaymentInput, PaymentView, payment_workflow_id


@dataclass(frozen=True)
class Outcome:
    payment_id: str
    status: str  # the payment's final status: completed | failed | canceled
    failure_code: str | None = None


async def start_collection(tenant_id: str, invoice_id: str, plan: CollectionPlan, timings: CollectionTimings, *,
                           description: str, actor: str,
                           extra: tuple[SearchAttributePair[str], ...] = ()
                           ) -> tuple[str, ChildWorkflowHandle[object, PaymentView] | None]:
    """Start the attempt's payment; (its id, its handle) or (its id, None) when that attempt already exists."""
    assert plan.payment_method_id is not None
    payment_id = collection_payment_id(invoice_id, plan.attempt)
    inp = PaymentInput(
        tenant_id=tenant_id, payment_id=payment_id, customer_id=plan.customer_id,
        payment_method_id=plan.payment_method_id, amount_micros=plan.amount_micros, currency=plan.currency,
        description=description, metadata={"invoice_id": invoice_id}, actor=actor, invoice_id=invoice_id,
        **timings.model_dump())
    try:
        handle = await workflow.start_child_workflow(
            PAYMENT_WORKFLOW, inp, id=payment_workflow_id(tenant_id, payment_id), result_type=PaymentView,
            parent_close_policy=ParentClosePolicy.ABANDON, execution_timeout=timedelta(days=7),
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(sa.TENANT_ID, tenant_id), SearchAttributePair(sa.CUSTOMER_ID, plan.customer_id),
                SearchAttributePair(sa.PAYMENT_ID, payment_id), SearchAttributePair(sa.CURRENCY, plan.currency),
                SearchAttributePair(sa.INVOICE_ID, invoice_id), *extra]))
    except WorkflowAlreadyStartedError:
        return payment_id, None
    return payment_id, handle


async def outcome_of(payment_id: str, handle: ChildWorkflowHandle[object, PaymentView]) -> Outcome:
    """How the attempt ended (a payment workflow that failed outright counts as a failed payment)."""
    try:
        view: PaymentView = await handle
    except ChildWorkflowError as err:
        return Outcome(payment_id, "failed", type(err.cause).__name__ if err.cause else "payment_workflow_failed")
    return Outcome(payment_id, view.status.value, view.failure_code)
