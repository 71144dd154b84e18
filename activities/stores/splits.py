"""Reversals of split charges: what refunds and disputes took back so far, read from the ledger, and their entries
(domain/connect.py: the fee and the seller's share taken back proportionally, rounded cumulatively).

The caller holds the payment's row lock (payments.lock_split), so reversals of one charge are computed one after
the other and each steps from what the previous ones took back.
"""

from __future__ import annotations

import asyncpg

from domain.connect import (
    Clawback,
    Reversed,
    SplitCharge,
    seller_payable,
    split_dispute_funds_reinstated,
    split_dispute_funds_withdrawn,
    split_refund_succeeded,
)
from domain.ledger import AccountCode, JournalEntry, Line, cash, dispute_funds_withdrawn, single
from domain.money import Money

REVERSING_EVENTS = ["refund.succeeded", "dispute.funds_withdrawn", "dispute.funds_reinstated"]


async def reversed_so_far(conn: asyncpg.Connection, split: SplitCharge, provider: str) -> Reversed:
    """Refunds and lost disputes of the charge, less reinstated ones: the amount (off the provider's cash) and the
    fee (back from platform_fees) of their entries."""
    c = split.currency
    cash_id, fees_id = cash(provider, c).account_id, single(AccountCode.PLATFORM_FEES, c).account_id
    row = await conn.fetchrow(
        """SELECT coalesce(sum(l.amount_micros) FILTER (WHERE l.account_id = $3), 0)::bigint AS cash,
                  coalesce(sum(l.amount_micros) FILTER (WHERE l.account_id = $4), 0)::bigint AS fees
             FROM paysaga.journal_entries e JOIN paysaga.journal_lines l USING (tenant_id, entry_id)
            WHERE e.event = ANY($2::text[])
              AND ((e.source_type = 'refund'
                    AND e.source_id IN (SELECT refund_id FROM paysaga.refunds WHERE payment_id = $1))
                OR (e.source_type = 'dispute'
                    AND e.source_id IN (SELECT dispute_id FROM paysaga.disputes WHERE payment_id = $1)))""",
        split.charge_id, REVERSING_EVENTS, cash_id, fees_id)
    return Reversed(Money(-row["cash"], c), Money(row["fees"], c))


async def refund_entry(conn: asyncpg.Connection, refund_id: str, split: SplitCharge, provider: str, amount: Money
                       ) -> JournalEntry:
    before = await reversed_so_far(conn, split, provider)
    posted, _ = split_refund_succeeded(refund_id, split, provider, amount, before)
    return posted


async def withdrawal_entry(conn: asyncpg.Connection, dispute_id: str, split: SplitCharge, provider: str,
                           amount: Money) -> JournalEntry:
    """A dispute's withdrawal, taken back from fee and share. A dispute for more than is left of the charge after
    its refunds (providers allow it) takes back what is left; the rest is the platform's chargeback."""
    before = await reversed_so_far(conn, split, provider)
    left = split.amount - before.amount
    taken = min(amount, left)
    if not taken.is_positive():
        return dispute_funds_withdrawn(dispute_id, provider, amount)
    posted, _ = split_dispute_funds_withdrawn(dispute_id, split, provider, taken, before)
    if taken == amount:
        return posted
    extra = dispute_funds_withdrawn(dispute_id, provider, amount - taken)
    return JournalEntry(posted.entry_id, posted.source_type, posted.source_id, posted.event,
                        posted.lines + extra.lines, posted.memo)


async def reinstatement_entry(conn: asyncpg.Connection, dispute_id: str, split: SplitCharge, provider: str,
                              amount: Money) -> JournalEntry:
    """A won dispute gives back what its withdrawal took (its fee and share lines), as it was taken."""
    c = split.currency
    rows = await conn.fetch(
        """SELECT l.account_id, l.amount_micros FROM paysaga.journal_entries e
             JOIN paysaga.journal_lines l USING (tenant_id, entry_id)
            WHERE e.source_type = 'dispute' AND e.source_id = $1 AND e.event = 'dispute.funds_withdrawn'""",
        dispute_id)
    by_account = {r["account_id"]: r["amount_micros"] for r in rows}
    fee = Money(by_account.get(single(AccountCode.PLATFORM_FEES, c).account_id, 0), c)
    share = Money(by_account.get(seller_payable(split.destination, c).account_id, 0), c)
    reinstated = split_dispute_funds_reinstated(dispute_id, split, provider, Clawback(fee, share))
    rest = amount - fee - share
    if not rest.is_positive():
        return reinstated
    return JournalEntry(reinstated.entry_id, reinstated.source_type, reinstated.source_id, reinstated.event,
                        (*reinstated.lines, Line(cash(provider, c), rest.micros),
                         Line(single(AccountCode.CHARGEBACKS, c), -rest.micros)),
                        reinstated.memo)
