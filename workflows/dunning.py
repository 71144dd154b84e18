"""DunningWorkflow: one per unpaid invoice whose charge failed, driven by the tenant's policy.

    plan (domain.dunning.plan_next) → retry at the stage's time (advice may move the hour, within the policy) |
    wait for a new payment method after a hard decline | the final action (the invoice written off, the
    subscription unpaid or canceled) → … until the invoice is paid by any means.

A retry is a collection attempt (a child PaymentWorkflow, `workflows.collection`); a new default payment method
(`payment_method_updated`) wakes the workflow for an immediate retry; `invoice_settled` (the invoice paid, voided
or written off by anything else) stops it at once. The status query says where dunning stands and why: every
plan's explanation is kept.
"""

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.dunning import DunningActivities
    from activities.invoices import InvoiceActivities
    from activities.notifications import NotificationActivities
    from contracts import dunning as c
    from contracts import search_attributes as sa
    from contracts.dunning import (
        AdviceRequest,
        DunningInput,
        DunningRecord,
        DunningSetup,
        DunningState,
        FinalDunning,
        PaymentMethodUpdated,
        RetryAdviceModel,
    )
    from contracts.invoices import CollectionPlan, InvoiceSettled, InvoiceState, InvoiceStep, PayPlan
    from domain.dunning import (
        ChargeFailure,
        DunningAction,
        DunningPolicy,
        DunningStep,
        RetryAdvice,
        RetryTrigger,
        plan_next,
    )
    from domain.invoice import COLLECTABLE
    from workflows.collection import outcome_of, start_collection
    from workflows.policies import NOTIFY_RETRY, NOTIFY_SCHEDULE_TO_CLOSE, NOTIFY_TIMEOUT
    from workflows.steps import Inbox, local_step

D = DunningActivities
I = InvoiceActivities  # noqa: E741 - the invoice's activities, as the workflow names them
ADVICE_TIMEOUT = timedelta(seconds=10)
ADVICE_RETRY = RetryPolicy(maximum_attempts=2)  # advisory: one more try, then the policy alone
# The advice and the notification run beside the workflow (local activities): with the database steps of the same
# workflow task they are one marker action, not an activity task each.
LOCAL_STEPS = "dunning-local-steps-v1"


def _second(at: datetime) -> datetime:
    return at.replace(microsecond=0)


@workflow.defn(name=c.DUNNING_WORKFLOW)
class DunningWorkflow:
    @workflow.init
    def __init__(self, inp: DunningInput) -> None:
        self._inp = inp
        self._failures = [inp.first_failure()]
        self._methods: Inbox[PaymentMethodUpdated] = Inbox(lambda m: m.event_id)
        self._method_updated_at: datetime | None = None
        # How many failures a new payment method comes after, by arrival order: the clock (to the second, as the
        # planner takes it) cannot tell a card that came in the failure's own second from one that came before.
        self._method_after: int | None = None
        self._charging: str | None = None  # the payment method of the retry in flight
        self._settled: InvoiceSettled | None = None
        self._notified: set[str] = set()
        self._state = DunningState(invoice_id=inp.invoice_id, attempts=inp.attempts_before,
                                   last_decline_code=inp.decline_code, last_payment_id=inp.failed_payment_id)
        self._local = False

    @workflow.signal(name=c.PAYMENT_METHOD_SIGNAL)
    def payment_method_updated(self, update: PaymentMethodUpdated) -> None:
        if self._methods.offer(update):
            at = _second(update.at)
            self._method_updated_at = max(at, self._method_updated_at or at)
            # A method that comes while a retry charges another one is still new once that retry has failed.
            in_flight = self._charging is not None and self._charging != update.payment_method_id
            self._method_after = len(self._failures) + (1 if in_flight else 0)

    @workflow.signal(name=c.INVOICE_SETTLED_SIGNAL)
    def invoice_settled(self, settled: InvoiceSettled) -> None:
        self._settled = self._settled or settled

    @workflow.query(name=c.STATUS_QUERY)
    def status(self) -> DunningState:
        return self._state

    @workflow.run
    async def run(self, inp: DunningInput) -> DunningState:
        step = InvoiceStep(tenant_id=inp.tenant_id, invoice_id=inp.invoice_id)
        prepared = inp.prepared
        # A prepared input is newer than that change: asking would record a marker (an action) for nothing.
        self._local = prepared is not None or workflow.patched(LOCAL_STEPS)
        if prepared is None:
            setup: DunningSetup = await local_step(D.dunning_setup, step)
            await local_step(D.record_dunning, inp.started_record())
        else:  # its starter did the first task's steps: plan from them, and wait at once
            setup = prepared.setup
            self._notified.update(prepared.notified)
        policy = setup.policy.to_domain()
        while True:
            # The first plan of a prepared run takes the invoice's state and the advice its starter found.
            if self._settled is not None or not (prepared or await self._collectable(step)):
                return await self._stop()
            if prepared is None:
                advice = await self._advice()
            else:
                advice, prepared = prepared.advice.to_domain() if prepared.advice else None, None
            plan = plan_next(policy, self._failures, _second(workflow.now()),
                             payment_method_updated_at=self._updated_at, advice=advice)
            self._explain(plan)
            if plan.action is DunningAction.FINAL_ACTION:
                return await self._final(plan)
            await self._send(plan, setup)
            if plan.action is DunningAction.WAIT_FOR_PAYMENT_METHOD:
                await self._wait(plan.at, "payment_method")
                continue
            if plan.at > workflow.now():
                await self._wait(plan.at, "retry")
                if self._settled is not None or self._new_method:
                    continue  # re-plan: stopped, or a new payment method retries at once
            if await self._retry(plan, policy):
                return self._state

    # --- steps ----------------------------------------------------------------------------------------------
    @property
    def _new_method(self) -> bool:
        return self._method_after is not None and self._method_after >= len(self._failures)

    @property
    def _updated_at(self) -> datetime | None:
        """The new payment method's time as the planner takes it: never before the latest failure it came after
        (the two instants may share a second, or the signal's clock may lag the workflow's)."""
        if not self._new_method or self._method_updated_at is None:
            return None
        return max(self._method_updated_at, self._failures[-1].at)

    async def _collectable(self, step: InvoiceStep) -> bool:
        invoice: InvoiceState = await local_step(I.invoice_state, step)
        return invoice.status in COLLECTABLE

    async def _advice(self) -> RetryAdvice | None:
        inp = self._inp
        req = AdviceRequest(tenant_id=inp.tenant_id, customer_id=inp.customer_id, invoice_id=inp.invoice_id,
                            attempt=len(self._failures) + 1)
        ask = workflow.execute_local_activity if self._local else workflow.execute_activity
        try:
            advice: RetryAdviceModel | None = await ask(
                D.advise_retry, req, start_to_close_timeout=ADVICE_TIMEOUT, retry_policy=ADVICE_RETRY)
        except (ActivityError, ApplicationError):  # a local activity's failure can surface as either
            return None  # advisory: the policy decides alone
        return advice.to_domain() if advice is not None else None

    def _explain(self, plan: DunningStep) -> None:
        self._state.explanations.append(plan.explanation)
        del self._state.explanations[:-20]  # the recent ones: the query stays small
        workflow.logger.info("dunning plan", extra={"invoice_id": self._inp.invoice_id,
                                                    "explanation": plan.explanation})

    async def _wait(self, until: datetime, what: str) -> None:
        self._state.waiting_until, self._state.waiting_for = until, what
        left = until - workflow.now()
        if left > timedelta(0):
            try:
                await workflow.wait_condition(lambda: self._settled is not None or self._new_method, timeout=left)
            except TimeoutError:
                pass
        self._state.waiting_until = self._state.waiting_for = None

    async def _retry(self, plan: DunningStep, policy: DunningPolicy) -> bool:
        """One attempt; True when it paid the invoice (or there was nothing left to collect)."""
        inp = self._inp
        collection: CollectionPlan = await local_step(I.plan_collection, PayPlan(tenant_id=inp.tenant_id,
                                                                                 invoice_id=inp.invoice_id))
        if collection.refusal_code is not None:
            if collection.refusal_code == "invoice-payment-in-progress":  # a customer's own attempt: let it end
                await workflow.sleep(timedelta(minutes=15))
                return False
            if collection.refusal_code == "no-payment-method":
                self._failures.append(ChargeFailure(_second(workflow.now()), "no_payment_method", plan.trigger,
                                                    stage=plan.stage))
                return False
            await self._stop()
            return True
        if plan.stage is not None:
            workflow.upsert_search_attributes([sa.DUNNING_STAGE.value_set(plan.stage)])
        payment_id, handle = await start_collection(
            inp.tenant_id, inp.invoice_id, collection, inp.collection,
            description=f"Retry {plan.attempt} of invoice {inp.invoice_id}", actor="dunning",
            extra=(sa.pair(sa.SUBSCRIPTION_ID, inp.subscription_id),) if inp.subscription_id else ())
        if handle is None:
            return False  # that attempt exists already (a retried run): plan again from the invoice as it is
        self._state.attempts, self._state.last_payment_id = collection.attempt, payment_id
        self._charging = collection.payment_method_id
        try:
            outcome = await outcome_of(payment_id, handle)
        finally:
            self._charging = None
        self._state.stage = plan.stage or self._state.stage
        if outcome.status == "completed":
            self._state.outcome = "recovered"
            await self._record("dunning_recovered", {"stage": plan.stage, "attempt": collection.attempt,
                                                     "payment_id": payment_id, "trigger": plan.trigger,
                                                     "amount_micros": collection.amount_micros, "key": payment_id})
            return True
        self._state.last_decline_code = outcome.failure_code
        self._failures.append(ChargeFailure(_second(workflow.now()), outcome.failure_code, plan.trigger or
                                            RetryTrigger.SCHEDULED, stage=plan.stage))
        await self._record("dunning_retry_failed", {"stage": plan.stage, "attempt": collection.attempt,
                                                    "payment_id": payment_id, "decline_code": outcome.failure_code,
                                                    "key": payment_id})
        return False

    async def _final(self, plan: DunningStep) -> DunningState:
        inp = self._inp
        assert plan.final is not None
        await self._send(plan, None)
        await local_step(D.finish_dunning, FinalDunning(
            tenant_id=inp.tenant_id, invoice_id=inp.invoice_id,
            mark_invoice_uncollectible=plan.final.mark_invoice_uncollectible,
            subscription_end=plan.final.subscription.value, explanation=plan.explanation))
        self._state.outcome = "exhausted"
        return self._state

    async def _stop(self) -> DunningState:
        self._state.outcome = self._state.outcome or "settled_elsewhere"
        await self._record("dunning_stopped", {"reason": self._settled.status if self._settled else "settled",
                                               "key": "stopped"})
        return self._state

    async def _record(self, kind: str, metadata: dict) -> None:  # type: ignore[type-arg]
        await local_step(D.record_dunning, DunningRecord(tenant_id=self._inp.tenant_id,
                                                         invoice_id=self._inp.invoice_id,
                                                         type=kind, metadata=metadata))  # type: ignore[arg-type]

    async def _send(self, plan: DunningStep, setup: DunningSetup | None) -> None:
        """The step's notification, once per stage (or per wait, or for the end); never stalls dunning."""
        if plan.notification is None:
            return
        key = c.notification_key(plan, len(self._failures))
        if key in self._notified:
            return
        self._notified.add(key)
        note = c.dunning_notification(self._inp, plan, key, setup.amount_remaining_micros if setup else None)
        send = workflow.execute_local_activity if self._local else workflow.execute_activity
        try:
            await send(NotificationActivities.send_notification, note, start_to_close_timeout=NOTIFY_TIMEOUT,
                       schedule_to_close_timeout=NOTIFY_SCHEDULE_TO_CLOSE, retry_policy=NOTIFY_RETRY)
        except (ActivityError, ApplicationError) as err:  # a local activity's failure can surface as either
            workflow.logger.error("dunning notification failed", extra={"error": str(err.cause or err)})

