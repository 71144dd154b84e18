"""The Payment aggregate and its six-state machine.

    created ──► pending ──► processing ──► completed
       │  ╲        ▲  │  ╲       │  ╲
       │   ╲       └──┼───╲──────┘   ╲──► failed
       │    ╲         │    ╲ (settle_from_processing: asynchronous settlement / 3-D Secure)
       └──────────────┴─────► canceled

Each of the nine named transitions checks the current state, moves the aggregate and returns the lifecycle
event it caused; the caller persists row, event and outbox message in one transaction. Terminal states never
change. The same table is enforced again by a database trigger (migrations/), so neither layer trusts the other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from domain.money import Money


class PaymentStatus(StrEnum):
    CREATED = "created"
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({PaymentStatus.COMPLETED, PaymentStatus.FAILED, PaymentStatus.CANCELED})

class Transition(StrEnum):
    """The nine named transitions. A StrEnum, so the names travel as plain strings in messages and rows."""

    MARK_PENDING = "mark_pending"
    MARK_PROCESSING = "mark_processing"
    MARK_COMPLETED = "mark_completed"
    MARK_FAILED = "mark_failed"
    MARK_CANCELED = "mark_canceled"
    CONFIRM_FROM_PENDING = "confirm_from_pending"
    REJECT_FROM_PENDING = "reject_from_pending"
    SETTLE_FROM_PROCESSING = "settle_from_processing"
    RECONCILE = "reconcile"


S = PaymentStatus
T = Transition
# transition → (states it may start from, state it leads to). `reconcile` leads to the provider's verdict.
TRANSITIONS: dict[Transition, tuple[frozenset[PaymentStatus], PaymentStatus | None]] = {
    T.MARK_PENDING: (frozenset({S.CREATED}), S.PENDING),
    T.MARK_PROCESSING: (frozenset({S.CREATED, S.PENDING}), S.PROCESSING),
    T.MARK_COMPLETED: (frozenset({S.PROCESSING}), S.COMPLETED),
    # created → failed: declined by a hard risk rule before any provider call.
    T.MARK_FAILED: (frozenset({S.CREATED, S.PROCESSING}), S.FAILED),
    T.MARK_CANCELED: (frozenset({S.CREATED, S.PENDING}), S.CANCELED),
    T.CONFIRM_FROM_PENDING: (frozenset({S.PENDING}), S.COMPLETED),
    T.REJECT_FROM_PENDING: (frozenset({S.PENDING}), S.FAILED),
    T.SETTLE_FROM_PROCESSING: (frozenset({S.PROCESSING}), S.PENDING),
    T.RECONCILE: (frozenset({S.PENDING, S.PROCESSING}), None),
}

# Every edge any transition can take; the database trigger encodes the same set.
ALLOWED_EDGES: frozenset[tuple[PaymentStatus, PaymentStatus]] = frozenset(
    (src, dst)
    for sources, target in TRANSITIONS.values()
    for src in sources
    for dst in ([target] if target else [S.COMPLETED, S.FAILED])
)


class InvalidTransition(Exception):
    def __init__(self, payment_id: str, transition: Transition | str, status: PaymentStatus) -> None:
        super().__init__(f"{transition} is not allowed for payment {payment_id} in state {status}")
        self.transition = transition
        self.status = status


def transition_id(payment_id: str, seq: int) -> str:
    """Deterministic: the same transition recorded twice (a retried activity) has the same id."""
    return hashlib.sha256(f"{payment_id}:{seq}".encode()).hexdigest()


@dataclass(frozen=True)
class TransitionCommand:
    """One transition and the data it needs: the intent id (mark_processing), a failure (mark_failed,
    reject_from_pending, reconcile to failed), a reason (mark_canceled), the provider's verdict (reconcile)."""

    transition: Transition
    provider_intent_id: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    reason: str | None = None
    outcome: PaymentStatus | None = None


@dataclass(frozen=True)
class LifecycleEvent:
    payment_id: str
    seq: int
    type: str
    transition: str
    old_status: PaymentStatus | None
    new_status: PaymentStatus
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def transition_id(self) -> str:
        return transition_id(self.payment_id, self.seq)


@dataclass
class Payment:
    payment_id: str
    tenant_id: str
    customer_id: str
    payment_method_id: str
    amount: Money
    status: PaymentStatus = PaymentStatus.CREATED
    event_seq: int = 0
    provider_intent_id: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None

    @classmethod
    def create(cls, **kwargs: Any) -> tuple[Payment, LifecycleEvent]:
        payment = cls(**kwargs)
        payment.event_seq = 1
        event = LifecycleEvent(
            payment.payment_id, 1, "payment.created", "create", None, S.CREATED,
            {"amount_micros": payment.amount.micros, "currency": payment.amount.currency},
        )
        return payment, event

    # --- the nine transitions ---------------------------------------------------------------------------
    def mark_pending(self, **meta: Any) -> LifecycleEvent:
        return self._apply(T.MARK_PENDING, meta)

    def mark_processing(self, *, provider_intent_id: str | None = None, **meta: Any) -> LifecycleEvent:
        event = self._apply(T.MARK_PROCESSING, {**meta, "provider_intent_id": provider_intent_id})
        self.provider_intent_id = provider_intent_id or self.provider_intent_id
        return event

    def mark_completed(self, **meta: Any) -> LifecycleEvent:
        return self._apply(T.MARK_COMPLETED, meta)

    def mark_failed(self, *, code: str, message: str = "", **meta: Any) -> LifecycleEvent:
        return self._fail(T.MARK_FAILED, code, message, meta)

    def mark_canceled(self, *, reason: str, **meta: Any) -> LifecycleEvent:
        return self._apply(T.MARK_CANCELED, {**meta, "reason": reason})

    def confirm_from_pending(self, **meta: Any) -> LifecycleEvent:
        return self._apply(T.CONFIRM_FROM_PENDING, meta)

    def reject_from_pending(self, *, code: str, message: str = "", **meta: Any) -> LifecycleEvent:
        return self._fail(T.REJECT_FROM_PENDING, code, message, meta)

    def settle_from_processing(self, **meta: Any) -> LifecycleEvent:
        return self._apply(T.SETTLE_FROM_PROCESSING, meta)

    def reconcile(
        self, outcome: PaymentStatus, *, code: str | None = None, message: str = "", **meta: Any
    ) -> LifecycleEvent:
        """The provider's verdict on a payment nobody told us about in time (a lost webhook)."""
        if outcome not in (S.COMPLETED, S.FAILED):
            raise ValueError(f"reconcile settles to completed or failed, not {outcome}")
        if outcome == S.FAILED:
            code = code or "declined"
            meta = {**meta, "failure_code": code, "failure_message": message}
        event = self._apply(T.RECONCILE, meta, target=outcome)
        if outcome == S.FAILED:
            self.failure_code, self.failure_message = code, message
        return event

    def apply(self, cmd: TransitionCommand) -> LifecycleEvent:
        """Run the command's transition with its data; a failure without a code records why it is unknown."""
        code, message = cmd.failure_code, cmd.failure_message or ""
        match cmd.transition:
            case T.MARK_PENDING:
                return self.mark_pending()
            case T.MARK_PROCESSING:
                return self.mark_processing(provider_intent_id=cmd.provider_intent_id)
            case T.MARK_COMPLETED:
                return self.mark_completed()
            case T.MARK_FAILED:
                return self.mark_failed(code=code or "unknown", message=message)
            case T.MARK_CANCELED:
                return self.mark_canceled(reason=cmd.reason or "canceled")
            case T.CONFIRM_FROM_PENDING:
                return self.confirm_from_pending()
            case T.REJECT_FROM_PENDING:
                return self.reject_from_pending(code=code or "unknown", message=message)
            case T.SETTLE_FROM_PROCESSING:
                return self.settle_from_processing()
            case T.RECONCILE:
                if cmd.outcome is None:
                    raise ValueError("reconcile needs the provider's outcome")
                return self.reconcile(cmd.outcome, code=code, message=message)

    # --- mechanics --------------------------------------------------------------------------------------
    def can(self, transition: Transition) -> bool:
        return self.status in TRANSITIONS[transition][0]

    def _fail(self, name: Transition, code: str, message: str, meta: dict[str, Any]) -> LifecycleEvent:
        event = self._apply(name, {**meta, "failure_code": code, "failure_message": message})
        self.failure_code, self.failure_message = code, message
        return event

    def _apply(
        self, name: Transition, meta: dict[str, Any], target: PaymentStatus | None = None
    ) -> LifecycleEvent:
        sources, fixed_target = TRANSITIONS[name]
        if self.status not in sources:
            raise InvalidTransition(self.payment_id, name, self.status)
        new_status = fixed_target or target
        assert new_status is not None
        self.event_seq += 1
        event = LifecycleEvent(
            self.payment_id, self.event_seq, f"payment.{new_status.value}", name, self.status, new_status,
            {k: v for k, v in meta.items() if v is not None},
        )
        self.status = new_status
        return event
