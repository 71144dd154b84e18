"""Pre-execution risk rules: hard limits that decline, plus an advisory score that never declines by itself.

Pure: the caller gathers the facts (the customer's recent payments) and passes them in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.money import Money


@dataclass(frozen=True)
class RiskLimits:
    max_amount_micros: int  # per payment, in the payment's currency
    velocity_max_payments: int  # per customer per window
    velocity_window_seconds: int


@dataclass(frozen=True)
class CustomerHistory:
    recent_payment_count: int  # within the velocity window, excluding this payment
    typical_amount_micros: int | None = None  # median of past completed payments, if any


@dataclass(frozen=True)
class RiskDecision:
    allowed: bool
    score: int  # 0 (no concern) .. 100
    reasons: list[str] = field(default_factory=list)
    decline_code: str | None = None


def assess(amount: Money, history: CustomerHistory, limits: RiskLimits) -> RiskDecision:
    reasons: list[str] = []
    if amount.micros > limits.max_amount_micros:
        return RiskDecision(False, 100, ["amount_above_limit"], "amount_above_limit")
    if history.recent_payment_count >= limits.velocity_max_payments:
        return RiskDecision(False, 100, ["velocity_limit_exceeded"], "velocity_limit_exceeded")

    score = 0
    # Advisory signals: they raise the score and explain it; they never decline.
    share = history.recent_payment_count / max(limits.velocity_max_payments, 1)
    if share >= 0.5:
        score += int(40 * share)
        reasons.append("high_recent_velocity")
    if history.typical_amount_micros and amount.micros > 5 * history.typical_amount_micros:
        score += 30
        reasons.append("amount_far_above_customer_typical")
    if amount.micros > limits.max_amount_micros // 2:
        score += 20
        reasons.append("amount_near_limit")
    return RiskDecision(True, min(score, 99), reasons)
