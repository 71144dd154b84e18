"""What the provider's view of a stuck payment means for it: the transition reconciliation drives.

    pending    + succeeded         → confirm_from_pending
    pending    + declined/canceled → reject_from_pending
    processing + requires_action   → settle_from_processing
    processing + succeeded         → reconcile (→ completed)
    processing + declined          → reconcile (→ failed)

Anything else (the provider still working on it) changes nothing: the payment stays where it is.
"""

from __future__ import annotations

from domain.payment import PaymentStatus, Transition, TransitionCommand

S = PaymentStatus
T = Transition
# A failure the provider reported without a code is still a decline.
DEFAULT_DECLINE = "declined"


def decide(
    status: PaymentStatus, provider_status: str, decline_code: str | None = None,
    failure_message: str | None = None,
) -> TransitionCommand | None:
    failure = {"failure_code": decline_code or DEFAULT_DECLINE, "failure_message": failure_message or ""}
    if status == S.PENDING:
        if provider_status == "succeeded":
            return TransitionCommand(T.CONFIRM_FROM_PENDING)
        if provider_status in ("declined", "canceled"):
            return TransitionCommand(T.REJECT_FROM_PENDING, **failure)
    if status == S.PROCESSING:
        if provider_status == "requires_action":
            return TransitionCommand(T.SETTLE_FROM_PROCESSING)
        if provider_status == "succeeded":
            return TransitionCommand(T.RECONCILE, outcome=S.COMPLETED)
        if provider_status == "declined":
            return TransitionCommand(T.RECONCILE, outcome=S.FAILED, **failure)
    return None
