"""PaymentWorkflow: one durable saga per payment.

admit (record, hard rules, fraud score: one step) → create + confirm the PaymentIntent (processing) →
[3-D Secure: pending, wait for the customer] → wait for the provider's webhook, polling with backoff if none
arrives → completed | failed | canceled.

Deterministic: no I/O, time from workflow.now(), every side effect in an activity. Compensation (cancel the
intent) is registered before the step that creates the intent, so any failure after it leaves no live intent.

What a payment costs the Temporal server is kept small: the whole submission (admission, the provider call, the
resulting transitions) runs as local activities in the first workflow task, the search attributes change at
most once per workflow task, and a payment waiting for its customer holds one timer instead of polling. Runs
started before that shape (no `lean-payment-v1` marker) keep the step-by-step shape they were recorded with.
"""

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.payments import PaymentActivities
    from contracts import payments as c
    from contracts import search_attributes as sa
    from contracts.dead_letters import ReplayRequest, ReplayResult
    from contracts.errors import NOT_CANCELABLE, NOT_REPLAYABLE, SETTLEMENT_TIMEOUT
    from contracts.payments import (
        Admission,
        CancelRequest,
        FraudResult,
        IntentOutcome,
        IntentRequest,
        PaymentInput,
        PaymentView,
        ProviderEvent,
        RiskRequest,
        RiskResult,
        Submission,
        SubmitRequest,
        TransitionRequest,
    )
    from domain.intents import CLEARS_NEXT_ACTION, command_for, news_of
    from domain.payment import PaymentStatus, Transition, TransitionCommand
    from domain.reconciliation import decide
    from workflows.policies import PROVIDER_RETRY
    from workflows.steps import DeadLetters, Inbox, ProviderPolicy, finish, local_step, provider_call

LEAN = "lean-payment-v1"
# The provider call and the transitions its answer drives are one local activity (one marker, one round trip);
# such runs are lean too, and never ask for LEAN (one patch marker per run, not two).
ONE_STEP_SUBMIT = "one-step-submit-v1"
A = PaymentActivities
# Charges the merchant makes with the customer absent (off-session): a 3-D Secure challenge the fraud score asks
# for could never be answered and would only expire into a failed retry, so the score is recorded, not acted on.
MERCHANT_INITIATED = frozenset({"dunning"})


@workflow.defn(name=c.PAYMENT_WORKFLOW)
class PaymentWorkflow:
    def __init__(self) -> None:
        self._inp: PaymentInput | None = None
        self._view: PaymentView | None = None
        self._intent: IntentOutcome | None = None
        self._lean = False
        self._one_step = False
        self._submitted = False  # the provider has the intent: POST /v1/payments may answer
        self._in_provider_call = False
        self._events: Inbox[ProviderEvent] = Inbox(lambda e: e.event_id)
        self._cancel: CancelRequest | None = None
        self._dead_letters: DeadLetters | None = None
        self._published: dict[str, Any] = {}  # search attributes as last set
        self._token: str | None = None  # the payment method's provider token, from the admission step
        self._settlement_currency: str | None = None  # the tenant's, from the admission step

    # --- messages -------------------------------------------------------------------------------------------
    @workflow.update(name=c.SUBMITTED_UPDATE)
    async def submitted(self) -> PaymentView:
        """Answers once the PaymentIntent exists (or the payment ended before that: risk decline, cancel)."""
        await workflow.wait_condition(lambda: self._submitted or self._terminal)
        assert self._view is not None
        return self._view

    @workflow.signal(name=c.PROVIDER_EVENT_SIGNAL)
    def provider_event(self, event: ProviderEvent) -> None:
        self._events.offer(event)  # webhooks arrive more than once; each id is acted on once

    @workflow.update(name=c.CANCEL_UPDATE)
    async def cancel(self, req: CancelRequest) -> PaymentView:
        if self._cancel is None:
            self._cancel = req
        await workflow.wait_condition(lambda: self._terminal)
        assert self._view is not None
        if self._view.status != PaymentStatus.CANCELED:  # it reached the provider before the cancel could act
            raise ApplicationError(f"the payment is {self._view.status.value}", type=NOT_CANCELABLE)
        return self._view

    @cancel.validator
    def _validate_cancel(self, req: CancelRequest) -> None:
        status = self._view.status if self._view else PaymentStatus.CREATED
        if status not in (PaymentStatus.CREATED, PaymentStatus.PENDING) or self._in_provider_call:
            raise ApplicationError(f"a {status.value} payment cannot be canceled", type=NOT_CANCELABLE)

    @workflow.update(name=c.REPLAY_DEAD_LETTER_UPDATE)
    async def replay_dead_letter(self, req: ReplayRequest) -> ReplayResult:
        """Retry the dead-lettered step once more. Exactly once: the dead letter's row is claimed with a status
        guard, and Temporal de-duplicates updates by id (`replay-<dlq_id>`)."""
        assert self._inp is not None and self._dead_letters is not None
        claim = req.model_copy(update={"tenant_id": self._inp.tenant_id})
        if not await local_step(A.claim_dead_letter, claim):
            raise ApplicationError(f"dead letter {req.dlq_id} is not open", type=NOT_REPLAYABLE)
        self._dead_letters.replayed(req.dlq_id)
        return ReplayResult(dlq_id=req.dlq_id, status="replayed")

    @replay_dead_letter.validator
    def _validate_replay(self, req: ReplayRequest) -> None:
        if self._dead_letters is None or req.dlq_id != self._dead_letters.open_letter:
            raise ApplicationError(f"dead letter {req.dlq_id} is not awaiting a replay", type=NOT_REPLAYABLE)

    @workflow.query(name=c.STATUS_QUERY)
    def status(self) -> PaymentView | None:
        return self._view

    # --- the saga -------------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: PaymentInput) -> PaymentView:
        self._inp = inp
        self._one_step = workflow.patched(ONE_STEP_SUBMIT)
        self._lean = self._one_step or workflow.patched(LEAN)
        self._published = {sa.PAYMENT_STATUS.name: PaymentStatus.CREATED.value}  # set with the start request
        self._dead_letters = DeadLetters(tenant_id=inp.tenant_id, owner_id=inp.payment_id,
                                         hold_seconds=inp.dead_letter_hold_seconds, record=A.record_dead_letter,
                                         expire=A.expire_dead_letter)
        fraud = await (self._admit(inp) if self._lean else self._admit_step_by_step(inp))
        if not self._terminal and self._cancel is not None:
            await self._transition(TransitionCommand(Transition.MARK_CANCELED, reason=self._cancel.reason))
        if self._terminal:
            self._publish(fraud)
            return await finish(self._view)

        assert self._view is not None
        intent_req = IntentRequest(
            tenant_id=inp.tenant_id, payment_id=inp.payment_id, attempt=self._view.attempt,
            payment_method_id=inp.payment_method_id, amount_micros=inp.amount_micros, currency=inp.currency,
            description=inp.description,
            request_three_d_secure=bool(fraud and fraud.requires_3ds) and inp.actor not in MERCHANT_INITIATED,
            payment_method_token=self._token, destination_account_id=inp.destination_account_id,
            application_fee_micros=inp.application_fee_micros, settlement_currency=self._settlement_currency,
        )
        compensations = [(A.cancel_intent, intent_req)]  # registered before the step it undoes
        try:
            await self._submit(intent_req)
            self._publish(fraud)
            await self._await_outcome(intent_req)
        except (ActivityError, ApplicationError) as err:
            workflow.logger.error("payment saga failed; compensating", extra={"error": str(err.cause or err)})
            for fn, arg in reversed(compensations):
                undone: IntentOutcome | None = await self._provider(fn, arg)
                if undone is not None and undone.status in ("succeeded", "declined") and not self._terminal:
                    # Too late to undo (it succeeded, or failed, meanwhile): record what really happened.
                    await self._apply_news(undone.status, undone, source="compensation")
            if not self._terminal:
                await self._fail_after_error(str(err.cause or err))
        self._publish()
        return await finish(self._view)

    async def _admit(self, inp: PaymentInput) -> FraudResult | None:
        admission: Admission = await local_step(A.admit_payment, inp)
        self._view = admission.view
        self._token = admission.payment_method_token
        self._settlement_currency = admission.settlement_currency
        return admission.fraud

    async def _admit_step_by_step(self, inp: PaymentInput) -> FraudResult | None:
        """The first steps as runs recorded before `lean-payment-v1` took them."""
        self._view = await local_step(A.record_payment, inp)
        if self._terminal:  # a re-run after the payment was already settled (e.g. a reset)
            return None
        req = RiskRequest(tenant_id=inp.tenant_id, payment_id=inp.payment_id, customer_id=inp.customer_id,
                          amount_micros=inp.amount_micros, currency=inp.currency)
        risk: RiskResult = await local_step(A.assess_risk, req)
        if not risk.allowed:
            await self._transition(TransitionCommand(
                Transition.MARK_FAILED, failure_code=risk.decline_code,
                failure_message=f"declined by risk rule {risk.decline_code}"))
            return None
        if not workflow.patched("fraud-score-v1"):
            return None
        try:
            fraud: FraudResult | None = await local_step(A.score_fraud, req)
        except (ActivityError, ApplicationError) as err:  # a local activity's failure can surface as either
            workflow.logger.warning("fraud scoring unavailable", extra={"error": str(err.cause or err)})
            return None
        if fraud is not None:
            workflow.upsert_search_attributes([sa.FRAUD_SCORE.value_set(fraud.score),
                                               sa.FRAUD_ACTION.value_set(fraud.action)])
        return fraud

    async def _submit(self, req: IntentRequest) -> None:
        self._in_provider_call = True
        try:
            if self._one_step:
                assert self._view is not None
                done: Submission = await self._provider(A.submit_intent, SubmitRequest(
                    intent=req, expected_seq=self._view.event_seq, correlation_id=workflow.info().workflow_id),
                    step="create_intent")
                self._intent, self._view = done.outcome, done.view
                self._submitted = True
                return
            outcome: IntentOutcome = await self._provider(A.create_intent, req)
        finally:
            self._in_provider_call = False
        self._intent = outcome
        if outcome.status == "declined" and outcome.intent_id is None:
            await self._transition(TransitionCommand(Transition.MARK_FAILED, failure_code=outcome.decline_code,
                                                     failure_message=outcome.failure_message))
        else:
            await self._transition(TransitionCommand(Transition.MARK_PROCESSING, provider_intent_id=outcome.intent_id))
            await self._apply_news(outcome.status, outcome, source="confirm")
        self._submitted = True

    async def _await_outcome(self, req: IntentRequest) -> None:
        assert self._inp is not None
        started = workflow.now()
        polls = 0
        while not self._terminal:
            pending = self._status == PaymentStatus.PENDING
            wait = self._next_wait(started, pending, polls)
            try:
                # A cancel only wakes the loop while it can act on it (pending): admitted earlier, when the payment
                # was still `created`, it must not spin the loop once the payment went on to `processing`.
                await workflow.wait_condition(lambda: bool(self._events) or self._cancel_actionable, timeout=wait)
            except TimeoutError:
                if pending and workflow.now() - started >= timedelta(seconds=self._inp.three_ds_timeout_seconds):
                    await self._abandon(req, "authentication_abandoned")
                    return
                if workflow.now() - started >= timedelta(seconds=self._inp.settlement_timeout_seconds):
                    raise ApplicationError("no settlement in time", type=SETTLEMENT_TIMEOUT) from None
                await self._poll()  # no webhook in time: ask the provider
                polls += 1
                continue
            if self._cancel_actionable:
                assert self._cancel is not None
                await self._abandon(req, self._cancel.reason)
                return
            while self._events and not self._terminal:
                await self._on_event(self._events.pop())
            if not self._terminal:
                self._publish()
            if pending and self._status != PaymentStatus.PENDING:
                polls = 0  # the customer is done: the provider works on it now, polls start afresh

    def _next_wait(self, started: Any, pending: bool, polls: int) -> timedelta:
        """How long to wait for news. While the customer authenticates, the lean saga waits out the challenge on
        one timer (the timeout's compensation and the reconciliation schedule catch a lost webhook); otherwise
        it polls, backing off from the webhook wait to the poll cap."""
        assert self._inp is not None
        inp = self._inp
        first = timedelta(seconds=inp.webhook_wait_seconds)
        if pending:
            left = max(timedelta(seconds=inp.three_ds_timeout_seconds) - (workflow.now() - started), timedelta(0))
            return left if self._lean else min(first, left)
        if not self._lean:
            return first
        backoff = min(first * (2 ** min(polls, 16)), max(first, timedelta(seconds=inp.poll_max_interval_seconds)))
        settle_by = timedelta(seconds=inp.settlement_timeout_seconds) - (workflow.now() - started)
        return max(min(backoff, settle_by), timedelta(0))

    async def _on_event(self, event: ProviderEvent) -> None:
        if self._intent and event.intent_id and event.intent_id != self._intent.intent_id:
            return  # an event about another attempt's intent
        news = news_of(event.type, event.intent_status)
        if event.type == c.RECONCILIATION_EVENT:  # the reconciler's news drives the named reconcile transitions
            command = decide(self._status, news, event.decline_code, event.failure_message)
            if command is not None:
                await self._transition(command, actor="reconciler", clear_next_action=True)
            return
        outcome = IntentOutcome(intent_id=event.intent_id, status=news, decline_code=event.decline_code,
                                failure_message=event.failure_message)
        await self._apply_news(news, outcome, source=f"webhook:{event.event_id}")

    async def _poll(self) -> None:
        if not self._intent or not self._intent.intent_id:
            return
        assert self._inp is not None
        try:  # a poll is a fallback: if the provider cannot answer now, the loop simply polls again later
            if self._lean:
                outcome: IntentOutcome = await provider_call(A.get_intent, self._intent.intent_id,
                                                             self._policy(), local=True)
            else:
                outcome = await workflow.execute_activity(
                    A.get_intent, self._intent.intent_id,
                    start_to_close_timeout=timedelta(seconds=self._inp.provider_call_timeout_seconds),
                    retry_policy=PROVIDER_RETRY)
        except (ActivityError, ApplicationError) as err:  # a local activity's failure can surface as either
            workflow.logger.warning("poll failed; will poll again", extra={"error": str(err.cause or err)})
            return
        await self._apply_news(outcome.status, outcome, source="poll")

    async def _apply_news(self, news: str, outcome: IntentOutcome, *, source: str) -> None:
        command = command_for(self._status, news, outcome.decline_code, outcome.failure_message)
        if command is None:
            return  # stale or out-of-order news (e.g. `processing` after `succeeded`): nothing to do
        await self._transition(command, actor=source, next_action=outcome.next_action(),
                               clear_next_action=command.transition in CLEARS_NEXT_ACTION)

    async def _abandon(self, req: IntentRequest, reason: str) -> None:
        outcome: IntentOutcome | None = await self._provider(A.cancel_intent, req)
        if outcome is not None and outcome.status in ("succeeded", "declined", "processing"):
            # Too late to cancel: the customer finished 3-D Secure just before. Record what really happened.
            await self._apply_news(outcome.status, outcome, source="cancel_intent")
            return  # settled now, or processing: then the loop waits for the outcome as usual
        await self._transition(TransitionCommand(Transition.MARK_CANCELED, reason=reason), clear_next_action=True)

    async def _fail_after_error(self, message: str) -> None:
        if self._status == PaymentStatus.PENDING:
            await self._transition(TransitionCommand(Transition.REJECT_FROM_PENDING, failure_code="internal_error",
                                                     failure_message=message))
        elif self._status in (PaymentStatus.CREATED, PaymentStatus.PROCESSING):
            await self._transition(TransitionCommand(Transition.MARK_FAILED, failure_code="internal_error",
                                                     failure_message=message))

    # --- helpers --------------------------------------------------------------------------------------------
    @property
    def _status(self) -> PaymentStatus:
        assert self._view is not None
        return self._view.status

    @property
    def _cancel_actionable(self) -> bool:
        return self._cancel is not None and self._view is not None and self._view.status == PaymentStatus.PENDING

    @property
    def _terminal(self) -> bool:
        return self._view is not None and self._view.status.is_terminal

    async def _transition(self, command: TransitionCommand, *, actor: str = "workflow",
                          next_action: dict[str, Any] | None = None, clear_next_action: bool = False) -> None:
        assert self._inp is not None and self._view is not None
        before = self._view.status
        self._view = await local_step(A.transition, TransitionRequest.of(
            command, tenant_id=self._inp.tenant_id, payment_id=self._inp.payment_id, actor=actor,
            correlation_id=workflow.info().workflow_id, expected_seq=self._view.event_seq, next_action=next_action,
            clear_next_action=clear_next_action))
        if not self._lean and self._view.status != before:  # step-by-step runs announced every change at once
            workflow.upsert_search_attributes([sa.PAYMENT_STATUS.value_set(self._view.status.value)])

    def _publish(self, fraud: FraudResult | None = None) -> None:
        """Lean runs set what changed in one upsert (one visibility write) at a few points of the run."""
        if not self._lean or self._view is None:
            return
        wanted: dict[str, Any] = {sa.PAYMENT_STATUS.name: self._view.status.value}
        if fraud is not None:
            wanted |= {sa.FRAUD_SCORE.name: fraud.score, sa.FRAUD_ACTION.name: fraud.action}
        keys = {sa.PAYMENT_STATUS.name: sa.PAYMENT_STATUS, sa.FRAUD_SCORE.name: sa.FRAUD_SCORE,
                sa.FRAUD_ACTION.name: sa.FRAUD_ACTION}
        changes = [keys[name].value_set(value) for name, value in wanted.items()  # type: ignore[attr-defined]
                   if self._published.get(name) != value]
        if changes:
            workflow.upsert_search_attributes(changes)
            self._published |= wanted

    def _policy(self) -> ProviderPolicy:
        assert self._inp is not None
        inp = self._inp
        return ProviderPolicy.of(inp.provider_call_timeout_seconds, initial_seconds=inp.provider_retry_initial_seconds,
                                 max_interval_seconds=inp.provider_retry_max_interval_seconds,
                                 max_attempts=inp.provider_max_attempts)

    async def _provider(self, fn: Any, arg: Any, step: str | None = None) -> Any:
        """A provider step with the rail's retries; when they run out, a dead letter an operator can replay."""
        assert self._dead_letters is not None
        return await self._dead_letters.call(fn, arg, self._policy(), local=self._lean, step=step)
