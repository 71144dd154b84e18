"""Advisory fraud scoring: an explainable additive model that can ask for 3-D Secure or a review, never decline.

Pure: no I/O, no clock, no floats. The caller gathers the facts (``activities.ai_client.gather_features``) and
passes them in; the same facts always give the same assessment.

This is deliberately separate from ``domain.risk``: the *hard rules* there (amount ceiling, velocity limit) are
configured per deployment/tenant and are the only thing that declines a payment. The score here is advice: it
raises friction (3-D Secure) or asks a human to look (review), and it always says why.

The model
---------
Every feature that looks suspicious adds a whole number of points; the score is their sum, capped at 100. Each
non-zero contribution is returned as a reason ``(code, contribution, explanation)`` so that the score can be
read back as "20 because of 5 other payments in the last hour, 10 because the card was issued in another
country, …". The contributions always add up to the uncapped score.

The features come in two kinds. *Risk signals* are what stolen cards and taken-over accounts do: an amount far
above the customer's habits, bursts, declines before a success. *Context signals* only say that something is new
or cross-border: no history, a card not used here before, a card added just now, a card issued in another country
than the customer's. Context is true of nearly every first purchase and of every customer who lives elsewhere
than their bank, so on its own it stays well below the 3-D Secure threshold; next to a risk signal it makes the
risk more believable, and the ``context_corroborates_risk`` reason counts the risk points again, up to the
context's own points.

=============================== ============================================== ======= =========================
code                            when                                           points  why
=============================== ============================================== ======= =========================
*risk signals*
amount_above_customer_median    amount > 2x / > 5x / > 10x the customer's      10/20/30 stolen cards and taken-over
                                median completed amount in this currency                accounts buy far above the
                                                                                        owner's habits
velocity_last_hour              n >= 2 other payments in the hour before       5(n-1)  bursts are how stolen cards
                                                                               max 20  are tested and cashed out
velocity_last_day               n >= 6 other payments in the 24 h before       3(n-5)  sustained volume beyond a
                                                                               max 15  normal day
prior_failed_payments           n failed payments of the customer in the       8n      declines before a success
                                24 h before                                    max 20  are the card-testing pattern
*context signals*
no_payment_history              the customer has no completed payment in this  5       every first purchase has
                                currency                                                it: nothing to compare with
payment_method_first_use        the card has never completed a payment         5       an unproven card
payment_method_recently_added   the card was attached < 1 h ago (or its age    5 / 3   attach-and-pay is how stolen
                                is unknown) / < 24 h ago                               cards are used, and how
                                                                                        most first purchases go
country_mismatch                card's issuing country != customer's country   10      a card used by someone
                                (both known)                                            other than its owner, or
                                                                                        a customer abroad
*both*
context_corroborates_risk       some risk signal and some context signal       min(R,  the same burst or jump is
                                fire: R = their risk points, C = their         C, 15)  likelier fraud on a new or
                                context points                                          foreign card
=============================== ============================================== ======= =========================

What that gives under the default policy (3-D Secure from 40, review from 60):

* context alone is at most 5 + 5 + 5 + 10 = 25: an ordinary first purchase is allowed from any country, with any
  card, domestic or not (``builtin-v1`` gave a first purchase with a foreign card 45 and challenged it);
* a strong risk signal (a burst: 20, repeated failures: 20, a 10x amount: 30) with a mismatch is at least
  20 + 10 + 10 = 40: still challenged, whatever else is known;
* card testing (a new customer with a new card, 4 other payments in the hour and 3 declines) is 15 + 20 of risk,
  15 of context and 15 of corroboration = 65: reviewed.

The maximum before the cap is 85 (risk) + 20 (context with an amount signal, which excludes ``no_payment_history``)
+ 15 = 120, so the cap matters only when nearly everything fires. An unknown country adds nothing (absence of data
is not evidence); the bias report (``paysaga risk bias-report``) watches whether any feature, notably
``country_mismatch``, falls disproportionately on one segment of customers (``bench/fraud_bias.py`` shows what
``builtin-v1`` did to first purchases from abroad, and what this model does).

Actions (``FraudPolicy``): ``score < require_3ds_at`` → ``allow``; ``require_3ds_at <= score < review_at`` →
``require_3ds`` (the payment goes on with 3-D Secure); ``score >= review_at`` → ``review`` (flagged for a human
*and* 3-D Secure is required: review is the stronger of the two and includes it). There is no decline action,
by construction: ``FraudAssessment`` refuses any other value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

MAX_SCORE = 100
BUILTIN_MODEL = "builtin-v2"

Action = Literal["allow", "require_3ds", "review"]
ACTIONS: tuple[str, ...] = ("allow", "require_3ds", "review")  # in increasing order of friction
TOP_REASONS = 3

HOUR = 3600
DAY = 86_400

# --- points (the table in the module docstring; change both together) ----------------------------------------
# Risk signals.
AMOUNT_BANDS: tuple[tuple[int, int], ...] = ((10, 30), (5, 20), (2, 10))  # (amount > k x median, points)
VELOCITY_HOUR_FREE, VELOCITY_HOUR_STEP, VELOCITY_HOUR_MAX = 1, 5, 20
VELOCITY_DAY_FREE, VELOCITY_DAY_STEP, VELOCITY_DAY_MAX = 5, 3, 15
FAILED_STEP, FAILED_MAX = 8, 20
# Context signals: together at most 25, so that they never reach the default 3-D Secure threshold (40) alone.
NO_HISTORY_POINTS = 5
FIRST_USE_POINTS = 5
ADDED_WITHIN_HOUR_POINTS, ADDED_WITHIN_DAY_POINTS = 5, 3
COUNTRY_MISMATCH_POINTS = 10
# Context next to risk: the risk points count again, up to the context points and at most this.
CORROBORATION_MAX = 15

RISK_CODES = frozenset({"amount_above_customer_median", "velocity_last_hour", "velocity_last_day",
                        "prior_failed_payments"})
CONTEXT_CODES = frozenset({"no_payment_history", "payment_method_first_use", "payment_method_recently_added",
                           "country_mismatch"})
CORROBORATION_CODE = "context_corroborates_risk"
_CONTEXT_WORDS = {  # how a context reason reads inside the corroboration's sentence
    "no_payment_history": "no history",
    "payment_method_first_use": "a card not used here before",
    "payment_method_recently_added": "a freshly added card",
    "country_mismatch": "a card issued in another country",
}


@dataclass(frozen=True)
class FraudFeatures:
    """The facts about one payment the scorer looks at. Counts exclude the payment being scored."""

    amount_micros: int
    currency: str
    customer_median_amount_micros: int | None  # median of the customer's completed payments in this currency
    customer_completed_count: int  # completed payments of the customer in this currency
    payments_last_hour: int  # the customer's other non-canceled payments in the hour before this one
    payments_last_day: int  # ... in the 24 h before this one
    payment_method_age_seconds: int | None  # since the card was attached; None = unknown / brand new
    payment_method_previous_uses: int  # completed payments made with this card before
    card_country: str | None  # ISO 3166-1 alpha-2 of the issuer, if the provider told us
    customer_country: str | None
    prior_failed_last_day: int  # the customer's failed payments in the 24 h before this one

    def __post_init__(self) -> None:
        if self.amount_micros <= 0:
            raise ValueError(f"amount_micros must be positive, got {self.amount_micros}")
        for name in ("customer_completed_count", "payments_last_hour", "payments_last_day",
                     "payment_method_previous_uses", "prior_failed_last_day"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.payment_method_age_seconds is not None and self.payment_method_age_seconds < 0:
            object.__setattr__(self, "payment_method_age_seconds", 0)  # clock skew between rows: treat as new
        for name in ("card_country", "customer_country"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value.strip().upper() or None) if isinstance(value, str) else None)


class FraudReason(NamedTuple):
    code: str
    contribution: int
    explanation: str

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "contribution": self.contribution, "explanation": self.explanation}


@dataclass(frozen=True)
class FraudAssessment:
    """A score 0..100, the reasons behind it (largest contribution first) and the advised action."""

    score: int
    reasons: tuple[FraudReason, ...]
    action: Action
    model: str = field(default=BUILTIN_MODEL, compare=False)  # who scored; equal assessments are equal

    def __post_init__(self) -> None:
        if isinstance(self.score, bool) or not isinstance(self.score, int) or not 0 <= self.score <= MAX_SCORE:
            raise ValueError(f"score must be an int in 0..{MAX_SCORE}, got {self.score!r}")
        if self.action not in ACTIONS:  # in particular never "decline": the score is advisory
            raise ValueError(f"action must be one of {ACTIONS}, got {self.action!r}")
        reasons = tuple(FraudReason(*r) for r in self.reasons)
        object.__setattr__(self, "reasons", tuple(sorted(reasons, key=lambda r: (-r.contribution, r.code))))

    @property
    def uncapped_score(self) -> int:
        return sum(r.contribution for r in self.reasons)

    @property
    def top_reasons(self) -> tuple[FraudReason, ...]:
        return self.reasons[:TOP_REASONS]

    @property
    def requires_3ds(self) -> bool:
        return self.action in ("require_3ds", "review")

    @property
    def flagged(self) -> bool:
        return self.action != "allow"

    def reasons_json(self) -> list[dict[str, Any]]:
        """What goes into ``payments.fraud_reasons``: every reason, largest first."""
        return [r.to_json() for r in self.reasons]

    @classmethod
    def from_record(cls, score: int, reasons: list[dict[str, Any]] | None, action: str,
                    model: str = BUILTIN_MODEL) -> FraudAssessment:
        """Rebuild from the payment row's ``fraud_score``, ``fraud_reasons``, ``fraud_action``."""
        parsed = tuple(FraudReason(str(r["code"]), int(r["contribution"]), str(r.get("explanation", "")))
                       for r in reasons or [])
        return cls(score=score, reasons=parsed, action=action, model=model)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FraudPolicy:
    """Thresholds on the score. ``review_at=101`` turns reviews off; ``require_3ds_at=0`` asks 3DS of everyone."""

    require_3ds_at: int = 40
    review_at: int = 60

    def __post_init__(self) -> None:
        if not 0 <= self.require_3ds_at <= self.review_at <= MAX_SCORE + 1:
            raise ValueError(
                f"need 0 <= require_3ds_at <= review_at <= {MAX_SCORE + 1}, "
                f"got require_3ds_at={self.require_3ds_at}, review_at={self.review_at}"
            )

    def action_for(self, score: int) -> Action:
        if score >= self.review_at:
            return "review"
        if score >= self.require_3ds_at:
            return "require_3ds"
        return "allow"


def _ratio_text(amount: int, median: int) -> str:
    tenths = amount * 10 // median  # integer arithmetic only: 123 -> "12.3"
    return f"{tenths // 10}.{tenths % 10}"


def _amount_reason(f: FraudFeatures) -> FraudReason | None:
    median = f.customer_median_amount_micros
    if f.customer_completed_count == 0 or median is None or median <= 0:
        return FraudReason("no_payment_history", NO_HISTORY_POINTS,
                           f"the customer has no completed {f.currency} payment to compare the amount with")
    for multiple, points in AMOUNT_BANDS:
        if f.amount_micros > multiple * median:
            return FraudReason(
                "amount_above_customer_median", points,
                f"amount is {_ratio_text(f.amount_micros, median)}x the customer's median completed payment "
                f"(more than {multiple}x, over {f.customer_completed_count} payments)",
            )
    return None


def _velocity_reasons(f: FraudFeatures) -> list[FraudReason]:
    reasons = []
    hour = min(VELOCITY_HOUR_MAX, VELOCITY_HOUR_STEP * max(0, f.payments_last_hour - VELOCITY_HOUR_FREE))
    if hour:
        reasons.append(FraudReason("velocity_last_hour", hour,
                                   f"{f.payments_last_hour} other payments by this customer in the last hour"))
    day = min(VELOCITY_DAY_MAX, VELOCITY_DAY_STEP * max(0, f.payments_last_day - VELOCITY_DAY_FREE))
    if day:
        reasons.append(FraudReason("velocity_last_day", day,
                                   f"{f.payments_last_day} other payments by this customer in the last 24 hours"))
    failed = min(FAILED_MAX, FAILED_STEP * f.prior_failed_last_day)
    if failed:
        reasons.append(FraudReason("prior_failed_payments", failed,
                                   f"{f.prior_failed_last_day} failed payments by this customer in the last 24 hours"))
    return reasons


def _payment_method_reasons(f: FraudFeatures) -> list[FraudReason]:
    reasons = []
    if f.payment_method_previous_uses == 0:
        reasons.append(FraudReason("payment_method_first_use", FIRST_USE_POINTS,
                                   "this card has never completed a payment here"))
    age = f.payment_method_age_seconds
    if age is None or age < HOUR:
        reasons.append(FraudReason("payment_method_recently_added", ADDED_WITHIN_HOUR_POINTS,
                                   "the card was added less than an hour before paying"))
    elif age < DAY:
        reasons.append(FraudReason("payment_method_recently_added", ADDED_WITHIN_DAY_POINTS,
                                   "the card was added less than a day before paying"))
    return reasons


def _country_reason(f: FraudFeatures) -> FraudReason | None:
    if f.card_country and f.customer_country and f.card_country != f.customer_country:
        return FraudReason("country_mismatch", COUNTRY_MISMATCH_POINTS,
                           f"card issued in {f.card_country}, customer in {f.customer_country}")
    return None


def _corroboration_reason(reasons: list[FraudReason]) -> FraudReason | None:
    risk = sum(r.contribution for r in reasons if r.code in RISK_CODES)
    context = [r for r in reasons if r.code in CONTEXT_CODES]
    points = min(risk, sum(r.contribution for r in context), CORROBORATION_MAX)
    if points <= 0:
        return None
    words = [_CONTEXT_WORDS[r.code] for r in sorted(context, key=lambda r: r.code)]
    listed = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
    return FraudReason(CORROBORATION_CODE, points,
                       f"{risk} points of risk signals with {listed}: counted again up to the context's "
                       f"{sum(r.contribution for r in context)} points (at most {CORROBORATION_MAX})")


def score(features: FraudFeatures, policy: FraudPolicy | None = None) -> FraudAssessment:
    """Score one payment. Never declines: the worst outcome is ``review`` (with 3-D Secure)."""
    policy = policy or FraudPolicy()
    reasons: list[FraudReason] = [
        *filter(None, [_amount_reason(features)]),
        *_velocity_reasons(features),
        *_payment_method_reasons(features),
        *filter(None, [_country_reason(features)]),
    ]
    reasons.extend(filter(None, [_corroboration_reason(reasons)]))
    total = min(MAX_SCORE, sum(r.contribution for r in reasons))
    return FraudAssessment(score=total, reasons=tuple(reasons), action=policy.action_for(total))
