"""Refunds: how much may go back, and the refund's own small state machine.

    pending ──► succeeded | failed | canceled        (terminal states never change)

The cap — never more in total than was captured — is checked here for a clear answer and again by the
database under a lock on the payment row, which is what holds under concurrent requests.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from domain.money import Money


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self is not RefundStatus.PENDING

    @property
    def holds_funds(self) -> bool:
        """Counts against the refundable amount: a failed or canceled refund gives its share back."""
        return self in (RefundStatus.PENDING, RefundStatus.SUCCEEDED)


class RefundNotAllowed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def refundable(captured: Money, refunds: Iterable[tuple[Money, RefundStatus]]) -> Money:
    taken = sum((amount for amount, status in refunds if status.holds_funds), Money.zero(captured.currency))
    return captured - taken


def plan_refund(captured: Money, refunds: Iterable[tuple[Money, RefundStatus]], requested: Money | None) -> Money:
    """The amount to refund: `requested`, or everything still refundable when None."""
    remaining = refundable(captured, refunds)
    if remaining.is_zero():
        raise RefundNotAllowed("fully_refunded", "The payment has already been refunded in full.")
    amount = remaining if requested is None else requested
    if amount.currency != captured.currency:
        raise RefundNotAllowed("currency_mismatch", f"Refunds of this payment are in {captured.currency}.")
    if not amount.is_positive():
        raise RefundNotAllowed("invalid_amount", "A refund amount must be greater than zero.")
    if amount > remaining:
        raise RefundNotAllowed(
            "exceeds_refundable", f"At most {remaining.to_decimal_string()} {remaining.currency} can be refunded."
        )
    return amount


def settle(status: RefundStatus, outcome: RefundStatus) -> RefundStatus:
    """pending → a terminal outcome; anything else is refused."""
    if status.is_terminal:
        raise ValueError(f"refund is {status}: terminal")
    if not outcome.is_terminal:
        raise ValueError(f"{outcome} is not an outcome")
    return outcome


def refunded_and_refundable(captured: Money, refunds: Iterable[tuple[Money, RefundStatus]],
                            payment_completed: bool) -> tuple[Money, Money]:
    """(what went back, what may still go back). Only a completed payment has anything refundable."""
    refunds = list(refunds)
    refunded = sum((a for a, s in refunds if s is RefundStatus.SUCCEEDED), Money.zero(captured.currency))
    return refunded, refundable(captured, refunds) if payment_completed else Money.zero(captured.currency)
