"""Disputes (pm_card_createDispute), as in Stripe's test mode.

A dispute opens when the payment succeeds (funds withdrawn) and is announced `sandbox_dispute_delay_ms` later.
Evidence whose `uncategorized_text` is "winning_evidence" wins it and "losing_evidence" loses it once the
"issuer" has looked (the network decides it after the same delay); any other evidence stays under_review, as on
Stripe. Closing (accepting) loses it at once; a dispute left without evidence past its `due_by` is lost when
next read.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

import asyncpg

from activities.providers.base import DisputeResult
from activities.providers.sandbox import balance
from activities.providers.sandbox.events import Outgoing, dispute_event, json_object, publish
from paysaga.settings import Settings

_DECISIVE = {"winning_evidence": "won", "losing_evidence": "lost"}

# The issuer has looked at decisive evidence: under_review → its pending outcome. `{lock}` as in intents._SETTLE.
_DECIDE = """
    UPDATE sandbox.disputes SET status = pending_outcome, updated_at = now()
    WHERE dispute_id IN (
        SELECT dispute_id FROM sandbox.disputes
        WHERE status = 'under_review' AND pending_outcome IS NOT NULL
          AND updated_at <= now() - make_interval(secs => $1) AND ($2::text IS NULL OR dispute_id = $2)
        ORDER BY updated_at LIMIT $3 FOR UPDATE {lock})
    RETURNING *"""


class Disputes:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings

    async def submit_evidence(self, dispute_id: str, evidence: dict[str, str], submit: bool) -> DisputeResult:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM sandbox.disputes WHERE dispute_id = $1 FOR UPDATE", dispute_id)
            if row is None:
                raise ValueError(f"No such dispute: '{dispute_id}'")
            merged = {**json_object(row["evidence"]), **evidence}
            if row["status"] == "under_review" and submit and merged == json_object(row["evidence"]):
                return dispute_result(row)  # a retried submission whose first try went through
            _check_takes_evidence(row)
            pending = _DECISIVE.get(merged.get("uncategorized_text", "")) if submit else None
            row = await conn.fetchrow(
                """UPDATE sandbox.disputes SET evidence = $2, status = $3, pending_outcome = $4,
                       submission_count = submission_count + $5::int, updated_at = now()
                   WHERE dispute_id = $1 RETURNING *""",
                dispute_id, merged, "under_review" if submit else "needs_response", pending, int(submit))
            await publish(conn, self._settings, _announce(row, "charge.dispute.updated"))
        return dispute_result(row)

    async def accept(self, dispute_id: str) -> DisputeResult:
        row = await self._close(dispute_id)
        if row is None:
            current = await self._get(dispute_id)
            if current["status"] == "lost":
                return dispute_result(current)  # closing twice is closing once
            raise ValueError(f"Dispute {dispute_id} is {current['status']}: it cannot be closed")
        return dispute_result(row)

    async def retrieve(self, dispute_id: str) -> DisputeResult:
        row = await self._get(dispute_id)
        if row["status"] == "under_review" and row["pending_outcome"]:
            async with self._pool.acquire() as conn, conn.transaction():
                decided = await _decide(conn, self._settings, _DECIDE.format(lock=""), dispute_id, 1)
            row = decided[0] if decided else await self._get(dispute_id)
        elif row["status"] == "needs_response" and row["evidence_due_by"].timestamp() <= time.time():
            row = await self._close(dispute_id) or await self._get(dispute_id)
        return dispute_result(row)

    async def _close(self, dispute_id: str) -> asyncpg.Record | None:
        """needs_response → lost (accepted, or past its deadline), announced; None if it was not awaiting a
        response. Staged evidence never has a pending outcome; clearing it keeps that true whatever came before."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """UPDATE sandbox.disputes SET status = 'lost', pending_outcome = NULL, updated_at = now()
                   WHERE dispute_id = $1 AND status = 'needs_response' RETURNING *""", dispute_id)
            if row is not None:
                await publish(conn, self._settings, _announce(row, "charge.dispute.closed"))
        return row

    async def _get(self, dispute_id: str) -> asyncpg.Record:
        row = await self._pool.fetchrow("SELECT * FROM sandbox.disputes WHERE dispute_id = $1", dispute_id)
        if row is None:
            raise ValueError(f"No such dispute: '{dispute_id}'")
        return row


async def open_dispute(conn: asyncpg.Connection, intent: asyncpg.Record, settings: Settings) -> list[Outgoing]:
    """The cardholder disputes a succeeded payment: one dispute per intent. Returns its announcement, due after
    the dispute delay, for the caller to publish with the charge."""
    row = await conn.fetchrow(
        """INSERT INTO sandbox.disputes (dispute_id, tenant_id, intent_id, amount_minor, currency, reason, status,
               evidence_due_by)
           VALUES ($1, $2, $3, $4, $5, 'fraudulent', 'needs_response', now() + make_interval(secs => $6))
           ON CONFLICT (intent_id) DO NOTHING RETURNING *""",
        f"dp_sbx_{secrets.token_hex(12)}", intent["tenant_id"], intent["intent_id"], intent["amount_minor"],
        intent["currency"], float(settings.sandbox_dispute_evidence_seconds),
    )
    if row is None:
        return []
    # The disputed amount (and the dispute fee) leaves the balance when the dispute opens, as on Stripe.
    converted = balance.convert_minor(settings, intent["amount_minor"], intent["currency"],
                                      intent["settlement_currency"], datetime.now(UTC).date())
    await balance.record(
        conn, settings, tenant_id=intent["tenant_id"], type="adjustment", category="dispute",
        source_id=row["dispute_id"], currency=converted.currency, amount_minor=-converted.minor,
        fee_minor=settings.sandbox_dispute_fee_minor, exchange_rate=converted.exchange_rate,
        facing_minor=-intent["amount_minor"], facing_currency=intent["currency"],
        charge_id=balance.charge_id_of(intent["intent_id"]), intent_id=intent["intent_id"],
        description=f"dispute of {intent['intent_id']}")
    delay = settings.sandbox_dispute_delay_ms / 1000
    return _announce(row, "charge.dispute.created", "charge.dispute.funds_withdrawn", delay=delay)


async def decide_due_disputes(conn: asyncpg.Connection, settings: Settings, limit: int) -> int:
    """The network's part: decide up to `limit` disputes whose decisive evidence the issuer has had long enough."""
    return len(await _decide(conn, settings, _DECIDE.format(lock="SKIP LOCKED"), None, limit))


async def _decide(
    conn: asyncpg.Connection, settings: Settings, sql: str, dispute_id: str | None, limit: int
) -> list[asyncpg.Record]:
    rows = await conn.fetch(sql, settings.sandbox_settle_delay_ms / 1000, dispute_id, limit)
    events: list[Outgoing] = []
    for row in rows:
        if row["status"] == "won":
            await _reinstate(conn, settings, row)
        won = ["charge.dispute.funds_reinstated"] if row["status"] == "won" else []
        events += _announce(row, *won, "charge.dispute.closed")
    await publish(conn, settings, events)
    return rows


async def _reinstate(conn: asyncpg.Connection, settings: Settings, dispute: asyncpg.Record) -> None:
    """A won dispute gives back exactly what its opening took (amount and fee), at the same rate."""
    withdrawn = await conn.fetchrow(
        """SELECT * FROM sandbox.balance_transactions WHERE source_id = $1 AND reporting_category = 'dispute'
            AND account_id IS NULL ORDER BY seq LIMIT 1""", dispute["dispute_id"])
    if withdrawn is None:
        return
    await balance.record(
        conn, settings, tenant_id=dispute["tenant_id"], type="adjustment", category="dispute_reversal",
        source_id=dispute["dispute_id"], currency=withdrawn["currency"], amount_minor=-withdrawn["amount_minor"],
        fee_minor=-withdrawn["fee_minor"], exchange_rate=withdrawn["exchange_rate"],
        facing_minor=-withdrawn["customer_facing_amount_minor"] if withdrawn["customer_facing_currency"] else None,
        facing_currency=withdrawn["customer_facing_currency"], charge_id=withdrawn["charge_id"],
        intent_id=withdrawn["payment_intent_id"], description=f"won dispute {dispute['dispute_id']}")


def _announce(row: asyncpg.Record, *event_types: str, delay: float = 0.0) -> list[Outgoing]:
    return [Outgoing(row["tenant_id"], dispute_event(t, row), delay) for t in event_types]


def _check_takes_evidence(row: asyncpg.Record) -> None:
    overdue = row["evidence_due_by"].timestamp() <= time.time()
    if row["status"] != "needs_response" or overdue:
        raise ValueError(f"Dispute {row['dispute_id']} is {row['status']}"
                         f"{' and past its evidence deadline' if overdue else ''}: it takes no evidence")


def dispute_result(row: asyncpg.Record) -> DisputeResult:
    return DisputeResult(id=row["dispute_id"], status=row["status"], amount_minor=row["amount_minor"],
                         currency=row["currency"], reason=row["reason"], payment_intent=row["intent_id"],
                         evidence_due_by=int(row["evidence_due_by"].timestamp()))
