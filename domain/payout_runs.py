"""The lifecycles of a payout run and of each payout it makes, and what a provider's news means for a payout.

A payout run (one PayoutWorkflow)::

    computing ──► awaiting_approval ──► paying ──► settling ──► completed
        │               ╰──► rejected | expired      ╰────────────► completed (nothing left in transit)
        ╰──► paying | completed (nothing to pay)

``awaiting_approval`` only when the tenant requires finance's approval: approved → paying, rejected → rejected,
nobody decided by the deadline → expired. Neither of the last two moves any money.

A payout (one per connected account, period and currency)::

    pending ──► in_transit ──► paid ──► failed      (a bank may return a payout days after it was paid)
       ╰───────────┴──► failed | canceled

``failed`` and ``canceled`` are terminal, and their funds go back to the seller's balance (domain/payouts.py
``payout_failed``), once. The provider's statuses (Stripe's ``pending``, ``in_transit``, ``paid``, ``failed``,
``canceled``) map one to one; news that does not move the payout forward (a repeated or late webhook) is no
move, never an error.

Pure.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    COMPUTING = "computing"
    AWAITING_APPROVAL = "awaiting_approval"
    REJECTED = "rejected"
    EXPIRED = "expired"
    PAYING = "paying"
    SETTLING = "settling"
    COMPLETED = "completed"

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.REJECTED, RunStatus.EXPIRED, RunStatus.COMPLETED)


RUN_MOVES: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.COMPUTING: frozenset({RunStatus.AWAITING_APPROVAL, RunStatus.PAYING, RunStatus.COMPLETED}),
    RunStatus.AWAITING_APPROVAL: frozenset({RunStatus.PAYING, RunStatus.REJECTED, RunStatus.EXPIRED}),
    RunStatus.PAYING: frozenset({RunStatus.SETTLING, RunStatus.COMPLETED}),
    RunStatus.SETTLING: frozenset({RunStatus.COMPLETED}),
    RunStatus.REJECTED: frozenset(),
    RunStatus.EXPIRED: frozenset(),
    RunStatus.COMPLETED: frozenset(),
}


class InvalidRunMove(ValueError):
    pass


def check_run_move(old: RunStatus, new: RunStatus) -> None:
    if new not in RUN_MOVES[old]:
        raise InvalidRunMove(f"a payout run cannot go from {old} to {new}")


class Decision(StrEnum):
    """Finance's answer to a run awaiting approval."""

    APPROVE = "approve"
    REJECT = "reject"


def after_decision(decision: Decision) -> RunStatus:
    return RunStatus.PAYING if decision is Decision.APPROVE else RunStatus.REJECTED


class PayoutStatus(StrEnum):
    PENDING = "pending"
    IN_TRANSIT = "in_transit"
    PAID = "paid"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in (PayoutStatus.FAILED, PayoutStatus.CANCELED)

    @property
    def is_settled(self) -> bool:
        """No more news is expected (a paid payout may still come back, but nobody waits for that)."""
        return self in (PayoutStatus.PAID, PayoutStatus.FAILED, PayoutStatus.CANCELED)

    @property
    def returns_funds(self) -> bool:
        return self in (PayoutStatus.FAILED, PayoutStatus.CANCELED)


PAYOUT_MOVES: dict[PayoutStatus, frozenset[PayoutStatus]] = {
    PayoutStatus.PENDING: frozenset({PayoutStatus.IN_TRANSIT, PayoutStatus.FAILED, PayoutStatus.CANCELED}),
    PayoutStatus.IN_TRANSIT: frozenset({PayoutStatus.PAID, PayoutStatus.FAILED, PayoutStatus.CANCELED}),
    PayoutStatus.PAID: frozenset({PayoutStatus.FAILED}),
    PayoutStatus.FAILED: frozenset(),
    PayoutStatus.CANCELED: frozenset(),
}


def payout_moves(old: PayoutStatus, new: PayoutStatus) -> bool:
    """Whether news that the payout is ``new`` moves a payout that is ``old`` (else it is stale or repeated)."""
    return new in PAYOUT_MOVES[old]


def from_provider(status: str | None) -> PayoutStatus | None:
    """A provider's payout status in ours; None for anything else (e.g. Stripe's event ``payout.updated``)."""
    try:
        return PayoutStatus(status) if status else None
    except ValueError:
        return None
