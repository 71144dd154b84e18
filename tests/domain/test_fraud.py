"""domain.fraud.score (explainable, advisory, never declines) and the AIClient adapters around it."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.ai_client import FALLBACK_MODEL, AIClient, BuiltinScorer, TimeBoxedAIClient
from domain.fraud import (
    ACTIONS,
    BUILTIN_MODEL,
    CONTEXT_CODES,
    RISK_CODES,
    VELOCITY_DAY_FREE,
    VELOCITY_HOUR_FREE,
    FraudAssessment,
    FraudFeatures,
    FraudPolicy,
    FraudReason,
    score,
)
from paysaga.settings import Settings

UNIT = 1_000_000
DAY = 86_400


def features(**overrides: Any) -> FraudFeatures:
    """A well-known returning customer paying their usual amount with an old, proven card: scores 0."""
    base: dict[str, Any] = dict(
        amount_micros=50 * UNIT, currency="USD", customer_median_amount_micros=40 * UNIT,
        customer_completed_count=12, payments_last_hour=0, payments_last_day=1,
        payment_method_age_seconds=90 * DAY, payment_method_previous_uses=8, card_country="GB",
        customer_country="GB", prior_failed_last_day=0,
    )
    return FraudFeatures(**{**base, **overrides})


def codes(assessment: FraudAssessment) -> dict[str, int]:
    return {r.code: r.contribution for r in assessment.reasons}


# --- the scoring table, one feature at a time -------------------------------------------------------------------
def test_a_normal_payment_scores_zero_and_is_allowed() -> None:
    a = score(features())
    assert (a.score, a.reasons, a.action, a.model) == (0, (), "allow", BUILTIN_MODEL)


@pytest.mark.parametrize(("amount", "points"), [(80, 0), (81, 10), (200, 10), (201, 20), (400, 20), (401, 30),
                                                (100_000, 30)])
def test_amount_against_the_customers_median(amount: int, points: int) -> None:
    a = score(features(amount_micros=amount * UNIT))
    assert codes(a).get("amount_above_customer_median", 0) == points
    if points:
        assert "x the customer's median" in a.reasons[0].explanation


def test_amount_ratio_is_explained_with_integer_arithmetic() -> None:
    a = score(features(amount_micros=493 * UNIT))  # 12.325x
    assert a.reasons[0].explanation.startswith("amount is 12.3x")


@pytest.mark.parametrize("overrides", [{"customer_completed_count": 0, "customer_median_amount_micros": None},
                                       {"customer_median_amount_micros": None}])
def test_no_history_is_a_flat_five(overrides: dict[str, Any]) -> None:
    a = score(features(amount_micros=10_000 * UNIT, **overrides))
    assert codes(a) == {"no_payment_history": 5}


@pytest.mark.parametrize(("hour", "points"), [(0, 0), (1, 0), (2, 5), (3, 10), (5, 20), (50, 20)])
def test_velocity_last_hour(hour: int, points: int) -> None:
    assert codes(score(features(payments_last_hour=hour, payments_last_day=hour))).get("velocity_last_hour", 0) \
        == points


@pytest.mark.parametrize(("day", "points"), [(5, 0), (6, 3), (8, 9), (10, 15), (99, 15)])
def test_velocity_last_day(day: int, points: int) -> None:
    assert codes(score(features(payments_last_day=day))).get("velocity_last_day", 0) == points


@pytest.mark.parametrize(("failed", "points"), [(0, 0), (1, 8), (2, 16), (3, 20), (30, 20)])
def test_prior_failures(failed: int, points: int) -> None:
    assert codes(score(features(prior_failed_last_day=failed))).get("prior_failed_payments", 0) == points


@pytest.mark.parametrize(("age", "uses", "expected"), [
    (None, 0, {"payment_method_first_use": 5, "payment_method_recently_added": 5}),
    (0, 0, {"payment_method_first_use": 5, "payment_method_recently_added": 5}),
    (3599, 3, {"payment_method_recently_added": 5}),
    (3600, 3, {"payment_method_recently_added": 3}),
    (DAY - 1, 0, {"payment_method_first_use": 5, "payment_method_recently_added": 3}),
    (DAY, 0, {"payment_method_first_use": 5}),
    (DAY, 1, {}),
])
def test_payment_method_novelty(age: int | None, uses: int, expected: dict[str, int]) -> None:
    assert codes(score(features(payment_method_age_seconds=age, payment_method_previous_uses=uses))) == expected


@pytest.mark.parametrize(("card", "customer", "points"), [("US", "GB", 10), ("gb", "GB ", 0), (None, "GB", 0),
                                                          ("US", None, 0), ("", "GB", 0)])
def test_country_mismatch_needs_both_countries(card: str | None, customer: str | None, points: int) -> None:
    a = score(features(card_country=card, customer_country=customer))
    assert codes(a).get("country_mismatch", 0) == points
    if points:
        assert a.reasons[0].explanation == "card issued in US, customer in GB"


def test_everything_at_once_is_capped_at_100_and_is_a_review_not_a_decline() -> None:
    a = score(features(amount_micros=10_000 * UNIT, payments_last_hour=9, payments_last_day=30,
                       prior_failed_last_day=5, payment_method_age_seconds=None, payment_method_previous_uses=0,
                       card_country="NG", customer_country="GB"))
    assert a.uncapped_score == 120 and a.score == 100
    assert a.action == "review" and a.requires_3ds and a.flagged
    assert [r.code for r in a.top_reasons] == ["amount_above_customer_median", "prior_failed_payments",
                                               "velocity_last_hour"]


def test_a_typical_card_testing_pattern_is_reviewed() -> None:
    a = score(features(customer_completed_count=0, customer_median_amount_micros=None, payments_last_hour=4,
                       payments_last_day=4, prior_failed_last_day=3, payment_method_age_seconds=60,
                       payment_method_previous_uses=0))
    assert a.score == 10 + 15 + 20 + 10 + 10 and a.action == "review"


def test_new_customer_new_card_abroad_is_allowed() -> None:
    a = score(features(customer_completed_count=0, customer_median_amount_micros=None,
                       payment_method_age_seconds=120, payment_method_previous_uses=0, card_country="US"))
    assert (a.score, a.action) == (25, "allow")


def test_new_customer_new_card_abroad_in_a_burst_gets_3ds() -> None:
    a = score(features(customer_completed_count=0, customer_median_amount_micros=None, payments_last_hour=3,
                       payments_last_day=3, payment_method_age_seconds=120, payment_method_previous_uses=0,
                       card_country="US"))
    assert codes(a) == {"velocity_last_hour": 10, "context_corroborates_risk": 10, "country_mismatch": 10,
                        "no_payment_history": 5, "payment_method_first_use": 5, "payment_method_recently_added": 5}
    assert (a.score, a.action) == (45, "require_3ds")


def test_context_counts_again_only_next_to_risk_and_at_most_the_context() -> None:
    mismatch_only = score(features(card_country="US", payments_last_hour=9, payments_last_day=9))
    assert codes(mismatch_only)["context_corroborates_risk"] == 10  # the context's own 10 points
    weak = score(features(card_country="US", payments_last_hour=2, payments_last_day=2))
    assert codes(weak)["context_corroborates_risk"] == 5  # the risk's own 5 points
    assert "context_corroborates_risk" not in codes(score(features(payments_last_hour=9, payments_last_day=9)))
    assert "context_corroborates_risk" not in codes(score(features(card_country="US")))
    reason = next(r for r in weak.reasons if r.code == "context_corroborates_risk")
    assert reason.explanation == ("5 points of risk signals with a card issued in another country: counted again "
                                  "up to the context's 10 points (at most 15)")


def test_reasons_are_sorted_by_contribution_then_code() -> None:
    a = score(features(payment_method_age_seconds=10, payment_method_previous_uses=0, card_country="FR",
                       prior_failed_last_day=1))
    assert [(r.code, r.contribution) for r in a.reasons] == [
        ("country_mismatch", 10), ("context_corroborates_risk", 8), ("prior_failed_payments", 8),
        ("payment_method_first_use", 5), ("payment_method_recently_added", 5)]
    assert a.reasons_json()[0] == {"code": "country_mismatch", "contribution": 10,
                                   "explanation": "card issued in FR, customer in GB"}


# --- policy and assessment invariants ---------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "action"), [(0, "allow"), (39, "allow"), (40, "require_3ds"),
                                               (59, "require_3ds"), (60, "review"), (100, "review")])
def test_default_policy_thresholds(value: int, action: str) -> None:
    assert FraudPolicy().action_for(value) == action


def test_policy_can_switch_reviews_off_or_require_3ds_for_everyone() -> None:
    assert FraudPolicy(require_3ds_at=40, review_at=101).action_for(100) == "require_3ds"
    assert FraudPolicy(require_3ds_at=0, review_at=101).action_for(0) == "require_3ds"


@pytest.mark.parametrize(("r3ds", "review"), [(-1, 60), (61, 60), (40, 102)])
def test_incoherent_policies_are_refused(r3ds: int, review: int) -> None:
    with pytest.raises(ValueError):
        FraudPolicy(require_3ds_at=r3ds, review_at=review)


@pytest.mark.parametrize("kwargs", [{"score": 101}, {"score": -1}, {"score": True}, {"score": 50.0},
                                    {"action": "decline"}, {"action": "block"}])
def test_an_assessment_can_never_decline_or_leave_0_to_100(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FraudAssessment(**{"score": 10, "reasons": (), "action": "allow", **kwargs})


def test_features_are_validated_and_normalised() -> None:
    with pytest.raises(ValueError):
        features(amount_micros=0)
    with pytest.raises(ValueError):
        features(payments_last_hour=-1)
    f = features(card_country=" us ", customer_country="", payment_method_age_seconds=-5)
    assert (f.card_country, f.customer_country, f.payment_method_age_seconds) == ("US", None, 0)


def test_assessment_round_trips_through_the_row_and_temporals_converter() -> None:
    a = score(features(card_country="US", prior_failed_last_day=2))
    assert FraudAssessment.from_record(a.score, a.reasons_json(), a.action) == a
    payload = pydantic_data_converter.payload_converter.to_payloads([a])
    back = pydantic_data_converter.payload_converter.from_payloads(payload, [FraudAssessment])[0]
    assert back == a and isinstance(back.reasons[0], FraudReason)


# --- properties -------------------------------------------------------------------------------------------------
counts = st.integers(min_value=0, max_value=200)
feature_strategy = st.builds(
    FraudFeatures,
    amount_micros=st.integers(min_value=1, max_value=10**15),
    currency=st.sampled_from(["USD", "EUR", "JPY"]),
    customer_median_amount_micros=st.none() | st.integers(min_value=1, max_value=10**15),
    customer_completed_count=counts,
    payments_last_hour=counts,
    payments_last_day=counts,
    payment_method_age_seconds=st.none() | st.integers(min_value=0, max_value=10**9),
    payment_method_previous_uses=counts,
    card_country=st.none() | st.sampled_from(["GB", "US", "FR", "NG"]),
    customer_country=st.none() | st.sampled_from(["GB", "US", "FR", "NG"]),
    prior_failed_last_day=counts,
)
policies = st.tuples(st.integers(0, 101), st.integers(0, 101)).map(
    lambda t: FraudPolicy(require_3ds_at=min(t), review_at=max(t)))


@given(feature_strategy, policies)
def test_bounded_explained_and_never_a_decline(f: FraudFeatures, policy: FraudPolicy) -> None:
    a = score(f, policy)
    assert 0 <= a.score <= 100
    assert a.score == min(100, sum(r.contribution for r in a.reasons))
    assert all(r.contribution > 0 and r.explanation for r in a.reasons)
    assert [r.contribution for r in a.reasons] == sorted((r.contribution for r in a.reasons), reverse=True)
    assert len({r.code for r in a.reasons}) == len(a.reasons)
    assert a.action in ACTIONS and a.action != "decline"
    assert a.action == policy.action_for(a.score)
    assert len(a.top_reasons) == min(3, len(a.reasons))


def more_suspicious(f: FraudFeatures, data: st.DataObject) -> FraudFeatures:
    """``f`` with one or more features moved in the suspicious direction, the rest unchanged."""
    changes: dict[str, Any] = {}
    bump = st.integers(min_value=0, max_value=100)
    if data.draw(st.booleans(), "raise amount"):
        changes["amount_micros"] = f.amount_micros + data.draw(st.integers(0, 10**15), "amount delta")
    if f.customer_median_amount_micros is not None and data.draw(st.booleans(), "lower median"):
        changes["customer_median_amount_micros"] = data.draw(
            st.integers(1, f.customer_median_amount_micros), "median")
    for name in ("payments_last_hour", "payments_last_day", "prior_failed_last_day"):
        if data.draw(st.booleans(), f"raise {name}"):
            changes[name] = getattr(f, name) + data.draw(bump, name)
    if data.draw(st.booleans(), "younger card"):
        age = f.payment_method_age_seconds
        changes["payment_method_age_seconds"] = data.draw(
            st.none() | st.integers(0, age if age is not None else 0), "age") if age is not None else None
    if data.draw(st.booleans(), "fewer uses"):
        changes["payment_method_previous_uses"] = data.draw(st.integers(0, f.payment_method_previous_uses), "uses")
    if f.card_country and f.customer_country and data.draw(st.booleans(), "mismatch"):
        changes["card_country"] = "ZZ"
    return dataclasses.replace(f, **changes)


@settings(max_examples=300)
@given(feature_strategy, st.data())
def test_more_suspicious_input_never_lowers_the_score_or_the_action(f: FraudFeatures, data: st.DataObject) -> None:
    worse = more_suspicious(f, data)
    policy = FraudPolicy()
    before, after = score(f, policy), score(worse, policy)
    assert after.uncapped_score >= before.uncapped_score
    assert after.score >= before.score
    assert ACTIONS.index(after.action) >= ACTIONS.index(before.action)


@given(feature_strategy, st.integers(1, 10**15), st.integers(1, 10**15))
def test_monotonic_in_the_amount_ratio(f: FraudFeatures, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert score(dataclasses.replace(f, amount_micros=low)).score <= \
        score(dataclasses.replace(f, amount_micros=high)).score


@given(feature_strategy, counts, counts)
def test_monotonic_in_velocity(f: FraudFeatures, a: int, b: int) -> None:
    low, high = sorted((a, b))
    for name in ("payments_last_hour", "payments_last_day", "prior_failed_last_day"):
        assert score(dataclasses.replace(f, **{name: low})).score <= \
            score(dataclasses.replace(f, **{name: high})).score


# --- properties of the calibration: context alone is never challenged, risk with a mismatch always is ----------
# The hard rules' default amount ceiling: above it a payment is declined before it is scored.
HARD_LIMIT_MICROS: int = Settings.model_fields["risk_max_amount_micros"].default
country_codes = st.from_regex(r"[A-Z]{2}", fullmatch=True)


@st.composite
def ordinary_first_purchases(draw: st.DrawFn) -> FraudFeatures:
    """A first purchase from anywhere: no completed payment yet, a card just added (or of unknown age) and never
    used, at most one other payment in the hour and five in the day (what the velocity signals let pass), no
    failures, any amount the hard rules let through."""
    hour = draw(st.integers(0, VELOCITY_HOUR_FREE), "other payments in the hour")
    return FraudFeatures(
        amount_micros=draw(st.integers(1, HARD_LIMIT_MICROS), "amount"),
        currency=draw(st.sampled_from(["USD", "EUR", "JPY", "BRL", "INR"]), "currency"),
        customer_median_amount_micros=None, customer_completed_count=0,
        payments_last_hour=hour, payments_last_day=draw(st.integers(hour, VELOCITY_DAY_FREE), "in the day"),
        payment_method_age_seconds=draw(st.none() | st.integers(0, DAY), "card age"),
        payment_method_previous_uses=0,
        card_country=draw(st.none() | country_codes, "card country"),
        customer_country=draw(st.none() | country_codes, "customer country"),
        prior_failed_last_day=0,
    )


@settings(max_examples=500)
@given(ordinary_first_purchases())
def test_an_ordinary_first_purchase_from_any_country_is_allowed(f: FraudFeatures) -> None:
    a = score(f, FraudPolicy())
    assert a.action == "allow", a.reasons
    assert {r.code for r in a.reasons} <= CONTEXT_CODES


@settings(max_examples=300)
@given(feature_strategy, st.data())
def test_context_without_a_risk_signal_is_never_challenged(f: FraudFeatures, data: st.DataObject) -> None:
    quiet = dataclasses.replace(
        f, payments_last_hour=min(f.payments_last_hour, VELOCITY_HOUR_FREE),
        payments_last_day=min(f.payments_last_day, VELOCITY_DAY_FREE), prior_failed_last_day=0,
        amount_micros=f.amount_micros if f.customer_median_amount_micros is None
        else data.draw(st.integers(1, 2 * f.customer_median_amount_micros), "amount at most 2x the median"))
    a = score(quiet, FraudPolicy())
    assert not {r.code for r in a.reasons} & RISK_CODES
    assert a.action == "allow", a.reasons


def with_risk_signal(f: FraudFeatures, signal: str, data: st.DataObject) -> FraudFeatures:
    """``f`` with one risk signal at full weight: a burst, repeated failures, or ten times the usual amount."""
    if signal == "burst":
        hour = data.draw(st.integers(VELOCITY_HOUR_FREE + 4, 200), "burst")
        return dataclasses.replace(f, payments_last_hour=hour, payments_last_day=max(hour, f.payments_last_day))
    if signal == "failures":
        return dataclasses.replace(f, prior_failed_last_day=data.draw(st.integers(3, 200), "failures"))
    median = data.draw(st.integers(1, HARD_LIMIT_MICROS // 11), "median")
    return dataclasses.replace(f, customer_completed_count=max(1, f.customer_completed_count),
                               customer_median_amount_micros=median,
                               amount_micros=data.draw(st.integers(10 * median + 1, HARD_LIMIT_MICROS), "10x"))


@settings(max_examples=500)
@given(feature_strategy, st.sampled_from(["burst", "failures", "amount_10x"]), st.data())
def test_a_risk_signal_with_a_country_mismatch_still_asks_for_3ds(
        f: FraudFeatures, signal: str, data: st.DataObject) -> None:
    card, customer = data.draw(st.lists(country_codes, min_size=2, max_size=2, unique=True), "countries")
    risky = with_risk_signal(dataclasses.replace(f, card_country=card, customer_country=customer), signal, data)
    a = score(risky, FraudPolicy())
    assert a.requires_3ds, a.reasons
    assert "country_mismatch" in {r.code for r in a.reasons}


# --- the AIClient adapters --------------------------------------------------------------------------------------
class SlowModel:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.cancelled = False

    async def score_payment(self, features: FraudFeatures) -> FraudAssessment:
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return FraudAssessment(score=77, reasons=(FraudReason("remote_signal", 77, "the remote model says so"),),
                               action="review", model="remote-1")


class BrokenModel:
    def __init__(self, answer: Any = None, error: Exception | None = None) -> None:
        self.answer, self.error = answer, error

    async def score_payment(self, features: FraudFeatures) -> Any:
        if self.error:
            raise self.error
        return self.answer


async def test_builtin_scorer_is_an_ai_client_wrapping_the_domain_score() -> None:
    scorer = BuiltinScorer(FraudPolicy(require_3ds_at=5, review_at=90))
    assert isinstance(scorer, AIClient)
    f = features(card_country="US")
    assert await scorer.score_payment(f) == score(f, scorer.policy)
    assert (await scorer.score_payment(f)).action == "require_3ds"


async def test_time_boxed_client_returns_the_remote_answer_in_time() -> None:
    a = await TimeBoxedAIClient(SlowModel(0.0), timeout_s=1).score_payment(features())
    assert (a.model, a.score, a.action) == ("remote-1", 77, "review")


async def test_time_boxed_client_falls_back_to_builtin_on_timeout_and_cancels_the_call() -> None:
    slow = SlowModel(5)
    f = features(card_country="US")
    loop = asyncio.get_running_loop()
    started = loop.time()
    a = await TimeBoxedAIClient(slow, timeout_s=0.05).score_payment(f)
    assert loop.time() - started < 1
    assert slow.cancelled
    assert a == dataclasses.replace(score(f), model=FALLBACK_MODEL)


@pytest.mark.parametrize("model", [
    BrokenModel(error=ConnectionError("model host unreachable")),
    BrokenModel(answer={"score": 10}),  # not a FraudAssessment
    BrokenModel(error=ValueError("action must be one of …")),  # e.g. the remote tried to "decline"
])
async def test_time_boxed_client_falls_back_on_errors_and_malformed_answers(model: BrokenModel) -> None:
    f = features(prior_failed_last_day=1)
    a = await TimeBoxedAIClient(model, timeout_s=1, fallback=BuiltinScorer()).score_payment(f)
    assert a.model == FALLBACK_MODEL and a.score == 8


async def test_time_boxed_client_does_not_swallow_cancellation() -> None:
    task = asyncio.create_task(TimeBoxedAIClient(SlowModel(5), timeout_s=10).score_payment(features()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_time_boxed_client_needs_a_positive_timeout() -> None:
    with pytest.raises(ValueError):
        TimeBoxedAIClient(BuiltinScorer(), timeout_s=0)
