"""PaymentWorkflow: one durable saga per payment.

record (created) → risk check → create + confirm the PaymentIntent (processing) → [3-D Secure: pending, wait for
the customer] → wait for the provider's webhook, polling if none arrives → completed | failed | canceled.

Deterministic: no I/O, time from workflow.now(), every side effect in an activity. Compensation (cancel the
intent) is registered before the step that creates the intent, so any failure after it leaves no live intent.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.payments import PaymentActivities
    from domain.payment import PaymentStatus
    from domain.reconciliation import decide
    from workflows import search_attributes as sa
    from workflows.contracts import (
        RECONCILIATION_EVENT,
        CancelRequest,
        DeadLetter,
        FraudResult,
        IntentOutcome,
        IntentRequest,
        PaymentInput,
        PaymentView,
        ProviderEvent,
        ReplayRequest,
        ReplayResult,
        RiskRequest,
        RiskResult,
        TransitionRequest,
    )
    from workflows.policies import DB_RETRY, NON_RETRYABLE, PROVIDER_RETRY, PROVIDER_SCHEDULE_TO_CLOSE


# Which saga transition a provider intent status implies, given where the payment stands.
ON_INTENT: dict[tuple[PaymentStatus, str], str] = {
    (PaymentStatus.PROCESSING, "succeeded"): "mark_completed",
    (PaymentStatus.PROCESSING, "declined"): "mark_failed",
    (PaymentStatus.PROCESSING, "requires_action"): "settle_from_processing",
    (PaymentStatus.PENDING, "succeeded"): "confirm_from_pending",
    (PaymentStatus.PENDING, "declined"): "reject_from_pending",
    (PaymentStatus.PENDING, "processing"): "mark_processing",
    (PaymentStatus.PENDING, "canceled"): "mark_canceled",
    (PaymentStatus.PROCESSING, "canceled"): "mark_failed",
}


def signal_status(event: ProviderEvent) -> str:
    """The intent status a webhook reports, in the vocabulary of ON_INTENT."""
    return "declined" if event.type == "payment_intent.payment_failed" else (event.intent_status or "")


def acts_on(status: PaymentStatus, event: ProviderEvent) -> bool:
    """Whether this news would move a payment in `status` (the API skips signals that would not)."""
    return (status, signal_status(event)) in ON_INTENT


def start_search_attributes(inp: PaymentInput) -> TypedSearchAttributes:
    """Known at start, so set with the start request instead of an upsert (one visibility write fewer)."""
    return TypedSearchAttributes([
        SearchAttributePair(sa.TENANT_ID, inp.tenant_id),
        SearchAttributePair(sa.CUSTOMER_ID, inp.customer_id),
        SearchAttributePair(sa.PAYMENT_ID, inp.payment_id),
        SearchAttributePair(sa.CURRENCY, inp.currency),
        SearchAttributePair(sa.PAYMENT_STATUS, PaymentStatus.CREATED.value),
    ])


@workflow.defn
class PaymentWorkflow:
    def __init__(self) -> None:
        self._inp: PaymentInput | None = None
        self._view: PaymentView | None = None
        self._intent: IntentOutcome | None = None
        self._submitted = False  # the provider has the intent: POST /v1/payments may answer
        self._in_provider_call = False
        self._events: list[ProviderEvent] = []
        self._seen_events: set[str] = set()
        self._cancel: CancelRequest | None = None
        self._dead_letters = 0
        self._open_dead_letter: str | None = None
        self._replay_of: str | None = None

    # --- messages -------------------------------------------------------------------------------------------
    @workflow.update
    async def submitted(self) -> PaymentView:
        """Answers once the PaymentIntent exists (or the payment ended before that: risk decline, cancel)."""
        await workflow.wait_condition(lambda: self._submitted or self._terminal)
        assert self._view is not None
        return self._view

    @workflow.signal
    def provider_event(self, event: ProviderEvent) -> None:
        if event.event_id in self._seen_events:  # webhooks arrive more than once; act on each id once
            return
        self._seen_events.add(event.event_id)
        self._events.append(event)

    @workflow.update
    async def cancel(self, req: CancelRequest) -> PaymentView:
        if self._cancel is None:
            self._cancel = req
        await workflow.wait_condition(lambda: self._terminal)
        assert self._view is not None
        if self._view.status != PaymentStatus.CANCELED:  # it reached the provider before the cancel could act
            raise ApplicationError(f"the payment is {self._view.status.value}", type="NotCancelable")
        return self._view

    @cancel.validator
    def _validate_cancel(self, req: CancelRequest) -> None:
        status = self._view.status if self._view else PaymentStatus.CREATED
        if status not in (PaymentStatus.CREATED, PaymentStatus.PENDING) or self._in_provider_call:
            raise ApplicationError(f"a {status.value} payment cannot be canceled", type="NotCancelable")

    @workflow.update
    async def replay_dead_letter(self, req: ReplayRequest) -> ReplayResult:
        """Retry the dead-lettered step once more. Exactly once: the dead letter's row is claimed with a status
        guard, and Temporal de-duplicates updates by id (`replay-<dlq_id>`)."""
        assert self._inp is not None
        claim = req.model_copy(update={"tenant_id": self._inp.tenant_id})
        replayed: bool = await self._local(PaymentActivities.claim_dead_letter, claim)
        if not replayed:
            raise ApplicationError(f"dead letter {req.dlq_id} is not open", type="NotReplayable")
        self._replay_of = req.dlq_id
        return ReplayResult(dlq_id=req.dlq_id, status="replayed")

    @replay_dead_letter.validator
    def _validate_replay(self, req: ReplayRequest) -> None:
        if req.dlq_id != self._open_dead_letter:
            raise ApplicationError(f"dead letter {req.dlq_id} is not awaiting a replay", type="NotReplayable")

    @workflow.query
    def status(self) -> PaymentView | None:
        return self._view

    # --- the saga -------------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: PaymentInput) -> PaymentView:
        self._inp = inp
        self._view = await self._local(PaymentActivities.record_payment, inp)
        if self._terminal:  # a re-run after the payment was already settled (e.g. a reset)
            return self._view
        risk: RiskResult = await self._local(PaymentActivities.assess_risk, RiskRequest(
            tenant_id=inp.tenant_id, payment_id=inp.payment_id, customer_id=inp.customer_id,
            amount_micros=inp.amount_micros, currency=inp.currency,
        ))
        if not risk.allowed:
            await self._transition("mark_failed", failure_code=risk.decline_code,
                                   failure_message=f"declined by risk rule {risk.decline_code}")
            return self._view
        fraud = await self._score_fraud(inp) if workflow.patched("fraud-score-v1") else None
        if self._cancel is not None:
            await self._transition("mark_canceled", reason=self._cancel.reason)
            return self._view

        intent_req = IntentRequest(
            tenant_id=inp.tenant_id, payment_id=inp.payment_id, attempt=self._view.attempt,
            payment_method_id=inp.payment_method_id, amount_micros=inp.amount_micros, currency=inp.currency,
            description=inp.description, request_three_d_secure=bool(fraud and fraud.requires_3ds),
        )
        compensations = [(PaymentActivities.cancel_intent, intent_req)]  # registered before the step it undoes
        try:
            await self._submit(intent_req)
            await self._await_outcome(intent_req)
        except (ActivityError, ApplicationError) as err:
            workflow.logger.error("payment saga failed; compensating", extra={"error": str(err.cause or err)})
            for fn, arg in reversed(compensations):
                undone: IntentOutcome | None = await self._provider_call(fn, arg)
                if undone is not None and undone.status in ("succeeded", "declined") and not self._terminal:
                    # Too late to undo (it succeeded, or failed, meanwhile): record what really happened.
                    await self._apply_intent_status(undone.status, undone, source="compensation")
            if not self._terminal:
                await self._fail_after_error(str(err.cause or err))
        return self._view

    async def _score_fraud(self, inp: PaymentInput) -> FraudResult | None:
        """Advisory scoring: a failure or an unavailable model never stops the payment."""
        try:
            fraud: FraudResult | None = await self._local(PaymentActivities.score_fraud, RiskRequest(
                tenant_id=inp.tenant_id, payment_id=inp.payment_id, customer_id=inp.customer_id,
                amount_micros=inp.amount_micros, currency=inp.currency,
            ))
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
            outcome: IntentOutcome = await self._provider_call(PaymentActivities.create_intent, req)
        finally:
            self._in_provider_call = False
        self._intent = outcome
        if outcome.status == "declined" and outcome.intent_id is None:
            await self._transition("mark_failed", failure_code=outcome.decline_code,
                                   failure_message=outcome.failure_message)
        else:
            await self._transition("mark_processing", provider_intent_id=outcome.intent_id)
            await self._apply_intent_status(outcome.status, outcome, source="confirm")
        self._submitted = True

    async def _await_outcome(self, req: IntentRequest) -> None:
        assert self._inp is not None
        inp = self._inp
        started = workflow.now()
        while not self._terminal:
            assert self._view is not None
            pending = self._view.status == PaymentStatus.PENDING
            if pending:  # the customer has a 3-D Secure challenge in front of them
                limit = timedelta(seconds=inp.three_ds_timeout_seconds) - (workflow.now() - started)
                wait = min(timedelta(seconds=inp.webhook_wait_seconds), max(limit, timedelta(0)))
            else:
                wait = timedelta(seconds=inp.webhook_wait_seconds)
            try:
                # A cancel only wakes the loop while it can act on it (pending): admitted earlier, when the payment
                # was still `created`, it must not spin the loop once the payment went on to `processing`.
                await workflow.wait_condition(lambda: bool(self._events) or self._cancel_actionable, timeout=wait)
            except TimeoutError:
                if pending and workflow.now() - started >= timedelta(seconds=inp.three_ds_timeout_seconds):
                    await self._abandon(req, "authentication_abandoned")
                    return
                if workflow.now() - started >= timedelta(seconds=inp.settlement_timeout_seconds):
                    raise ApplicationError("no settlement in time", type="SettlementTimeout") from None
                await self._poll()  # no webhook in time: ask the provider
                continue
            if self._cancel_actionable:
                await self._abandon(req, self._cancel.reason)
                return
            while self._events and not self._terminal:
                event = self._events.pop(0)
                await self._on_event(event)

    async def _on_event(self, event: ProviderEvent) -> None:
        if self._intent and event.intent_id and event.intent_id != self._intent.intent_id:
            return  # an event about another attempt's intent
        status = signal_status(event)
        if event.type == RECONCILIATION_EVENT:  # the reconciler's news drives the seed's named transitions
            assert self._view is not None
            decision = decide(self._view.status, status)
            if decision is not None:
                await self._transition(decision.transition, outcome=decision.outcome, actor="reconciler",
                                       failure_code=event.decline_code, failure_message=event.failure_message,
                                       clear_next_action=True)
            return
        outcome = IntentOutcome(intent_id=event.intent_id, status=status, decline_code=event.decline_code,
                                failure_message=event.failure_message)
        await self._apply_intent_status(status, outcome, source=f"webhook:{event.event_id}")

    async def _poll(self) -> None:
        if not self._intent or not self._intent.intent_id:
            return
        assert self._inp is not None
        try:  # a poll is a fallback: if the provider cannot answer now, the loop simply polls again later
            outcome: IntentOutcome = await workflow.execute_activity(
                PaymentActivities.get_intent, self._intent.intent_id,
                start_to_close_timeout=timedelta(seconds=self._inp.provider_call_timeout_seconds),
                retry_policy=PROVIDER_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning("poll failed; will poll again", extra={"error": str(err.cause or err)})
            return
        await self._apply_intent_status(outcome.status, outcome, source="poll")

    async def _apply_intent_status(self, status: str, outcome: IntentOutcome, *, source: str) -> None:
        assert self._view is not None
        transition = ON_INTENT.get((self._view.status, status))
        if transition is None:
            return  # stale or out-of-order news (e.g. `processing` after `succeeded`): nothing to do
        await self._transition(
            transition,
            failure_code=outcome.decline_code or ("canceled_by_provider" if status == "canceled" else None),
            failure_message=outcome.failure_message,
            reason="canceled_by_provider" if status == "canceled" else None,
            next_action={"type": "redirect_to_url", "redirect_to_url": {"url": outcome.next_action_url}}
            if outcome.next_action_url else None,
            clear_next_action=transition in ("mark_processing", "confirm_from_pending"),
            actor=source,
        )

    async def _abandon(self, req: IntentRequest, reason: str) -> None:
        outcome: IntentOutcome | None = await self._provider_call(PaymentActivities.cancel_intent, req)
        if outcome is not None and outcome.status in ("succeeded", "declined", "processing"):
            # Too late to cancel: the customer finished 3-D Secure just before. Record what really happened.
            await self._apply_intent_status(outcome.status, outcome, source="cancel_intent")
            return  # settled now, or processing: then the loop waits for the outcome as usual
        await self._transition("mark_canceled", reason=reason, clear_next_action=True)

    async def _fail_after_error(self, message: str) -> None:
        assert self._view is not None
        if self._view.status == PaymentStatus.PENDING:
            await self._transition("reject_from_pending", failure_code="internal_error", failure_message=message)
        elif self._view.status in (PaymentStatus.CREATED, PaymentStatus.PROCESSING):
            await self._transition("mark_failed", failure_code="internal_error", failure_message=message)

    # --- helpers --------------------------------------------------------------------------------------------
    @property
    def _cancel_actionable(self) -> bool:
        return self._cancel is not None and self._view is not None and self._view.status == PaymentStatus.PENDING

    @property
    def _terminal(self) -> bool:
        return self._view is not None and self._view.status.is_terminal

    async def _transition(self, transition: str, *, actor: str = "workflow", **fields: Any) -> None:
        assert self._inp is not None and self._view is not None
        before = self._view.status
        self._view = await self._local(PaymentActivities.transition, TransitionRequest(
            tenant_id=self._inp.tenant_id, payment_id=self._inp.payment_id, transition=transition,  # type: ignore[arg-type]
            actor=actor, correlation_id=workflow.info().workflow_id, expected_seq=self._view.event_seq,
            **{k: v for k, v in fields.items() if v is not None},
        ))
        if self._view.status != before:
            workflow.upsert_search_attributes([sa.PAYMENT_STATUS.value_set(self._view.status.value)])

    async def _local(self, fn: Any, arg: Any) -> Any:
        return await workflow.execute_local_activity(
            fn, arg, start_to_close_timeout=timedelta(seconds=10), retry_policy=DB_RETRY
        )

    async def _provider_call(self, fn: Any, arg: Any) -> Any:
        """A provider step with bounded retries; when they run out, a dead letter an operator can replay."""
        assert self._inp is not None
        retry = RetryPolicy(  # the rail's policy, from settings through the input (see PaymentInput)
            initial_interval=timedelta(seconds=self._inp.provider_retry_initial_seconds),
            backoff_coefficient=PROVIDER_RETRY.backoff_coefficient,
            maximum_interval=timedelta(seconds=self._inp.provider_retry_max_interval_seconds),
            maximum_attempts=self._inp.provider_max_attempts, non_retryable_error_types=NON_RETRYABLE,
        )
        while True:
            try:
                return await workflow.execute_activity(
                    fn, arg, start_to_close_timeout=timedelta(seconds=self._inp.provider_call_timeout_seconds),
                    schedule_to_close_timeout=PROVIDER_SCHEDULE_TO_CLOSE, retry_policy=retry,
                )
            except ActivityError as err:
                business = isinstance(err.cause, ApplicationError) and err.cause.non_retryable
                if business or not workflow.patched("dead-letter-v1") or not await self._dead_letter(fn, arg, err):
                    raise

    async def _dead_letter(self, fn: Any, arg: Any, err: ActivityError) -> bool:
        """Park the failed step; True when an operator replayed it within the hold period."""
        assert self._inp is not None
        self._dead_letters += 1
        dlq_id = f"dlq_{self._inp.payment_id}_{self._dead_letters}"
        await self._local(PaymentActivities.record_dead_letter, DeadLetter(
            tenant_id=self._inp.tenant_id, dlq_id=dlq_id, workflow_id=workflow.info().workflow_id,
            payment_id=self._inp.payment_id, step=fn.__name__, reason=str(err.cause or err),
            input=arg.model_dump(mode="json") if hasattr(arg, "model_dump") else {"value": arg},
        ))
        self._open_dead_letter = dlq_id
        try:
            await workflow.wait_condition(lambda: self._replay_of == dlq_id,
                                          timeout=timedelta(seconds=self._inp.dead_letter_hold_seconds))
            return True
        except TimeoutError:
            await self._local(PaymentActivities.expire_dead_letter,
                              ReplayRequest(dlq_id=dlq_id, actor="workflow", tenant_id=self._inp.tenant_id))
            return False
        finally:
            self._open_dead_letter = None
