"""Disputes (chargebacks): the dispute's own small state machine, and how a provider's statuses map onto it.

    needs_response ──► under_review ──► won | lost
          │  ╲
          │   ╲──► won | lost          the provider closes it without our evidence (issuer withdrew; deadline)
          └──────► accepted            finance conceded: the funds stay with the cardholder

`won`, `lost` and `accepted` are terminal: a terminal row never changes in any column (a trigger in the database
enforces the same table). `accepted` is a loss the merchant chose; `outcome()` reads it as `lost`.

Funds: the disputed amount is withdrawn when the dispute opens (an inquiry, Stripe's `warning_*`, withdraws
nothing) and reinstated only when the dispute is won.
"""

from __future__ import annotations

from enum import StrEnum


class DisputeStatus(StrEnum):
    NEEDS_RESPONSE = "needs_response"
    UNDER_REVIEW = "under_review"
    WON = "won"
    LOST = "lost"
    ACCEPTED = "accepted"

    @property
    def is_terminal(self) -> bool:
        return self in (DisputeStatus.WON, DisputeStatus.LOST, DisputeStatus.ACCEPTED)

    @property
    def accepts_evidence(self) -> bool:
        return self is DisputeStatus.NEEDS_RESPONSE


S = DisputeStatus
TRANSITIONS: dict[DisputeStatus, frozenset[DisputeStatus]] = {
    S.NEEDS_RESPONSE: frozenset({S.UNDER_REVIEW, S.WON, S.LOST, S.ACCEPTED}),
    S.UNDER_REVIEW: frozenset({S.WON, S.LOST}),
    S.WON: frozenset(),
    S.LOST: frozenset(),
    S.ACCEPTED: frozenset(),
}

# Stripe's dispute statuses → ours. Inquiries (`warning_*`) follow the same path; an inquiry closed without
# becoming a chargeback (`warning_closed`) and a prevented dispute keep the money: `won`. A dispute closed because
# the charge was refunded (`charge_refunded`) lost the money: `lost`.
PROVIDER_STATUS: dict[str, DisputeStatus] = {
    "needs_response": S.NEEDS_RESPONSE,
    "warning_needs_response": S.NEEDS_RESPONSE,
    "under_review": S.UNDER_REVIEW,
    "warning_under_review": S.UNDER_REVIEW,
    "won": S.WON,
    "warning_closed": S.WON,
    "prevented": S.WON,
    "lost": S.LOST,
    "charge_refunded": S.LOST,
}


class InvalidDisputeTransition(ValueError):
    pass


def from_provider(status: str | None) -> DisputeStatus | None:
    """Our status for a provider's dispute status; None for a status we do not know."""
    return PROVIDER_STATUS.get(status or "")


def check_transition(old: DisputeStatus, new: DisputeStatus) -> DisputeStatus:
    if new not in TRANSITIONS[old]:
        raise InvalidDisputeTransition(f"invalid dispute transition {old} -> {new}")
    return new


def moves(old: DisputeStatus, new: DisputeStatus | None) -> bool:
    """Whether news that the dispute is `new` at the provider would move ours (stale or repeated news does not)."""
    return new is not None and new in TRANSITIONS[old]


def outcome(status: DisputeStatus) -> str | None:
    """`won` | `lost` once the dispute is over (an accepted dispute is lost), else None."""
    if status is S.WON:
        return "won"
    if status in (S.LOST, S.ACCEPTED):
        return "lost"
    return None


def payment_dispute_status(statuses: list[DisputeStatus]) -> str:
    """What a payment's disputes amount to: `none`, `disputed` (one is open), `disputed_lost` (one was lost or
    accepted: the money is gone, whatever the others did) or `disputed_won` (every dispute was won)."""
    if not statuses:
        return "none"
    if any(outcome(s) == "lost" for s in statuses):
        return "disputed_lost"
    if any(not s.is_terminal for s in statuses):
        return "disputed"
    return "disputed_won"
