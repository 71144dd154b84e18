"""In-memory stand-ins for PaymentActivities: a fake payment row driven by the real domain aggregate, and a
scriptable fake provider. Registered under the real activity names, so PaymentWorkflow runs unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.payments import submit
from contracts.dead_letters import DeadLetter, ReplayRequest
from contracts.errors import INVALID_TRANSITION
from contracts.payments import (
    Admission,
    FraudResult,
    IntentOutcome,
    IntentRequest,
    PaymentInput,
    PaymentView,
    RiskRequest,
    RiskResult,
    Submission,
    SubmitRequest,
    TransitionRequest,
    payment_workflow_id,
)
from domain.money import Money
from domain.payment import InvalidTransition, Payment, PaymentStatus

AUTO = "auto"  # Answer.intent_id: let the fake provider name the intent


# --- the fake payment row -----------------------------------------------------------------------------------
@dataclass
class Recorded:
    seq: int
    transition: str
    old: PaymentStatus | None
    new: PaymentStatus
    actor: str


class FakeLedger:
    """One payment row plus its lifecycle events; transitions go through `domain.payment.Payment`."""

    def __init__(self, risk: RiskResult | None = None) -> None:
        self.risk = risk or RiskResult(allowed=True, score=12, reasons=[])
        self.payment: Payment | None = None
        self.inp: PaymentInput | None = None
        self.events: list[Recorded] = []
        self.next_action: dict[str, Any] | None = None
        self.risk_score: int | None = None
        self.risk_reasons: list[str] | None = None
        self.created_at = self.updated_at = datetime.now(UTC)
        self.dead_letters: dict[str, str] = {}  # dlq_id → open | replayed | expired
        self.dead_letter_steps: dict[str, str] = {}  # dlq_id → the step that failed
        # When set, a transition waits for it (after announcing itself): a step caught in flight.
        self.transition_gate: asyncio.Event | None = None
        self.transition_started = asyncio.Event()

    @property
    def transitions(self) -> list[str]:
        return [e.transition for e in self.events if e.transition != "create"]

    @property
    def statuses(self) -> list[str]:
        return [e.new.value for e in self.events]

    def view(self) -> PaymentView:
        p, inp = self.payment, self.inp
        assert p is not None and inp is not None
        return PaymentView(
            id=p.payment_id, tenant_id=p.tenant_id, customer_id=p.customer_id,
            payment_method_id=p.payment_method_id, amount_micros=p.amount.micros, currency=p.amount.currency,
            status=p.status, description=inp.description, metadata=dict(inp.metadata), provider="fake",
            provider_intent_id=p.provider_intent_id, attempt=1, failure_code=p.failure_code,
            failure_message=p.failure_message, next_action=self.next_action, risk_score=self.risk_score,
            risk_reasons=self.risk_reasons, workflow_id=payment_workflow_id(inp.tenant_id, inp.payment_id),
            event_seq=p.event_seq, created_at=self.created_at, updated_at=self.updated_at,
        )

    def record_payment(self, inp: PaymentInput, actor: str) -> PaymentView:
        if self.payment is None:  # ON CONFLICT DO NOTHING: a second call changes nothing
            self.inp = inp
            self.payment, event = Payment.create(
                payment_id=inp.payment_id, tenant_id=inp.tenant_id, customer_id=inp.customer_id,
                payment_method_id=inp.payment_method_id, amount=Money(inp.amount_micros, inp.currency),
            )
            self.events.append(Recorded(event.seq, event.transition, event.old_status, event.new_status, actor))
        return self.view()

    # The advisory score the next run gets (None: no score; an exception: the model is down).
    fraud: FraudResult | Exception | None = None

    def assess_risk(self, req: RiskRequest) -> RiskResult:
        assert self.payment is not None
        if self.payment.status == PaymentStatus.CREATED:
            self.risk_score, self.risk_reasons = self.risk.score, list(self.risk.reasons)
        return self.risk

    def transition(self, req: TransitionRequest) -> PaymentView:
        """Mirrors PaymentActivities.transition + payment_store.apply_transition."""
        p = self.payment
        assert p is not None, "transition before record_payment"
        # A retried (or re-run) transition whose first try committed is answered, not applied again.
        seq = p.event_seq if req.expected_seq is None else min(req.expected_seq + 1, p.event_seq)
        done = self.events[seq - 1].transition if seq >= 1 else None
        if done == req.transition and (req.expected_seq is None or p.event_seq > req.expected_seq):
            return self.view()
        old = p.status
        try:
            event = p.apply(req.command())
        except InvalidTransition as exc:  # the DB trigger / status guard would refuse it the same way
            raise ApplicationError(str(exc), type=INVALID_TRANSITION, non_retryable=True) from exc
        if req.next_action is not None or req.clear_next_action:
            self.next_action = req.next_action
        self.updated_at = datetime.now(UTC)
        self.events.append(Recorded(event.seq, event.transition, old, event.new_status, req.actor))
        return self.view()

    def record_dead_letter(self, letter: DeadLetter) -> None:
        self.dead_letters.setdefault(letter.dlq_id, "open")  # ON CONFLICT DO NOTHING
        self.dead_letter_steps.setdefault(letter.dlq_id, letter.step)

    def resolve_dead_letter(self, req: ReplayRequest, status: str) -> bool:
        if self.dead_letters.get(req.dlq_id) != "open":  # status guard: open → replayed | expired, once;
            return self.dead_letters.get(req.dlq_id) == status  # a step run again answers its first answer
        self.dead_letters[req.dlq_id] = status
        return True


# --- the fake provider --------------------------------------------------------------------------------------
@dataclass
class Answer:
    """What the provider answers to create_and_confirm (it creates the intent unless intent_id is None)."""

    status: str = "processing"
    intent_id: str | None = AUTO
    decline_code: str | None = None
    failure_message: str | None = None
    next_action_url: str | None = None


@dataclass
class Fail:
    """The call never reaches the provider (connection refused, DNS, ...)."""

    error: BaseException


@dataclass
class LostResponse:
    """The provider creates the intent, then the response is lost (timeout): the retry must not create twice."""

    answer: Answer
    error: BaseException


Step = Answer | Fail | LostResponse


@dataclass
class FakeProvider:
    create_script: list[Step] = field(default_factory=list)  # consumed one per create call
    create_default: Step = field(default_factory=Answer)
    retrieve_script: list[str] = field(default_factory=list)  # statuses get_intent reports, one per call
    retrieve_default: str | None = None  # None: the intent's current status
    on_cancel: Callable[[IntentOutcome], None] | None = None  # runs before cancel looks at the intent
    get_started: asyncio.Event = field(default_factory=asyncio.Event)
    get_gate: asyncio.Event | None = None  # when set, get_intent waits for it
    get_error: BaseException | None = None  # when set, get_intent raises it (the provider's API is down)

    intents: dict[tuple[str, int], IntentOutcome] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    requests: list[IntentRequest] = field(default_factory=list)
    created: int = 0  # intents actually created at the provider

    def count(self, name: str) -> int:
        return self.calls.count(name)

    def _by_id(self, intent_id: str) -> IntentOutcome:
        for intent in self.intents.values():
            if intent.intent_id == intent_id:
                return intent
        raise ApplicationError(f"no such intent {intent_id}", type="InvalidRequest", non_retryable=True)

    def _create(self, req: IntentRequest, answer: Answer) -> IntentOutcome:
        intent_id = f"pi_{req.payment_id}_{req.attempt}" if answer.intent_id == AUTO else answer.intent_id
        outcome = IntentOutcome(intent_id=intent_id, status=answer.status, decline_code=answer.decline_code,
                                failure_message=answer.failure_message, next_action_url=answer.next_action_url)
        if intent_id is not None:
            self.intents[(req.payment_id, req.attempt)] = outcome
            self.created += 1
        return outcome

    async def create_intent(self, req: IntentRequest) -> IntentOutcome:
        self.calls.append("create_intent")
        self.requests.append(req)
        existing = self.intents.get((req.payment_id, req.attempt))
        if existing is not None:  # find-before-create, like the real activity
            return existing.model_copy()
        step = self.create_script.pop(0) if self.create_script else self.create_default
        if isinstance(step, Fail):
            raise step.error
        if isinstance(step, LostResponse):
            self._create(req, step.answer)
            raise step.error
        return self._create(req, step).model_copy()

    async def get_intent(self, intent_id: str) -> IntentOutcome:
        self.calls.append("get_intent")
        self.get_started.set()
        if self.get_gate is not None:
            await self.get_gate.wait()
        if self.get_error is not None:
            raise self.get_error
        intent = self._by_id(intent_id)
        status = self.retrieve_script.pop(0) if self.retrieve_script else self.retrieve_default
        if status is not None:
            intent.status = status
        return intent.model_copy()

    async def cancel_intent(self, req: IntentRequest) -> IntentOutcome | None:
        self.calls.append("cancel_intent")
        intent = self.intents.get((req.payment_id, req.attempt))
        if intent is None:
            return None
        if self.on_cancel is not None:
            self.on_cancel(intent)
        if intent.status not in ("succeeded", "canceled"):
            intent.status = "canceled"
            intent.next_action_url = None
        return intent.model_copy()


# --- the activities, under the real names -------------------------------------------------------------------
class FakeActivities:
    def __init__(self, ledger: FakeLedger, provider: FakeProvider) -> None:
        self.ledger = ledger
        self.provider = provider

    @activity.defn(name="record_payment")
    async def record_payment(self, inp: PaymentInput) -> PaymentView:
        return self.ledger.record_payment(inp, inp.actor)

    @activity.defn(name="admit_payment")
    async def admit_payment(self, inp: PaymentInput) -> Admission:
        """Mirrors PaymentActivities.admit_payment: record, hard rules (a decline fails the payment), score."""
        view = self.ledger.record_payment(inp, inp.actor)
        if view.status != PaymentStatus.CREATED:
            return Admission(view=view, risk=self.ledger.risk)
        risk = self.ledger.assess_risk(RiskRequest(
            tenant_id=inp.tenant_id, payment_id=inp.payment_id, customer_id=inp.customer_id,
            amount_micros=inp.amount_micros, currency=inp.currency))
        if not risk.allowed:
            view = self.ledger.transition(TransitionRequest(
                tenant_id=inp.tenant_id, payment_id=inp.payment_id, transition="mark_failed", actor="workflow",
                correlation_id="test", failure_code=risk.decline_code,
                failure_message=f"declined by risk rule {risk.decline_code}", expected_seq=view.event_seq))
            return Admission(view=view, risk=risk)
        fraud = None if isinstance(self.ledger.fraud, Exception) else self.ledger.fraud
        return Admission(view=self.ledger.view(), risk=risk, fraud=fraud)

    @activity.defn(name="assess_risk")
    async def assess_risk(self, req: RiskRequest) -> RiskResult:
        return self.ledger.assess_risk(req)

    @activity.defn(name="score_fraud")
    async def score_fraud(self, req: RiskRequest) -> FraudResult | None:
        if isinstance(self.ledger.fraud, Exception):
            raise self.ledger.fraud
        return self.ledger.fraud

    @activity.defn(name="transition")
    async def transition(self, req: TransitionRequest) -> PaymentView:
        if self.ledger.transition_gate is not None:
            self.ledger.transition_started.set()
            await self.ledger.transition_gate.wait()
        return self.ledger.transition(req)

    @activity.defn(name="record_dead_letter")
    async def record_dead_letter(self, letter: DeadLetter) -> None:
        self.ledger.record_dead_letter(letter)

    @activity.defn(name="claim_dead_letter")
    async def claim_dead_letter(self, req: ReplayRequest) -> bool:
        return self.ledger.resolve_dead_letter(req, "replayed")

    @activity.defn(name="expire_dead_letter")
    async def expire_dead_letter(self, req: ReplayRequest) -> bool:
        return self.ledger.resolve_dead_letter(req, "expired")

    @activity.defn(name="create_intent")
    async def create_intent(self, req: IntentRequest) -> IntentOutcome:
        return await self.provider.create_intent(req)

    @activity.defn(name="submit_intent")
    async def submit_intent(self, req: SubmitRequest) -> Submission:
        """Mirrors PaymentActivities.submit_intent: the provider call, then the transitions of its answer."""
        return await submit(req, self.provider.create_intent, self._record)

    async def _record(self, steps: list[TransitionRequest]) -> PaymentView:
        """The fake store applies them in order (the real one in one transaction)."""
        views = [await self.transition(step) for step in steps]
        return views[-1]

    @activity.defn(name="get_intent")
    async def get_intent(self, intent_id: str) -> IntentOutcome:
        return await self.provider.get_intent(intent_id)

    @activity.defn(name="cancel_intent")
    async def cancel_intent(self, req: IntentRequest) -> IntentOutcome | None:
        return await self.provider.cancel_intent(req)

    def all(self) -> list[Callable[..., Any]]:
        return [self.admit_payment, self.record_payment, self.assess_risk, self.score_fraud, self.transition,
                self.record_dead_letter, self.claim_dead_letter, self.expire_dead_letter, self.create_intent,
                self.submit_intent, self.get_intent,
                self.cancel_intent]
