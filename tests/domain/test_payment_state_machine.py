"""The Payment aggregate's state machine, checked against an explicit table.

The allowed table below is written out by hand on purpose: it is NOT derived from ``TRANSITIONS`` or
``ALLOWED_EDGES``, so any change to the machine has to change this file too.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.money import Money
from domain.payment import (
    ALLOWED_EDGES,
    TERMINAL,
    TRANSITIONS,
    InvalidTransition,
    LifecycleEvent,
    Payment,
    PaymentStatus,
    transition_id,
)

S = PaymentStatus

# A transition "call" is a (transition name, kwargs) pair; reconcile appears once per outcome.
CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "mark_pending": ("mark_pending", {}),
    "mark_processing": ("mark_processing", {}),
    "mark_completed": ("mark_completed", {}),
    "mark_failed": ("mark_failed", {"code": "card_declined"}),
    "mark_canceled": ("mark_canceled", {"reason": "requested_by_customer"}),
    "confirm_from_pending": ("confirm_from_pending", {}),
    "reject_from_pending": ("reject_from_pending", {"code": "authentication_failed"}),
    "settle_from_processing": ("settle_from_processing", {}),
    "reconcile->completed": ("reconcile", {"outcome": S.COMPLETED}),
    "reconcile->failed": ("reconcile", {"outcome": S.FAILED}),
}

# (state, call) → resulting state. Every pair not listed here must raise InvalidTransition.
ALLOWED: dict[tuple[PaymentStatus, str], PaymentStatus] = {
    (S.CREATED, "mark_pending"): S.PENDING,
    (S.CREATED, "mark_processing"): S.PROCESSING,
    (S.PENDING, "mark_processing"): S.PROCESSING,
    (S.PROCESSING, "mark_completed"): S.COMPLETED,
    (S.CREATED, "mark_failed"): S.FAILED,
    (S.PROCESSING, "mark_failed"): S.FAILED,
    (S.CREATED, "mark_canceled"): S.CANCELED,
    (S.PENDING, "mark_canceled"): S.CANCELED,
    (S.PENDING, "confirm_from_pending"): S.COMPLETED,
    (S.PENDING, "reject_from_pending"): S.FAILED,
    (S.PROCESSING, "settle_from_processing"): S.PENDING,
    (S.PENDING, "reconcile->completed"): S.COMPLETED,
    (S.PENDING, "reconcile->failed"): S.FAILED,
    (S.PROCESSING, "reconcile->completed"): S.COMPLETED,
    (S.PROCESSING, "reconcile->failed"): S.FAILED,
}

EXPECTED_EDGES = {
    (S.CREATED, S.PENDING), (S.CREATED, S.PROCESSING), (S.PENDING, S.PROCESSING), (S.PROCESSING, S.COMPLETED),
    (S.CREATED, S.FAILED), (S.PROCESSING, S.FAILED), (S.CREATED, S.CANCELED), (S.PENDING, S.CANCELED),
    (S.PENDING, S.COMPLETED), (S.PENDING, S.FAILED), (S.PROCESSING, S.PENDING),
}

NINE = {
    "mark_pending", "mark_processing", "mark_completed", "mark_failed", "mark_canceled",
    "confirm_from_pending", "reject_from_pending", "settle_from_processing", "reconcile",
}


def _payment(status: PaymentStatus = S.CREATED, seq: int = 7) -> Payment:
    return Payment(
        payment_id="pay_1", tenant_id="ten_1", customer_id="cus_1", payment_method_id="pm_1",
        amount=Money.parse("12.34", "USD"), status=status, event_seq=seq,
    )


def _invoke(payment: Payment, call: str) -> LifecycleEvent:
    name, kwargs = CALLS[call]
    method: Callable[..., LifecycleEvent] = getattr(payment, name)
    return method(**kwargs)


def test_the_table_covers_exactly_the_nine_transitions() -> None:
    assert {name for name, _ in CALLS.values()} == NINE
    assert set(TRANSITIONS) == NINE
    assert len(list(PaymentStatus)) == 6
    assert {S.COMPLETED, S.FAILED, S.CANCELED} == TERMINAL


def test_allowed_edges_match_the_explicit_table() -> None:
    assert set(ALLOWED_EDGES) == EXPECTED_EDGES
    assert {(src, dst) for (src, _), dst in ALLOWED.items()} == EXPECTED_EDGES


@pytest.mark.parametrize("status", list(PaymentStatus), ids=str)
@pytest.mark.parametrize("call", list(CALLS))
def test_every_state_transition_pair(status: PaymentStatus, call: str) -> None:
    payment = _payment(status, seq=7)
    name = CALLS[call][0]
    expected = ALLOWED.get((status, call))
    if expected is None:
        with pytest.raises(InvalidTransition) as exc:
            _invoke(payment, call)
        assert exc.value.transition == name
        assert exc.value.status == status
        assert payment.status == status
        assert payment.event_seq == 7
        assert payment.failure_code is None and payment.provider_intent_id is None
        assert payment.can(name) is False
        return
    assert payment.can(name) is True
    event = _invoke(payment, call)
    assert payment.status == expected
    assert payment.event_seq == 8
    assert isinstance(event, LifecycleEvent)
    assert event.payment_id == "pay_1"
    assert event.seq == 8
    assert event.old_status == status
    assert event.new_status == expected
    assert event.type == f"payment.{expected.value}"
    assert event.transition == name


def test_terminal_states_allow_nothing() -> None:
    for status in (S.COMPLETED, S.FAILED, S.CANCELED):
        assert status.is_terminal
        assert not any(src == status for src, _ in ALLOWED)
    for status in (S.CREATED, S.PENDING, S.PROCESSING):
        assert not status.is_terminal


def test_failure_transitions_record_code_and_message() -> None:
    payment = _payment(S.PROCESSING)
    event = payment.mark_failed(code="card_declined", message="Your card was declined.")
    assert (payment.failure_code, payment.failure_message) == ("card_declined", "Your card was declined.")
    assert event.metadata == {"failure_code": "card_declined", "failure_message": "Your card was declined."}

    payment = _payment(S.PENDING)
    payment.reject_from_pending(code="authentication_failed")
    assert payment.failure_code == "authentication_failed"


def test_mark_processing_keeps_intent_id_and_drops_none_metadata() -> None:
    payment = _payment(S.CREATED)
    event = payment.mark_processing(provider_intent_id="pi_123")
    assert payment.provider_intent_id == "pi_123"
    assert event.metadata == {"provider_intent_id": "pi_123"}

    payment = _payment(S.PENDING)
    payment.provider_intent_id = "pi_old"
    event = payment.mark_processing()
    assert payment.provider_intent_id == "pi_old"
    assert "provider_intent_id" not in event.metadata


def test_mark_canceled_records_reason() -> None:
    event = _payment(S.CREATED).mark_canceled(reason="duplicate")
    assert event.metadata == {"reason": "duplicate"}


@pytest.mark.parametrize("outcome", [S.CREATED, S.PENDING, S.PROCESSING, S.CANCELED])
@pytest.mark.parametrize("status", [S.PENDING, S.PROCESSING])
def test_reconcile_refuses_non_final_outcomes(status: PaymentStatus, outcome: PaymentStatus) -> None:
    payment = _payment(status, seq=3)
    with pytest.raises(ValueError):
        payment.reconcile(outcome)
    assert payment.status == status
    assert payment.event_seq == 3


def test_create_returns_seq_one_created_event() -> None:
    payment, event = Payment.create(
        payment_id="pay_9", tenant_id="ten_1", customer_id="cus_1", payment_method_id="pm_1",
        amount=Money.parse("1200", "JPY"),
    )
    assert payment.status == S.CREATED
    assert payment.event_seq == 1
    assert event.seq == 1
    assert event.type == "payment.created"
    assert event.transition == "create"
    assert event.old_status is None
    assert event.new_status == S.CREATED
    assert event.metadata == {"amount_micros": 1_200_000_000, "currency": "JPY"}
    assert event.transition_id == transition_id("pay_9", 1)
    # the first transition after create is seq 2
    assert payment.mark_pending().seq == 2


def test_transition_id_is_sha256_of_payment_and_seq() -> None:
    expected = hashlib.sha256(b"pay_1:2").hexdigest()
    assert transition_id("pay_1", 2) == expected
    assert transition_id("pay_1", 2) == transition_id("pay_1", 2)
    assert len(expected) == 64 and all(c in "0123456789abcdef" for c in expected)
    assert transition_id("pay_1", 3) != expected
    assert transition_id("pay_2", 2) != expected
    assert _payment(S.CREATED, seq=1).mark_pending().transition_id == expected


@given(st.text(min_size=1, max_size=40), st.integers(min_value=1, max_value=10**6))
def test_transition_id_is_deterministic_and_unique_per_seq(payment_id: str, seq: int) -> None:
    tid = transition_id(payment_id, seq)
    assert tid == hashlib.sha256(f"{payment_id}:{seq}".encode()).hexdigest()
    assert tid != transition_id(payment_id, seq + 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list(CALLS)), max_size=12))
def test_random_walks_respect_the_machine(calls: list[str]) -> None:
    payment, created = Payment.create(
        payment_id="pay_w", tenant_id="ten_1", customer_id="cus_1", payment_method_id="pm_1",
        amount=Money.parse("5.00", "EUR"),
    )
    events = [created]
    terminal_reached: PaymentStatus | None = None
    for call in calls:
        before = (payment.status, payment.event_seq)
        if terminal_reached is not None:
            # once terminal, every later call raises and nothing changes
            with pytest.raises(InvalidTransition):
                _invoke(payment, call)
            assert (payment.status, payment.event_seq) == before
            assert payment.status == terminal_reached
            continue
        expected = ALLOWED.get((payment.status, call))
        if expected is None:
            with pytest.raises(InvalidTransition):
                _invoke(payment, call)
            assert (payment.status, payment.event_seq) == before
        else:
            event = _invoke(payment, call)
            assert payment.status == expected
            assert (event.old_status, event.new_status) in ALLOWED_EDGES
            assert event.seq == events[-1].seq + 1 == payment.event_seq
            events.append(event)
        if payment.status.is_terminal:
            terminal_reached = payment.status
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    for prev, nxt in itertools.pairwise(events):
        assert nxt.old_status == prev.new_status
    assert len({e.transition_id for e in events}) == len(events)
