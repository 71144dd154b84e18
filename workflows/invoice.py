"""InvoiceWorkflow: one workflow id per invoice, under which it is finalized, delivered, collected and changed.

    finalize (number, tax, ledger, billing.invoice.generated.v1) → commit the tax → render and store the PDF →
    notify the customer → collect:
        charge_automatically: charge the customer's default payment method through a child PaymentWorkflow;
        send_invoice: wait for a payment until the due date.
    A collection that fails, or a due date that passes, leaves the invoice open and hands it over (an event and
    an outbox message for dunning or finance); the run then ends.

Every later change of the invoice comes in through this workflow id (update-with-start: a new run when none is
running): `pay` (a new collection attempt), `apply` (out-of-band payment, void, uncollectible, a credit note),
so what follows a change — the tax reversal of a void or a credit note, the refund of a credit note — is as
durable as the change. Payments are children that outlive the run (ABANDON): money in flight is never cut off.
"""

import asyncio
from datetime import UTC, datetime, time, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.invoices import InvoiceActivities
    from activities.notifications import NotificationActivities
    from contracts import invoices as c
    from contracts import search_attributes as sa
    from contracts.dunning import (
        DUNNING_WORKFLOW,
        DunningInput,
        InvoiceSettled,
        dunning_workflow_id,
    )
    from contracts.invoices import (
        ActionOutcome,
        CollectionPlan,
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
    )
    from contracts.notifications import Notification
    from contracts.refunds import REFUND_WORKFLOW, RefundInput, refund_workflow_id
    from domain.invoice import COLLECTABLE
    from domain.money import Money
    from workflows.collection import Outcome, outcome_of, start_collection
    from workflows.policies import NOTIFY_RETRY, NOTIFY_SCHEDULE_TO_CLOSE, NOTIFY_TIMEOUT
    from workflows.steps import ProviderPolicy, local_step, provider_call

A = InvoiceActivities


@workflow.defn(name=c.INVOICE_WORKFLOW)
class InvoiceWorkflow:
    @workflow.init
    def __init__(self, inp: InvoiceInput) -> None:
        # The input is known before any handler runs: an update sent with the start is handled first.
        self._inp: InvoiceInput | None = inp
        self._state: InvoiceState | None = None
        self._refusal: ApplicationError | None = None
        self._published: str | None = None
        self._changes = asyncio.Lock()  # one change of the invoice at a time, in arrival order
        self._pay_queue: list[PayRequest] = []
        self._pay_answers: dict[str, InvoiceState | ApplicationError] = {}
        self._action_answers: dict[str, ActionOutcome] = {}
        self._followups: list[ActionOutcome] = []
        self._following = False

    # --- messages -------------------------------------------------------------------------------------------
    @workflow.update(name=c.FINALIZE_UPDATE)
    async def finalize(self, req: FinalizeRequest) -> InvoiceState:
        """Answers once the invoice is finalized (its number, tax and total known), or refuses with why not."""
        await workflow.wait_condition(lambda: self._refusal is not None or self._finalized)
        if self._refusal is not None:
            raise self._refusal
        assert self._state is not None
        return self._state

    @workflow.update(name=c.PAY_UPDATE)
    async def pay(self, req: PayRequest) -> InvoiceState:
        """Answers once the attempt's payment has started (its id in `last_payment_id`); a repeated request id
        answers the same attempt."""
        if req.request_id not in self._pay_answers and all(q.request_id != req.request_id for q in self._pay_queue):
            self._pay_queue.append(req)
        await workflow.wait_condition(lambda: req.request_id in self._pay_answers)
        answer = self._pay_answers[req.request_id]
        if isinstance(answer, ApplicationError):
            raise answer
        return answer

    @pay.validator
    def _pay_allowed(self, req: PayRequest) -> None:
        state = self._state
        if state is not None and state.status not in COLLECTABLE and req.request_id not in self._pay_answers:
            raise ApplicationError(f"An invoice that is {state.status} is not collected.",
                                   type="invoice-action-not-allowed")

    @workflow.update(name=c.ACTION_UPDATE)
    async def apply(self, action: InvoiceAction) -> dict:  # type: ignore[type-arg]
        """Apply a change in the invoice's transaction and answer it; what follows the change runs after."""
        assert self._inp is not None
        outcome = self._action_answers.get(action.request_id)
        if outcome is None:
            async with self._changes:
                outcome = await local_step(A.apply_invoice_action, action.model_copy(update={
                    "tenant_id": self._inp.tenant_id, "invoice_id": self._inp.invoice_id}))
            self._action_answers[action.request_id] = outcome
            if outcome.refusal_code is None and not action.preview:
                self._state = outcome.state
                self._publish()
                if outcome.tax_reversal is not None or outcome.refund is not None:
                    self._followups.append(outcome)
                await self._tell_dunning()
        if outcome.refusal_code is not None:
            raise ApplicationError(outcome.refusal_message or outcome.refusal_code, type=outcome.refusal_code)
        return outcome.result

    @workflow.query(name=c.STATUS_QUERY)
    def status(self) -> InvoiceState | None:
        return self._state

    # --- the run --------------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: InvoiceInput) -> InvoiceState | None:
        followups = asyncio.create_task(self._follow_up())
        step = InvoiceStep(tenant_id=inp.tenant_id, invoice_id=inp.invoice_id, actor=inp.actor,
                           correlation_id=workflow.info().workflow_id)
        if inp.start == "finalize":
            outcome: FinalizeOutcome = await local_step(A.finalize_invoice, step)
            if outcome.refusal_code is not None:
                self._refusal = ApplicationError(outcome.refusal_message or outcome.refusal_code,
                                                 type=outcome.refusal_code)
                return await self._finish(followups)
            self._state = outcome.state
            self._publish()
            await self._deliver(step)
            if self._collectable:
                if self._state.collection_method == "charge_automatically":
                    await self._attempt(None, auto=True)
                else:
                    await self._wait_until_due(step)
        else:  # a later run: a collection attempt or a change, after the first run ended
            self._state = await local_step(A.invoice_state, step)
            self._publish()
        return await self._finish(followups)

    @property
    def _finalized(self) -> bool:
        return self._state is not None and self._state.status != "draft"

    @property
    def _collectable(self) -> bool:
        return self._state is not None and self._state.status in COLLECTABLE

    async def _deliver(self, step: InvoiceStep) -> None:
        """The finalized invoice reaches the customer: its tax recorded, its PDF stored, a notification sent."""
        assert self._inp is not None and self._state is not None
        policy = ProviderPolicy.of(self._inp.collection.provider_call_timeout_seconds)
        await provider_call(A.commit_tax, step, policy)
        pdf_key = await workflow.execute_activity(A.store_invoice_pdf, step,
                                                  start_to_close_timeout=timedelta(minutes=2),
                                                  retry_policy=policy.retry)
        state = self._state
        total = Money(state.amount_remaining_micros, state.currency)
        await self._notify("invoice.finalized", f"Invoice {state.number}: {total.to_decimal_string()} "
                                                f"{state.currency} due {state.due_date}", {"pdf_key": pdf_key})

    async def _notify(self, kind: str, subject: str, data: dict, suffix: str = "") -> None:  # type: ignore[type-arg]
        """A notification never stalls the invoice: after its retries it is logged and skipped."""
        assert self._inp is not None and self._state is not None
        state = self._state
        note = Notification(
            notification_id=f"ntf_{state.invoice_id}_{kind.removeprefix('invoice.')}{suffix}",
            tenant_id=self._inp.tenant_id, kind=kind, subject=subject, invoice_id=state.invoice_id,
            payment_id=state.last_payment_id,
            data={"number": state.number, "status": state.status, "customer_id": state.customer_id,
                  "amount_remaining_micros": state.amount_remaining_micros, "currency": state.currency,
                  "due_date": state.due_date.isoformat() if state.due_date else None, **data})
        try:
            await workflow.execute_activity(
                NotificationActivities.send_notification, note, start_to_close_timeout=NOTIFY_TIMEOUT,
                schedule_to_close_timeout=NOTIFY_SCHEDULE_TO_CLOSE, retry_policy=NOTIFY_RETRY)
        except ActivityError as err:
            workflow.logger.error("invoice notification failed", extra={"kind": kind, "error": str(err.cause or err)})

    # --- collection -----------------------------------------------------------------------------------------
    async def _wait_until_due(self, step: InvoiceStep) -> None:
        """send_invoice: a payment may come until the end of the due date (UTC); then the invoice is overdue."""
        assert self._state is not None and self._state.due_date is not None
        due_end = datetime.combine(self._state.due_date, time.max, tzinfo=UTC)
        while self._collectable:
            left = due_end - workflow.now()
            try:
                await workflow.wait_condition(lambda: bool(self._pay_queue) or not self._collectable,
                                              timeout=max(left, timedelta(seconds=1)))
            except TimeoutError:
                self._state = await local_step(A.invoice_state, step)
                if self._collectable:
                    await self._hand_over("overdue", None, None)
                return
            await self._serve_pay_requests()

    async def _serve_pay_requests(self) -> None:
        while self._pay_queue:
            await self._attempt(self._pay_queue.pop(0), auto=False)

    async def _attempt(self, req: PayRequest | None, *, auto: bool) -> None:
        """One collection attempt: a child PaymentWorkflow for what remains. Its answer to a `pay` request is
        given as soon as the payment has started; the attempt's end is awaited here. The automatic charge that
        fails hands the invoice to dunning."""
        assert self._inp is not None and self._state is not None
        inp = self._inp
        async with self._changes:
            plan: CollectionPlan = await local_step(A.plan_collection, PayPlan(
                tenant_id=inp.tenant_id, invoice_id=inp.invoice_id,
                payment_method_id=req.payment_method_id if req else None))
            if plan.refusal_code is not None:
                if req is not None:
                    self._pay_answers[req.request_id] = ApplicationError(plan.refusal_message or "",
                                                                         type=plan.refusal_code)
                elif plan.refusal_code == "no-payment-method":
                    await self._hand_over("no_payment_method", None, None)
                return
            payment_id, handle = await start_collection(
                inp.tenant_id, inp.invoice_id, plan, inp.collection, description=f"Invoice {self._state.number}",
                actor=req.actor if req else "workflow")
            if handle is None:
                if req is not None:
                    self._pay_answers[req.request_id] = ApplicationError(
                        f"Payment {payment_id} is already collecting the invoice.",
                        type="invoice-payment-in-progress")
                return
            self._state = self._state.model_copy(update={"last_payment_id": payment_id,
                                                         "last_payment_status": "created",
                                                         "payment_attempts": plan.attempt})
            if req is not None:
                self._pay_answers[req.request_id] = self._state
        outcome = await outcome_of(payment_id, handle)
        self._state = await local_step(A.invoice_state, InvoiceStep(tenant_id=inp.tenant_id,
                                                                     invoice_id=inp.invoice_id))
        self._state = self._state.model_copy(update={"last_payment_id": payment_id,
                                                     "last_payment_status": outcome.status})
        self._publish()
        if self._collectable:
            await self._hand_over("payment_failed", payment_id, outcome.failure_code)
            await self._notify("invoice.payment_failed", f"Payment of invoice {self._state.number} failed",
                               {"failure_code": outcome.failure_code}, suffix=f"_{plan.attempt}")
            if auto and workflow.patched("dunning-v1"):
                await self._start_dunning(plan, outcome)
        else:
            await self._tell_dunning()

    async def _start_dunning(self, plan: CollectionPlan, outcome: Outcome) -> None:
        """The invoice's automatic charge failed: its dunning (retries, then the policy's final action) runs as a
        workflow of its own that outlives this run."""
        assert self._inp is not None
        inp = self._inp
        dunning = DunningInput(tenant_id=inp.tenant_id, invoice_id=inp.invoice_id, customer_id=plan.customer_id,
                               first_failure_at=workflow.now().replace(microsecond=0),
                               decline_code=outcome.failure_code, failed_payment_id=outcome.payment_id,
                               attempts_before=plan.attempt, collection=inp.collection)
        try:
            await workflow.start_child_workflow(
                DUNNING_WORKFLOW, dunning, id=dunning_workflow_id(inp.tenant_id, inp.invoice_id),
                parent_close_policy=ParentClosePolicy.ABANDON, execution_timeout=timedelta(days=90),
                search_attributes=sa.at_start((sa.TENANT_ID, inp.tenant_id), (sa.CUSTOMER_ID, plan.customer_id),
                                              (sa.INVOICE_ID, inp.invoice_id)))
        except WorkflowAlreadyStartedError:
            pass  # already dunning

    async def _tell_dunning(self) -> None:
        """The invoice is no longer collectable (paid, voided, written off): a dunning of it stops at once."""
        assert self._inp is not None and self._state is not None
        if self._collectable or not workflow.patched("dunning-v1"):
            return
        await local_step(A.tell_dunning, SettledNotice(
            tenant_id=self._inp.tenant_id, invoice_id=self._inp.invoice_id,
            settled=InvoiceSettled(event_id=f"{self._state.status}-{self._state.last_payment_id or 'change'}",
                                   status=self._state.status)))

    async def _hand_over(self, reason: str, payment_id: str | None, failure_code: str | None) -> None:
        assert self._inp is not None and self._state is not None
        state = await local_step(A.hand_over, Handover(
            tenant_id=self._inp.tenant_id, invoice_id=self._inp.invoice_id, reason=reason,  # type: ignore[arg-type]
            payment_id=payment_id, failure_code=failure_code, correlation_id=workflow.info().workflow_id))
        self._state = state.model_copy(update={"handed_over": reason, "last_payment_id": payment_id,
                                               "last_payment_status": self._state.last_payment_status})

    # --- what follows a change ------------------------------------------------------------------------------
    async def _follow_up(self) -> None:
        """Tax reversals and refunds of the changes applied, one after the other, as long as the run lives."""
        assert self._inp is not None
        policy = ProviderPolicy.of(self._inp.collection.provider_call_timeout_seconds)
        while True:
            await workflow.wait_condition(lambda: bool(self._followups))
            self._following = True
            outcome = self._followups.pop(0)
            if outcome.tax_reversal is not None:
                await provider_call(A.reverse_tax, outcome.tax_reversal, policy)
            if outcome.refund is not None:
                await self._start_refund(outcome.refund)
            self._following = False

    async def _start_refund(self, refund: RefundInput) -> None:
        assert self._inp is not None
        timings = self._inp.collection
        refund = refund.model_copy(update={"webhook_wait_seconds": timings.webhook_wait_seconds,
                                           "provider_call_timeout_seconds": timings.provider_call_timeout_seconds})
        try:
            await workflow.start_child_workflow(
                REFUND_WORKFLOW, refund, id=refund_workflow_id(refund.tenant_id, refund.refund_id),
                parent_close_policy=ParentClosePolicy.ABANDON, execution_timeout=timedelta(days=7),
                search_attributes=sa.at_start((sa.TENANT_ID, refund.tenant_id), (sa.PAYMENT_ID, refund.payment_id),
                                              (sa.REFUND_ID, refund.refund_id), (sa.INVOICE_ID, self._inp.invoice_id)))
        except WorkflowAlreadyStartedError:
            pass  # an earlier run started it: the refund is on its way

    def _publish(self) -> None:
        """InvoiceStatus in the UI follows the invoice (one upsert per change)."""
        if self._state is not None and self._state.status != self._published:
            self._published = self._state.status
            workflow.upsert_search_attributes([sa.INVOICE_STATUS.value_set(self._state.status)])

    async def _finish(self, followups: asyncio.Task[None]) -> InvoiceState | None:
        """End once every handler answered and every follow-up ran (a `pay` that comes meanwhile is served):
        nothing is cut off by the run's end."""
        while True:
            await workflow.wait_condition(lambda: bool(self._pay_queue) or (
                workflow.all_handlers_finished() and not self._followups and not self._following))
            if not self._pay_queue:
                break
            await self._serve_pay_requests()
        followups.cancel()
        return self._state
