"""Dunning: the tenant's schedule (default +1, +3, +5, +7 days after the first failure), hard declines never
retried but a new payment method retried at once, a final action when the schedule is spent, and advice taken
only within the policy's limits, with every step explained."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.dunning import (
    HARD_DECLINE_CODES,
    SOFT_DECLINE_CODES,
    ChargeFailure,
    DunningAction,
    DunningEnd,
    DunningPolicy,
    DunningRefused,
    DunningStage,
    DunningStep,
    FinalAction,
    Notification,
    RetryAdvice,
    RetryTrigger,
    is_hard_decline,
    plan_next,
)

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)
A = DunningAction
R = RetryTrigger

# Stripe's card decline codes (docs.stripe.com/declines/codes), written out here on purpose so that a change to
# either list in the module has to be made consciously.
STRIPE_DECLINE_CODES = {
    "authentication_required", "approve_with_id", "call_issuer", "card_not_supported", "card_velocity_exceeded",
    "currency_not_supported", "do_not_honor", "do_not_try_again", "duplicate_transaction", "expired_card",
    "fraudulent", "generic_decline", "incorrect_number", "incorrect_cvc", "incorrect_pin", "incorrect_zip",
    "insufficient_funds", "invalid_account", "invalid_amount", "invalid_cvc", "invalid_expiry_month",
    "invalid_expiry_year", "invalid_number", "invalid_pin", "issuer_not_available", "lost_card",
    "merchant_blacklist", "new_account_information_available", "no_action_taken", "not_permitted",
    "offline_pin_required", "online_or_offline_pin_required", "pickup_card", "pin_try_exceeded", "processing_error",
    "reenter_transaction", "restricted_card", "revocation_of_all_authorizations", "revocation_of_authorization",
    "security_violation", "service_not_allowed", "stolen_card", "stop_payment_order", "testmode_decline",
    "transaction_not_allowed", "try_again_later", "withdrawal_count_exceeded",
}
NAMED_HARD = {"lost_card", "stolen_card", "do_not_honor", "expired_card", "pickup_card", "fraudulent",
              "incorrect_number", "invalid_account", "card_not_supported"}


def initial(code: str | None = "insufficient_funds", at: datetime = T0) -> ChargeFailure:
    return ChargeFailure(at, code, R.INITIAL)


def test_every_stripe_decline_code_is_classified_once() -> None:
    assert HARD_DECLINE_CODES | SOFT_DECLINE_CODES == STRIPE_DECLINE_CODES
    assert not HARD_DECLINE_CODES & SOFT_DECLINE_CODES
    assert NAMED_HARD <= HARD_DECLINE_CODES
    assert {"insufficient_funds", "generic_decline", "try_again_later", "processing_error"} <= SOFT_DECLINE_CODES
    assert not is_hard_decline(None) and not is_hard_decline("something_new")  # unknown follows the schedule
    assert is_hard_decline("insufficient_funds", "do_not_try_again")
    assert is_hard_decline("generic_decline", "confirm_card_data")
    assert not is_hard_decline("generic_decline", "try_again_later")


def test_the_default_schedule_then_the_final_action() -> None:
    policy = DunningPolicy()
    failures = [initial()]
    expected = [(T0 + DAY, 1, "payment_failed_retry_1", "neutral"), (T0 + 3 * DAY, 2, "payment_failed_retry_2",
                                                                     "friendly"),
                (T0 + 5 * DAY, 3, "payment_failed_retry_3", "friendly"), (T0 + 7 * DAY, 4, "payment_failed_retry_4",
                                                                          "firm")]
    for at, stage, template, tone in expected:
        step = plan_next(policy, failures, failures[-1].at)
        assert (step.action, step.at, step.stage, step.attempt) == (A.RETRY, at, stage, stage + 1)
        assert step.notification == Notification(template, tone) and step.trigger is R.SCHEDULED
        failures.append(ChargeFailure(at, "insufficient_funds", stage=stage))
    step = plan_next(policy, failures, T0 + 7 * DAY)
    assert step.action is A.FINAL_ACTION and step.at == T0 + 7 * DAY
    assert step.final == FinalAction(DunningEnd.UNPAID, True)
    assert step.explanation == ("final action: the subscription becomes unpaid, the invoice is marked uncollectible; "
                                "the 4 scheduled retries are used up; the latest failure was insufficient_funds at "
                                "2026-03-08T10:00:00Z")


def test_the_first_step_explains_itself() -> None:
    step = plan_next(DunningPolicy(), [initial()], T0)
    assert step.explanation == ("retry 1 of 4 (attempt 2) at 2026-03-02T10:00:00Z: insufficient_funds is a soft "
                                "decline, retried on the schedule; stage 1 is 1 day after the first failure at "
                                "2026-03-01T10:00:00Z")


@pytest.mark.parametrize("code", sorted(HARD_DECLINE_CODES))
def test_a_hard_decline_is_never_retried_but_a_new_payment_method_is_retried_at_once(code: str) -> None:
    policy = DunningPolicy()
    step = plan_next(policy, [initial(code)], T0)
    assert step.action is A.WAIT_FOR_PAYMENT_METHOD and step.at == T0 + 7 * DAY
    assert step.notification == Notification("update_payment_method", "neutral")
    assert f"{code} is a hard decline" in step.explanation
    # Woken up later without a new payment method: still waiting, then the final action at the schedule's end.
    assert plan_next(policy, [initial(code)], T0 + 6 * DAY).action is A.WAIT_FOR_PAYMENT_METHOD
    final = plan_next(policy, [initial(code)], T0 + 7 * DAY)
    assert final.action is A.FINAL_ACTION and "no new payment method by 2026-03-08T10:00:00Z" in final.explanation
    # A new payment method: retried now, whenever it comes, even after the wait would have ended.
    for updated in (T0 + 2 * DAY, T0 + 9 * DAY):
        retry = plan_next(policy, [initial(code)], updated + timedelta(seconds=5), payment_method_updated_at=updated)
        assert (retry.action, retry.at, retry.attempt, retry.trigger) == (
            A.RETRY, updated + timedelta(seconds=5), 2, R.PAYMENT_METHOD_UPDATED)


@pytest.mark.parametrize("code", [*sorted(SOFT_DECLINE_CODES), None, "a_code_nobody_knows"])
def test_a_soft_or_unknown_decline_is_retried_on_the_schedule(code: str | None) -> None:
    step = plan_next(DunningPolicy(), [initial(code)], T0)
    assert (step.action, step.at, step.trigger) == (A.RETRY, T0 + DAY, R.SCHEDULED)


def test_a_payment_method_added_before_the_latest_failure_changes_nothing() -> None:
    step = plan_next(DunningPolicy(), [initial("lost_card")], T0 + DAY, payment_method_updated_at=T0 - DAY)
    assert step.action is A.WAIT_FOR_PAYMENT_METHOD


def test_after_an_immediate_retry_fails_softly_the_schedule_goes_on() -> None:
    policy = DunningPolicy()
    failures = [initial("expired_card"), ChargeFailure(T0 + 4 * DAY, "insufficient_funds",
                                                       R.PAYMENT_METHOD_UPDATED)]
    step = plan_next(policy, failures, T0 + 4 * DAY)
    # Stages 1 and 2 (days 1 and 3) are past: the next is stage 3 at day 5.
    assert (step.action, step.stage, step.at, step.attempt) == (A.RETRY, 3, T0 + 5 * DAY, 3)
    # ...and failing hard again waits until the same end of the schedule.
    failures[-1] = ChargeFailure(T0 + 4 * DAY, "stolen_card", R.PAYMENT_METHOD_UPDATED)
    assert plan_next(policy, failures, T0 + 4 * DAY).at == T0 + 7 * DAY
    # A new method after day 7, declined softly: nothing left to schedule.
    late = [initial("expired_card"), ChargeFailure(T0 + 8 * DAY, "insufficient_funds", R.PAYMENT_METHOD_UPDATED)]
    assert plan_next(policy, late, T0 + 8 * DAY).action is A.FINAL_ACTION


def test_a_stage_moved_earlier_by_advice_is_not_tried_twice() -> None:
    # Stage 1 passed while waiting for a card; stage 2 (day 3, 10:00) was advised to 09:00 and failed there: the
    # next retry is stage 3, although stage 2's own time is still ahead of that failure.
    policy = DunningPolicy()
    failures = [initial("expired_card"), ChargeFailure(T0 + 2 * DAY, "insufficient_funds", R.PAYMENT_METHOD_UPDATED)]
    step = plan_next(policy, failures, T0 + 2 * DAY, advice=RetryAdvice(9))
    assert (step.stage, step.at) == (2, datetime(2026, 3, 4, 9, 0, tzinfo=UTC))
    failures.append(ChargeFailure(step.at, "insufficient_funds", stage=step.stage))
    assert plan_next(policy, failures, step.at).stage == 3


def test_an_overdue_retry_happens_now() -> None:
    step = plan_next(DunningPolicy(), [initial()], T0 + 2 * DAY)
    assert step.at == T0 + 2 * DAY and step.stage == 1 and "overdue" in step.explanation


def test_a_policy_can_cancel_and_leave_the_invoice_open_or_retry_never() -> None:
    final = FinalAction(DunningEnd.CANCELED, False, Notification("canceled", "firm"))
    policy = DunningPolicy(stages=(), final_action=final)
    step = plan_next(policy, [initial()], T0)
    assert step.action is A.FINAL_ACTION and step.final == final
    assert step.explanation.startswith("final action: the subscription becomes canceled, the invoice is left open")
    assert plan_next(policy, [initial("lost_card")], T0).action is A.FINAL_ACTION  # no wait without a schedule


def test_a_tenant_can_replace_the_hard_decline_list() -> None:
    lenient = DunningPolicy(hard_declines=frozenset({"lost_card"}))
    assert plan_next(lenient, [initial("do_not_honor")], T0).action is A.RETRY
    assert plan_next(lenient, [initial("lost_card")], T0).action is A.WAIT_FOR_PAYMENT_METHOD


# --- advice -------------------------------------------------------------------------------------------------
def test_advice_within_the_policy_is_taken_and_explained() -> None:
    advice = RetryAdvice(hour_of_day=9, tone="friendly", reason="pays after the morning payroll")
    step = plan_next(DunningPolicy(), [initial()], T0, advice=advice)
    assert step.at == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert step.notification == Notification("payment_failed_retry_1", "friendly")
    assert (step.hour_advice_accepted, step.tone_advice_accepted) == (True, True)
    assert step.explanation.endswith("; advised hour 09:00 UTC accepted (pays after the morning payroll); advised "
                                     "tone 'friendly' accepted (pays after the morning payroll)")


@pytest.mark.parametrize("advice, why", [
    (RetryAdvice(hour_of_day=3), "outside the allowed hours 08-20 UTC"),
    (RetryAdvice(hour_of_day=20), "outside the allowed hours 08-20 UTC"),
    (RetryAdvice(tone="threatening"), "not one of the policy's tones (neutral, friendly, firm)"),
])
def test_advice_outside_the_policy_falls_back_to_it(advice: RetryAdvice, why: str) -> None:
    plain = plan_next(DunningPolicy(), [initial()], T0)
    step = plan_next(DunningPolicy(), [initial()], T0, advice=advice)
    assert (step.at, step.notification, step.stage) == (plain.at, plain.notification, plain.stage)
    assert why in step.explanation and False in (step.hour_advice_accepted, step.tone_advice_accepted)


def test_advice_cannot_move_a_retry_into_the_past_or_onto_the_next_stage() -> None:
    # A retry due at 10:00 moved to 09:00 of the same day, asked at 09:30: that hour has passed.
    step = plan_next(DunningPolicy(), [initial()], T0 + DAY - timedelta(minutes=30), advice=RetryAdvice(9))
    assert step.at == T0 + DAY and step.hour_advice_accepted is False
    assert "already passed" in step.explanation
    hourly = DunningPolicy(stages=(DunningStage(timedelta(hours=1), Notification("a", "neutral")),
                                   DunningStage(timedelta(hours=2), Notification("b", "neutral"))),
                           advice_hours=(0, 24))
    step = plan_next(hourly, [initial()], T0, advice=RetryAdvice(12))  # 12:00 >= the next stage at 12:00
    assert step.at == T0 + timedelta(hours=1) and "next stage" in step.explanation
    closed = DunningPolicy(accept_advice=False)
    step = plan_next(closed, [initial()], T0, advice=RetryAdvice(9, "friendly"))
    assert step.at == T0 + DAY and step.notification == Notification("payment_failed_retry_1", "neutral")
    assert step.explanation.count("the policy takes no advice") == 2


def test_the_advised_tone_also_reaches_the_hard_decline_notice() -> None:
    step = plan_next(DunningPolicy(), [initial("lost_card")], T0, advice=RetryAdvice(tone="friendly"))
    assert step.notification == Notification("update_payment_method", "friendly") and step.tone_advice_accepted


# --- validation ---------------------------------------------------------------------------------------------
def stage(days: float, tone: str = "neutral") -> DunningStage:
    return DunningStage(timedelta(days=days), Notification("t", tone))


@pytest.mark.parametrize("kwargs", [
    {"stages": (stage(3), stage(1))},
    {"stages": (stage(1), stage(1))},
    {"stages": (stage(0),)},
    {"stages": (stage(1.5 / 86_400),)},
    {"stages": tuple(stage(n) for n in range(1, 10))},
    {"stages": (stage(61),)},
    {"stages": (stage(1, "shouty"),)},
    {"tones": ()},
    {"advice_hours": (20, 8)},
    {"advice_hours": (0, 25)},
    {"hard_decline_notification": Notification("", "neutral")},
])
def test_invalid_policies_are_refused(kwargs: dict) -> None:
    with pytest.raises(DunningRefused) as refused:
        DunningPolicy(**kwargs)
    assert refused.value.code == "invalid-policy"


def test_invalid_histories_and_advice_are_refused() -> None:
    policy = DunningPolicy()
    for history in ([], [ChargeFailure(T0, "x", stage=1)], [initial(), initial()],
                    [initial(), ChargeFailure(T0 - DAY, "x", stage=1)],
                    [ChargeFailure(datetime(2026, 1, 1), "x", R.INITIAL)],
                    [initial(), ChargeFailure(T0 + DAY, "x")],  # a scheduled retry names its stage
                    [initial(), ChargeFailure(T0 + DAY, "x", stage=2), ChargeFailure(T0 + 2 * DAY, "x", stage=2)],
                    [initial(), ChargeFailure(T0 + DAY, "x", R.PAYMENT_METHOD_UPDATED, stage=1)]):
        with pytest.raises(DunningRefused) as refused:
            plan_next(policy, history, T0)
        assert refused.value.code == "invalid-history"
    with pytest.raises(DunningRefused) as refused:
        plan_next(policy, [initial()], T0 - DAY)
    assert refused.value.code == "invalid-history"
    with pytest.raises(DunningRefused) as refused:
        DunningPolicy(final_action=FinalAction("deleted", True))  # type: ignore[arg-type]
    assert refused.value.code == "invalid-policy"
    for hour in (24, -1, True):
        with pytest.raises(DunningRefused) as refused:
            RetryAdvice(hour_of_day=hour)  # type: ignore[arg-type]
        assert refused.value.code == "invalid-advice"


# --- properties: whole dunning runs -------------------------------------------------------------------------
CODES = st.sampled_from([*sorted(STRIPE_DECLINE_CODES), None, "unknown_code"])
SCHEDULES = st.lists(st.integers(1, 20 * 24), min_size=0, max_size=8, unique=True).map(
    lambda hours: tuple(DunningStage(timedelta(hours=h), Notification(f"n{h}", "neutral")) for h in sorted(hours)))
ADVICE = st.one_of(st.none(), st.builds(RetryAdvice, st.one_of(st.none(), st.integers(0, 23)),
                                        st.one_of(st.none(), st.sampled_from(["neutral", "friendly", "firm", "odd"])),
                                        st.just("model")))


def run(policy: DunningPolicy, codes: list[str | None], new_methods: list[bool],
        advice: list[RetryAdvice | None]) -> tuple[list[ChargeFailure], list[DunningStep]]:
    """Fail every charge with the next code; on a wait, a new payment method comes a day later if asked to."""
    failures, steps = [ChargeFailure(T0, codes[0], R.INITIAL)], []
    now, n = T0, 0
    while True:
        n += 1
        # Each new payment method (at most one a day until the schedule's end) adds a wait and a retry.
        assert n < 2 * (policy.deadline(T0) - T0).days + len(policy.stages) + 4, "dunning must end"
        updated = None
        if steps and steps[-1].action is A.WAIT_FOR_PAYMENT_METHOD:
            if new_methods[n % len(new_methods)] and now + DAY < steps[-1].at:
                updated = now + DAY
            now = updated or steps[-1].at
        step = plan_next(policy, failures, now, payment_method_updated_at=updated, advice=advice[n % len(advice)])
        steps.append(step)
        if step.action is A.FINAL_ACTION:
            return failures, steps
        if step.action is A.RETRY:
            now = step.at
            assert step.trigger is not None
            failures.append(ChargeFailure(step.at, codes[n % len(codes)], step.trigger, stage=step.stage))


@given(SCHEDULES, st.lists(CODES, min_size=1, max_size=10), st.lists(st.booleans(), min_size=1, max_size=4),
       st.lists(ADVICE, min_size=1, max_size=4))
@settings(max_examples=300)
def test_dunning_always_ends_never_retries_a_hard_decline_and_keeps_to_the_policy(
        stages: tuple[DunningStage, ...], codes: list[str | None], new_methods: list[bool],
        advice: list[RetryAdvice | None]) -> None:
    policy = DunningPolicy(stages=stages)
    failures, steps = run(policy, codes, new_methods, advice)
    assert steps[-1].action is A.FINAL_ACTION and steps[-1].final == policy.final_action
    scheduled = [s for s in steps if s.action is A.RETRY and s.trigger is R.SCHEDULED]
    assert len(scheduled) <= len(stages)
    assert [s.stage for s in scheduled] == sorted({s.stage for s in scheduled})  # each stage at most once, in order
    history = [failures[0]]
    for step in steps:
        latest = history[-1]
        if step.action is A.RETRY:
            assert step.at > latest.at
            if step.trigger is R.SCHEDULED:
                assert not is_hard_decline(latest.decline_code)  # a hard decline is never retried on schedule
                assert step.stage is not None
                nominal = policy.nominal_retry_at(T0, step.stage - 1)
                if step.hour_advice_accepted:
                    start, end = policy.advice_hours
                    assert start <= step.at.hour < end and step.at.date() == nominal.date()
                else:
                    assert step.at >= nominal
            assert step.attempt == len(history) + 1
            history.append(failures[len(history)])
        elif step.action is A.WAIT_FOR_PAYMENT_METHOD:
            assert is_hard_decline(latest.decline_code) and step.at == policy.deadline(T0)
    assert len(history) == len(failures)


@given(st.sampled_from(sorted(SOFT_DECLINE_CODES)), st.integers(0, 23), st.sampled_from(["neutral", "odd", "firm"]),
       st.integers(0, 5 * 24))
def test_refused_advice_changes_nothing_but_the_explanation(code: str, hour: int, tone: str, hours_late: int) -> None:
    policy = DunningPolicy()
    now = T0 + timedelta(hours=hours_late)
    plain = plan_next(policy, [initial(code)], now)
    advised = plan_next(policy, [initial(code)], now, advice=RetryAdvice(hour, tone, "model"))
    if advised.hour_advice_accepted is not True:
        assert advised.at == plain.at
    if advised.tone_advice_accepted is not True:
        assert advised.notification == plain.notification
    assert (advised.action, advised.stage, advised.attempt) == (plain.action, plain.stage, plain.attempt)
