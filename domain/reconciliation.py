"""What the provider's view of a stuck payment means for it: the transition reconciliation drives.

    pending    + succeeded        → confirm_from_pending
    pending    + declined/canceled → reject_from_pending
    processing + requires_action  → settle_from_processing
    processing + succeeded        → reconcile (→ completed)
    processing + declined         → reconcile (→ failed)

Anything else (the provider still working on it) changes nothing: the payment stays where it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.payment import PaymentStatus


@dataclass(frozen=True)
class Decision:
    transition: str
    outcome: PaymentStatus | None = None  # for `reconcile`


def decide(status: PaymentStatus, provider_status: str) -> Decision | None:
    if status == PaymentStatus.PENDING:
        if provider_status == "succeeded":
            return Decision("confirm_from_pending")
        if provider_status in ("declined", "canceled"):
            return Decision("reject_from_pending")
    if status == PaymentStatus.PROCESSING:
        if provider_status == "requires_action":
            return Decision("settle_from_processing")
        if provider_status == "succeeded":
            return Decision("reconcile", PaymentStatus.COMPLETED)
        if provider_status == "declined":
            return Decision("reconcile", PaymentStatus.FAILED)
    return None
