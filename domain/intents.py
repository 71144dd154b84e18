"""What a provider's news about a PaymentIntent means for a payment.

News is the intent status the provider reports (`succeeded`, `processing`, `requires_action`, `canceled`) or
`declined` (a failed payment attempt). Given where the payment stands, the news either names one transition
or nothing (stale, repeated or out-of-order news):

    processing + succeeded       → mark_completed          pending + succeeded  → confirm_from_pending
    processing + declined        → mark_failed             pending + declined   → reject_from_pending
    processing + requires_action → settle_from_processing  pending + processing → mark_processing
    processing + canceled        → mark_failed             pending + canceled   → mark_canceled

The same table decides what the saga does with a webhook, a poll or a compensation's answer, and what the
webhook endpoint does before bothering the saga (`webhook_action`).
"""

from __future__ import annotations

from enum import StrEnum

from domain.payment import PaymentStatus, Transition, TransitionCommand

S = PaymentStatus
T = Transition

DECLINED = "declined"
PAYMENT_FAILED_EVENT = "payment_intent.payment_failed"
# News that settles a payment: the saga must not miss it, so news that arrives too early is retried.
OUTCOMES = frozenset({"succeeded", DECLINED, "canceled"})
CANCELED_BY_PROVIDER = "canceled_by_provider"

ON_INTENT: dict[tuple[PaymentStatus, str], Transition] = {
    (S.PROCESSING, "succeeded"): T.MARK_COMPLETED,
    (S.PROCESSING, DECLINED): T.MARK_FAILED,
    (S.PROCESSING, "requires_action"): T.SETTLE_FROM_PROCESSING,
    (S.PENDING, "succeeded"): T.CONFIRM_FROM_PENDING,
    (S.PENDING, DECLINED): T.REJECT_FROM_PENDING,
    (S.PENDING, "processing"): T.MARK_PROCESSING,
    (S.PENDING, "canceled"): T.MARK_CANCELED,
    (S.PROCESSING, "canceled"): T.MARK_FAILED,
}
# Transitions after which the customer has nothing left to do (any 3-D Secure link is stale).
CLEARS_NEXT_ACTION = frozenset({T.MARK_PROCESSING, T.CONFIRM_FROM_PENDING})


def news_of(event_type: str, intent_status: str | None) -> str:
    """The news an event carries: a failed attempt is `declined` whatever status the intent shows."""
    return DECLINED if event_type == PAYMENT_FAILED_EVENT else (intent_status or "")


def acts_on(status: PaymentStatus, news: str) -> bool:
    """Whether this news would move a payment in `status`."""
    return (status, news) in ON_INTENT


def command_for(
    status: PaymentStatus, news: str, decline_code: str | None = None, failure_message: str | None = None
) -> TransitionCommand | None:
    """The transition this news drives from `status`, with its data; None when it changes nothing."""
    transition = ON_INTENT.get((status, news))
    if transition is None:
        return None
    canceled = news == "canceled"
    return TransitionCommand(
        transition, failure_code=decline_code or (CANCELED_BY_PROVIDER if canceled else None),
        failure_message=failure_message, reason=CANCELED_BY_PROVIDER if canceled else None,
    )


class WebhookAction(StrEnum):
    """What the webhook endpoint does with news about a payment (the value is the outcome it reports)."""

    RETRY_LATER = "payment-not-submitted"  # an outcome for a payment not at the provider yet: answer 409
    NOT_SUBMITTED = "not-submitted"  # progress news the saga's own provider call already carries
    SETTLED = "settled"  # the payment is over: record the event, wake nobody
    IGNORED = "ignored"  # an event type that carries no news
    NO_OP = "no-op"  # news that would not move the payment: a signal would only cost a workflow task
    SIGNAL = "accepted"  # news the saga acts on


def after_confirm(intent_id: str | None, news: str, decline_code: str | None = None,
                  failure_message: str | None = None) -> list[TransitionCommand]:
    """What the answer to creating and confirming the intent drives from `created`, in order: a decline before
    any intent existed fails the payment; otherwise the payment is processing, and then whatever the answer
    already says (pending for 3-D Secure, completed, failed) follows from `processing`."""
    if news == DECLINED and intent_id is None:
        return [TransitionCommand(T.MARK_FAILED, failure_code=decline_code, failure_message=failure_message)]
    then = command_for(S.PROCESSING, news, decline_code, failure_message)
    return [TransitionCommand(T.MARK_PROCESSING, provider_intent_id=intent_id), *([then] if then else [])]


def webhook_action(status: PaymentStatus, news: str | None, *, sender_records_answer: bool = False
                   ) -> WebhookAction:
    """`sender_records_answer`: the payment's provider call is made by a sender that records the answer itself
    (a renewal batch's charge), so an early outcome is news it will have, not news to send again."""
    if status == S.CREATED:
        early = news in OUTCOMES and not sender_records_answer
        return WebhookAction.RETRY_LATER if early else WebhookAction.NOT_SUBMITTED
    if status.is_terminal:
        return WebhookAction.SETTLED
    if not news:
        return WebhookAction.IGNORED
    return WebhookAction.SIGNAL if acts_on(status, news) else WebhookAction.NO_OP
