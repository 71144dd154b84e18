"""Disputes (pm_card_createDispute), as in Stripe's test mode.

A dispute opens when the payment succeeds (funds withdrawn) and is announced after a short delay. Evidence whose
`uncategorized_text` is "winning_evidence" wins it and "losing_evidence" loses it once the "issuer" has looked
(after sandbox_settle_delay_ms); any other evidence stays under_review, as on Stripe. Closing (accepting) loses
it at once; a dispute left without evidence past its `due_by` is lost when next read.
"""

from __future__ import annotations

import secrets
import time

import asyncpg

from activities.providers.base import DisputeResult
from activities.providers.sandbox.events import dispute_event, json_object
from activities.providers.sandbox.network import Deliveries
from paysaga.settings import Settings

_DECISIVE = {"winning_evidence": "won", "losing_evidence": "lost"}


class Disputes:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, deliveries: Deliveries) -> None:
        self._pool = pool
        self._settings = settings
        self._deliveries = deliveries

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
        self._deliveries.send([dispute_event("charge.dispute.updated", row)])
        if pending is not None:
            self._deliveries.later(lambda: self._decide(dispute_id))
        return dispute_result(row)

    async def accept(self, dispute_id: str) -> DisputeResult:
        row = await self._pool.fetchrow(
            """UPDATE sandbox.disputes SET status = 'lost', pending_outcome = NULL, updated_at = now()
               WHERE dispute_id = $1 AND status = 'needs_response' RETURNING *""", dispute_id)
        if row is None:
            current = await self._get(dispute_id)
            if current["status"] == "lost":
                return dispute_result(current)  # closing twice is closing once
            raise ValueError(f"Dispute {dispute_id} is {current['status']}: it cannot be closed")
        self._deliveries.send([dispute_event("charge.dispute.closed", row)])
        return dispute_result(row)

    async def retrieve(self, dispute_id: str) -> DisputeResult:
        row = await self._get(dispute_id)
        due = row["updated_at"].timestamp() + self._settings.sandbox_settle_delay_ms / 1000
        if row["status"] == "under_review" and row["pending_outcome"] and time.time() >= due:
            row = await self._decide(dispute_id) or await self._get(dispute_id)
        elif row["status"] == "needs_response" and row["evidence_due_by"].timestamp() <= time.time():
            closed = await self._pool.fetchrow(
                """UPDATE sandbox.disputes SET status = 'lost', updated_at = now()
                   WHERE dispute_id = $1 AND status = 'needs_response' RETURNING *""", dispute_id)
            if closed is not None:
                self._deliveries.send([dispute_event("charge.dispute.closed", closed)])
            row = closed or await self._get(dispute_id)
        return dispute_result(row)

    async def open(self, intent: asyncpg.Record) -> None:
        """The cardholder disputes a succeeded payment: one dispute per intent, announced after a short delay."""
        row = await self._pool.fetchrow(
            """INSERT INTO sandbox.disputes (dispute_id, tenant_id, intent_id, amount_minor, currency, reason, status,
                   evidence_due_by)
               VALUES ($1, $2, $3, $4, $5, 'fraudulent', 'needs_response', now() + make_interval(secs => $6))
               ON CONFLICT (intent_id) DO NOTHING RETURNING *""",
            f"dp_sbx_{secrets.token_hex(12)}", intent["tenant_id"], intent["intent_id"], intent["amount_minor"],
            intent["currency"], float(self._settings.sandbox_dispute_evidence_seconds),
        )
        if row is not None:
            self._deliveries.later(lambda: self._announce(row))

    async def _announce(self, row: asyncpg.Record) -> None:
        self._deliveries.send([dispute_event("charge.dispute.created", row),
                               dispute_event("charge.dispute.funds_withdrawn", row)])

    async def _decide(self, dispute_id: str) -> asyncpg.Record | None:
        row = await self._pool.fetchrow(
            """UPDATE sandbox.disputes SET status = pending_outcome, updated_at = now()
               WHERE dispute_id = $1 AND status = 'under_review' AND pending_outcome IS NOT NULL RETURNING *""",
            dispute_id)
        if row is not None:
            won = ["charge.dispute.funds_reinstated"] if row["status"] == "won" else []
            self._deliveries.send([dispute_event(t, row) for t in [*won, "charge.dispute.closed"]])
        return row

    async def _get(self, dispute_id: str) -> asyncpg.Record:
        row = await self._pool.fetchrow("SELECT * FROM sandbox.disputes WHERE dispute_id = $1", dispute_id)
        if row is None:
            raise ValueError(f"No such dispute: '{dispute_id}'")
        return row


def _check_takes_evidence(row: asyncpg.Record) -> None:
    overdue = row["evidence_due_by"].timestamp() <= time.time()
    if row["status"] != "needs_response" or overdue:
        raise ValueError(f"Dispute {row['dispute_id']} is {row['status']}"
                         f"{' and past its evidence deadline' if overdue else ''}: it takes no evidence")


def dispute_result(row: asyncpg.Record) -> DisputeResult:
    return DisputeResult(id=row["dispute_id"], status=row["status"], amount_minor=row["amount_minor"],
                         currency=row["currency"], reason=row["reason"], payment_intent=row["intent_id"],
                         evidence_due_by=int(row["evidence_due_by"].timestamp()))
