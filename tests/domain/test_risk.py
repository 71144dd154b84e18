"""domain.risk.assess: hard limits decline with a code; advisory signals only raise and explain the score."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.money import Money
from domain.risk import CustomerHistory, RiskLimits, assess

LIMITS = RiskLimits(max_amount_micros=1_000 * 1_000_000, velocity_max_payments=10, velocity_window_seconds=3600)


def usd(text: str) -> Money:
    return Money.parse(text, "USD")


def test_amount_above_limit_declines() -> None:
    decision = assess(usd("1000.01"), CustomerHistory(recent_payment_count=0), LIMITS)
    assert decision.allowed is False
    assert decision.decline_code == "amount_above_limit"
    assert decision.score == 100
    assert decision.reasons == ["amount_above_limit"]


def test_amount_exactly_at_limit_is_allowed() -> None:
    decision = assess(usd("1000.00"), CustomerHistory(recent_payment_count=0), LIMITS)
    assert decision.allowed is True
    assert decision.decline_code is None


@pytest.mark.parametrize("count", [10, 11, 500])
def test_velocity_reached_declines(count: int) -> None:
    decision = assess(usd("1.00"), CustomerHistory(recent_payment_count=count), LIMITS)
    assert decision.allowed is False
    assert decision.decline_code == "velocity_limit_exceeded"
    assert decision.score == 100
    assert decision.reasons == ["velocity_limit_exceeded"]


def test_one_below_velocity_limit_is_allowed() -> None:
    decision = assess(usd("1.00"), CustomerHistory(recent_payment_count=9), LIMITS)
    assert decision.allowed is True
    assert decision.decline_code is None
    assert "high_recent_velocity" in decision.reasons


def test_amount_rule_is_checked_before_velocity() -> None:
    decision = assess(usd("5000"), CustomerHistory(recent_payment_count=99), LIMITS)
    assert decision.decline_code == "amount_above_limit"


def test_quiet_customer_small_amount_scores_zero_with_no_reasons() -> None:
    decision = assess(usd("10.00"), CustomerHistory(recent_payment_count=0, typical_amount_micros=8_000_000), LIMITS)
    assert decision.allowed is True
    assert decision.score == 0
    assert decision.reasons == []
    assert decision.decline_code is None


def test_reasons_explain_each_advisory_signal() -> None:
    # velocity: 5 of 10 → share 0.5 → +20
    d = assess(usd("1.00"), CustomerHistory(recent_payment_count=5), LIMITS)
    assert (d.score, d.reasons) == (20, ["high_recent_velocity"])
    # far above the customer's typical amount: +30
    d = assess(usd("60.00"), CustomerHistory(recent_payment_count=0, typical_amount_micros=10_000_000), LIMITS)
    assert (d.score, d.reasons) == (30, ["amount_far_above_customer_typical"])
    # exactly 5x typical is not "far above"
    d = assess(usd("50.00"), CustomerHistory(recent_payment_count=0, typical_amount_micros=10_000_000), LIMITS)
    assert (d.score, d.reasons) == (0, [])
    # more than half the hard limit: +20
    d = assess(usd("500.01"), CustomerHistory(recent_payment_count=0), LIMITS)
    assert (d.score, d.reasons) == (20, ["amount_near_limit"])
    # all three together, still allowed
    d = assess(usd("900.00"), CustomerHistory(recent_payment_count=9, typical_amount_micros=1_000_000), LIMITS)
    assert d.allowed is True
    assert d.reasons == ["high_recent_velocity", "amount_far_above_customer_typical", "amount_near_limit"]
    assert d.score == int(40 * 0.9) + 30 + 20


@given(
    micros=st.integers(min_value=0, max_value=LIMITS.max_amount_micros),
    count=st.integers(min_value=0, max_value=LIMITS.velocity_max_payments - 1),
    typical=st.none() | st.integers(min_value=0, max_value=LIMITS.max_amount_micros),
    max_amount=st.integers(min_value=0, max_value=10**15),
    max_payments=st.integers(min_value=1, max_value=1000),
)
def test_advisory_signals_never_decline(
    micros: int, count: int, typical: int | None, max_amount: int, max_payments: int
) -> None:
    # the fixed LIMITS...
    decision = assess(Money(micros, "USD"), CustomerHistory(count, typical), LIMITS)
    assert decision.allowed is True
    assert decision.decline_code is None
    assert 0 <= decision.score <= 99
    assert (decision.score == 0) == (decision.reasons == [])
    # ...and arbitrary limits, with the amount and count scaled to stay within them
    limits = RiskLimits(max_amount, max_payments, 60)
    amount = Money(micros % (max_amount + 1), "USD")
    decision = assess(amount, CustomerHistory(count % max_payments, typical), limits)
    assert decision.allowed is True
    assert decision.decline_code is None
    assert 0 <= decision.score <= 99
    assert set(decision.reasons) <= {"high_recent_velocity", "amount_far_above_customer_typical", "amount_near_limit"}
