"""Dunning: what happens after a subscription's renewal charge fails, per tenant policy, decided by a pure planner.

The policy
----------
A ``DunningPolicy`` is a tenant's schedule: ordered stages, each a retry some time after the FIRST failure
(default: 1, 3, 5 and 7 days) with the notification sent when that retry is scheduled (a template and a tone),
then a final action: the subscription becomes ``unpaid`` or ``canceled``, and the invoice is marked
``uncollectible`` (or left open). It also bounds the personalisation hook: the UTC hours a retry may be moved
to, and the tones a notification may take.

Hard and soft declines
----------------------
A hard decline is one where trying the same card again cannot succeed or is forbidden: the card is lost,
stolen, expired, closed, not valid for the purchase, or the issuer said never to retry. Those are never retried:
the planner waits for a new payment method, and a new payment method triggers an immediate retry. If none comes
before the schedule would have ended (the first failure plus the last stage's delay), the final action applies.

``HARD_DECLINE_CODES`` classifies the card decline codes in Stripe's decline code reference
(https://docs.stripe.com/declines/codes) by the next step it gives for each: a code whose next step is another
card, corrected card details, the customer's authentication, or the issuer's refusal is hard; the card networks'
rules forbid reattempting the "never approve" group (lost, stolen, pick up, invalid account, revoked
authorisation, transaction not permitted) in any case. Stripe publishes no hard/soft split itself: this list is
ours, and a tenant's policy may replace it (``DunningPolicy.hard_declines``). The codes whose next step is to try
again later (``SOFT_DECLINE_CODES``) and codes not in the list at all (a new or provider-specific code) follow the
schedule: not knowing is no reason to give up on the customer. An ``advice_code`` of ``do_not_try_again`` or
``confirm_card_data`` makes any decline hard.

The planner
-----------
``plan_next(policy, failures, now, payment_method_updated_at=, advice=)`` is called after each failed charge and
whenever the workflow wakes up (a new payment method, the end of a wait). ``failures`` is the history of the
invoice's failed charges, oldest first: the first is the original charge (``RetryTrigger.INITIAL``), the others
are retries, each marked by what triggered it (and a scheduled retry by its stage). The answer is one
``DunningStep``:

1. a payment method added after the latest failure (in its second or later: the caller knows which came first
   and passes only a method that came after): ``retry`` now;
2. the latest decline is hard: ``wait_for_payment_method`` until the schedule's end, then ``final_action``;
3. otherwise the first stage after the last one tried whose time is after the latest failure (stages that passed
   while waiting for a payment method are skipped): ``retry`` at its time (never before ``now``); none left:
   ``final_action``.

``attempt`` numbers the charge the step asks for (the original charge was attempt 1), for ``charge_key``.

Personalisation (advisory)
--------------------------
``RetryAdvice(hour_of_day, tone, reason)`` may move a scheduled retry to another hour of the same UTC day and
change the notification's tone. The planner takes each part only within the policy's limits: the hour inside
``advice_hours`` and giving a time after the latest failure, not before ``now`` and before the next stage; the
tone in ``tones``. Anything else falls back to the policy. Every step carries an ``explanation`` of what was
chosen and why, advice accepted or refused included.

Refusals (``DunningRefused.code``): ``invalid-policy``, ``invalid-history``, ``invalid-advice``.

Public API
----------
``HARD_DECLINE_CODES``, ``SOFT_DECLINE_CODES``, ``HARD_ADVICE_CODES``, ``is_hard_decline``, ``DunningEnd``,
``Notification``, ``DunningStage``, ``FinalAction``, ``default_stages()``, ``DunningPolicy`` (``deadline``,
``nominal_retry_at``), ``RetryTrigger``, ``ChargeFailure``, ``RetryAdvice``, ``DunningAction``, ``DunningStep``,
``plan_next``, ``DunningRefused``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from domain.billing_cycle import BillingCycleRefused, iso, require_instant
from domain.refusal import Refused

# The card decline codes of the reference above whose next step is a different card, corrected details, the
# customer's own authentication, or the issuer's final word: retrying the same card without the customer cannot
# succeed, and the networks charge for and penalise reattempts of these.
HARD_DECLINE_CODES: frozenset[str] = frozenset({
    "authentication_required",  # an off-session retry cannot authenticate: the customer has to
    "card_not_supported",
    "currency_not_supported",
    "do_not_honor",
    "do_not_try_again",
    "expired_card",
    "fraudulent",
    "incorrect_cvc",
    "incorrect_number",
    "incorrect_pin",
    "incorrect_zip",
    "invalid_account",
    "invalid_cvc",
    "invalid_expiry_month",
    "invalid_expiry_year",
    "invalid_number",
    "invalid_pin",
    "lost_card",
    "merchant_blacklist",
    "new_account_information_available",
    "not_permitted",
    "offline_pin_required",
    "online_or_offline_pin_required",
    "pickup_card",
    "pin_try_exceeded",
    "restricted_card",
    "revocation_of_all_authorizations",
    "revocation_of_authorization",
    "security_violation",
    "service_not_allowed",
    "stolen_card",
    "stop_payment_order",
    "testmode_decline",
    "transaction_not_allowed",
})
# The rest of the reference: temporary or unexplained, where a later attempt on the same card can succeed.
SOFT_DECLINE_CODES: frozenset[str] = frozenset({
    "approve_with_id",
    "call_issuer",
    "card_velocity_exceeded",
    "duplicate_transaction",
    "generic_decline",
    "insufficient_funds",
    "invalid_amount",
    "issuer_not_available",
    "no_action_taken",
    "processing_error",
    "reenter_transaction",
    "try_again_later",
    "withdrawal_count_exceeded",
})
# Advice codes that accompany a decline: never try again, or ask the customer to confirm or update the card.
HARD_ADVICE_CODES: frozenset[str] = frozenset({"do_not_try_again", "confirm_card_data"})

MAX_STAGES = 8  # an issuer sees at most nine attempts (the charge and eight retries) for one invoice
MAX_SCHEDULE = timedelta(days=60)


class DunningRefused(Refused):
    """A dunning rule refused the policy, the history or the advice."""


def is_hard_decline(decline_code: str | None, advice_code: str | None = None, *,
                    hard_declines: frozenset[str] = HARD_DECLINE_CODES) -> bool:
    """Whether retrying the same payment method is pointless (see the module's rules)."""
    return decline_code in hard_declines or advice_code in HARD_ADVICE_CODES


class DunningEnd(StrEnum):
    """What the subscription becomes when dunning gives up."""

    UNPAID = "unpaid"
    CANCELED = "canceled"


@dataclass(frozen=True)
class Notification:
    template: str
    tone: str


@dataclass(frozen=True)
class DunningStage:
    retry_after: timedelta  # after the first failure
    notification: Notification


@dataclass(frozen=True)
class FinalAction:
    subscription: DunningEnd = DunningEnd.UNPAID
    mark_invoice_uncollectible: bool = True
    notification: Notification = Notification("subscription_payment_failed_final", "firm")


def default_stages() -> tuple[DunningStage, ...]:
    tones = ("neutral", "friendly", "friendly", "firm")
    return tuple(DunningStage(timedelta(days=days), Notification(f"payment_failed_retry_{n}", tone))
                 for n, (days, tone) in enumerate(zip((1, 3, 5, 7), tones, strict=True), start=1))


@dataclass(frozen=True)
class DunningPolicy:
    stages: tuple[DunningStage, ...] = field(default_factory=default_stages)
    final_action: FinalAction = field(default_factory=FinalAction)
    hard_decline_notification: Notification = Notification("update_payment_method", "neutral")
    tones: tuple[str, ...] = ("neutral", "friendly", "firm")
    advice_hours: tuple[int, int] = (8, 20)  # [start, end) in UTC hours where advice may move a retry
    accept_advice: bool = True
    hard_declines: frozenset[str] = HARD_DECLINE_CODES

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "tones", tuple(self.tones))
        object.__setattr__(self, "hard_declines", frozenset(self.hard_declines))
        if len(self.stages) > MAX_STAGES:
            raise DunningRefused("invalid-policy", f"at most {MAX_STAGES} retries")
        previous = timedelta(0)
        for stage in self.stages:
            delay = stage.retry_after
            if not isinstance(delay, timedelta) or delay <= previous or delay % timedelta(seconds=1):
                raise DunningRefused("invalid-policy", "retries come in order, each later than the one before, "
                                                       "in whole seconds after the first failure")
            previous = delay
        if previous > MAX_SCHEDULE:
            raise DunningRefused("invalid-policy", "the last retry is at most 60 days after the first failure")
        if not self.tones or any(not isinstance(t, str) or not t for t in self.tones):
            raise DunningRefused("invalid-policy", "a policy names at least one tone")
        notices = [s.notification for s in self.stages]
        notices += [self.final_action.notification, self.hard_decline_notification]
        if any(n.tone not in self.tones or not n.template for n in notices):
            raise DunningRefused("invalid-policy", "every notification has a template and one of the policy's tones")
        start, end = self.advice_hours
        if not 0 <= start < end <= 24:
            raise DunningRefused("invalid-policy", "advice_hours is [start, end) with 0 <= start < end <= 24")
        try:
            end = DunningEnd(self.final_action.subscription)
        except ValueError:
            raise DunningRefused("invalid-policy", "the final action makes the subscription unpaid or canceled") \
                from None
        object.__setattr__(self, "final_action", FinalAction(end, self.final_action.mark_invoice_uncollectible,
                                                             self.final_action.notification))

    def nominal_retry_at(self, first_failure: datetime, stage: int) -> datetime:
        """When stage ``stage`` (0-based) retries, by the schedule alone."""
        return first_failure + self.stages[stage].retry_after

    def deadline(self, first_failure: datetime) -> datetime:
        """When the schedule ends: the last retry's time (the first failure itself if there are no retries)."""
        return first_failure + (self.stages[-1].retry_after if self.stages else timedelta(0))


class RetryTrigger(StrEnum):
    INITIAL = "initial"  # the original charge of the invoice
    SCHEDULED = "scheduled"  # a retry of a stage of the schedule
    PAYMENT_METHOD_UPDATED = "payment_method_updated"  # the immediate retry on a new payment method


@dataclass(frozen=True)
class ChargeFailure:
    """A failed charge of the invoice. A scheduled retry names its (1-based) ``stage``, as its ``DunningStep`` did:
    advice may have moved it off the schedule's time, so the time alone does not say which stage it was."""

    at: datetime
    decline_code: str | None
    trigger: RetryTrigger = RetryTrigger.SCHEDULED
    advice_code: str | None = None
    stage: int | None = None


@dataclass(frozen=True)
class RetryAdvice:
    """Advice from the personalisation model: the hour (UTC) to retry at, the tone to write in, and why."""

    hour_of_day: int | None = None
    tone: str | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.hour_of_day is not None and (
                not isinstance(self.hour_of_day, int) or isinstance(self.hour_of_day, bool)
                or not 0 <= self.hour_of_day <= 23):
            raise DunningRefused("invalid-advice", "hour_of_day is 0..23")


class DunningAction(StrEnum):
    RETRY = "retry"
    WAIT_FOR_PAYMENT_METHOD = "wait_for_payment_method"
    FINAL_ACTION = "final_action"


@dataclass(frozen=True)
class DunningStep:
    """What to do next. ``at``: when to retry / until when to wait / when the final action applies."""

    action: DunningAction
    at: datetime
    explanation: str
    attempt: int | None = None  # the charge attempt a retry makes (the original charge was 1)
    stage: int | None = None  # 1-based stage of a scheduled retry
    trigger: RetryTrigger | None = None
    notification: Notification | None = None  # to send now
    final: FinalAction | None = None
    hour_advice_accepted: bool | None = None  # None: no hour was advised
    tone_advice_accepted: bool | None = None


def _check_history(failures: Sequence[ChargeFailure]) -> list[ChargeFailure]:
    history = list(failures)
    if not history:
        raise DunningRefused("invalid-history", "dunning starts with a failed charge")
    if history[0].trigger is not RetryTrigger.INITIAL or any(
            f.trigger is RetryTrigger.INITIAL for f in history[1:]):
        raise DunningRefused("invalid-history", "the first failure, and only it, is the original charge")
    try:
        times = [require_instant(f.at, "failure time") for f in history]
    except BillingCycleRefused as refused:
        raise DunningRefused("invalid-history", refused.message) from None
    if any(b < a for a, b in itertools.pairwise(times)):
        raise DunningRefused("invalid-history", "failures are given oldest first")
    stages = [f.stage for f in history if f.trigger is RetryTrigger.SCHEDULED]
    if any(s is None or s < 1 for s in stages) or any(b <= a for a, b in itertools.pairwise(stages)) or any(
            f.stage is not None for f in history if f.trigger is not RetryTrigger.SCHEDULED):
        raise DunningRefused("invalid-history", "each scheduled retry names its stage, in increasing order; other "
                                                "charges name none")
    return history


def _decline(failure: ChargeFailure) -> str:
    code = failure.decline_code or "unknown"
    return f"{code} (advice {failure.advice_code})" if failure.advice_code else code


def plan_next(policy: DunningPolicy, failures: Sequence[ChargeFailure], now: datetime, *,
              payment_method_updated_at: datetime | None = None,
              advice: RetryAdvice | None = None) -> DunningStep:
    """The next step of dunning an invoice whose charges in ``failures`` failed (see the module's rules)."""
    history = _check_history(failures)
    try:
        now = require_instant(now, "now")
        updated = None if payment_method_updated_at is None else require_instant(payment_method_updated_at)
    except BillingCycleRefused as refused:
        raise DunningRefused("invalid-history", refused.message) from None
    first, latest = history[0], history[-1]
    if now < latest.at:
        raise DunningRefused("invalid-history", "the next step is planned after the latest failure")
    attempt = len(history) + 1
    deadline = policy.deadline(first.at)
    if updated is not None and updated >= latest.at:
        return DunningStep(DunningAction.RETRY, max(now, updated),
                           f"retry now (attempt {attempt}): a new payment method was added at {iso(updated)}, "
                           f"after the latest failure ({_decline(latest)} at {iso(latest.at)})",
                           attempt=attempt, trigger=RetryTrigger.PAYMENT_METHOD_UPDATED)
    if is_hard_decline(latest.decline_code, latest.advice_code, hard_declines=policy.hard_declines):
        if now < deadline:
            notification, tone_ok, tone_why = _tone(policy, policy.hard_decline_notification, advice)
            return DunningStep(DunningAction.WAIT_FOR_PAYMENT_METHOD, deadline,
                               f"wait for a new payment method until {iso(deadline)}: {_decline(latest)} is a hard "
                               f"decline, never retried on the same card; a new payment method is retried at "
                               f"once{tone_why}", notification=notification, tone_advice_accepted=tone_ok)
        return _final(policy, now, f"no new payment method by {iso(deadline)} after the hard decline "
                                   f"{_decline(latest)}")
    tried = max((f.stage or 0 for f in history if f.trigger is RetryTrigger.SCHEDULED), default=0)
    stage = next((i for i in range(tried, len(policy.stages))
                  if policy.nominal_retry_at(first.at, i) > latest.at), None)
    if stage is None:
        return _final(policy, now, f"the {len(policy.stages)} scheduled retries are used up; the latest failure "
                                   f"was {_decline(latest)} at {iso(latest.at)}")
    nominal = policy.nominal_retry_at(first.at, stage)
    next_nominal = policy.nominal_retry_at(first.at, stage + 1) if stage + 1 < len(policy.stages) else None
    retry_at, hour_ok, hour_why = _hour(policy, nominal, latest.at, now, next_nominal, advice)
    notification, tone_ok, tone_why = _tone(policy, policy.stages[stage].notification, advice)
    late = retry_at < now
    retry_at = max(retry_at, now)
    why = (f"retry {stage + 1} of {len(policy.stages)} (attempt {attempt}) at {iso(retry_at)}: "
           f"{_decline(latest)} is a soft decline, retried on the schedule; stage {stage + 1} is "
           f"{_delay(policy.stages[stage].retry_after)} after the first failure at {iso(first.at)}"
           + (" (overdue: retrying now)" if late else "") + hour_why + tone_why)
    return DunningStep(DunningAction.RETRY, retry_at, why, attempt=attempt, stage=stage + 1,
                       trigger=RetryTrigger.SCHEDULED, notification=notification, hour_advice_accepted=hour_ok,
                       tone_advice_accepted=tone_ok)


def _final(policy: DunningPolicy, now: datetime, why: str) -> DunningStep:
    final = policy.final_action
    invoice = "marked uncollectible" if final.mark_invoice_uncollectible else "left open"
    return DunningStep(DunningAction.FINAL_ACTION, now,
                       f"final action: the subscription becomes {final.subscription}, the invoice is {invoice}; "
                       f"{why}", notification=final.notification, final=final)


def _hour(policy: DunningPolicy, nominal: datetime, latest: datetime, now: datetime, next_nominal: datetime | None,
          advice: RetryAdvice | None) -> tuple[datetime, bool | None, str]:
    if advice is None or advice.hour_of_day is None:
        return nominal, None, ""
    hour = advice.hour_of_day
    reason = f" ({advice.reason})" if advice.reason else ""
    start, end = policy.advice_hours
    candidate = nominal.replace(hour=hour, minute=0, second=0)
    refusal = None
    if not policy.accept_advice:
        refusal = "the policy takes no advice"
    elif not start <= hour < end:
        refusal = f"outside the allowed hours {start:02d}-{end:02d} UTC"
    elif candidate <= latest or candidate < now:
        refusal = "that hour of the retry's day has already passed"
    elif next_nominal is not None and candidate >= next_nominal:
        refusal = "it would reach the next stage's retry"
    if refusal:
        return nominal, False, f"; advised hour {hour:02d}:00{reason} refused: {refusal}, the schedule's time is kept"
    return candidate, True, f"; advised hour {hour:02d}:00 UTC accepted{reason}"


def _tone(policy: DunningPolicy, notification: Notification,
          advice: RetryAdvice | None) -> tuple[Notification, bool | None, str]:
    if advice is None or advice.tone is None or advice.tone == notification.tone:
        return notification, None, ""
    reason = f" ({advice.reason})" if advice.reason else ""
    if not policy.accept_advice:
        return notification, False, (f"; advised tone {advice.tone!r}{reason} refused: the policy takes no advice, "
                                     f"tone {notification.tone!r} kept")
    if advice.tone not in policy.tones:
        return notification, False, (f"; advised tone {advice.tone!r}{reason} refused: not one of the policy's "
                                     f"tones ({', '.join(policy.tones)}), tone {notification.tone!r} kept")
    return (Notification(notification.template, advice.tone), True,
            f"; advised tone {advice.tone!r} accepted{reason}")


def _delay(delay: timedelta) -> str:
    days, rest = divmod(delay // timedelta(seconds=1), 86_400)
    if rest == 0:
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{days}d {rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
