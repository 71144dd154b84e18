"""Persistence of disputes: row, lifecycle event and outbox message in one transaction."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from activities.stores import outbox
from contracts.disputes import DisputeChange, DisputeInput, DisputeView
from domain.payment import transition_id

DISPUTE_COLUMNS = """dispute_id AS id, tenant_id::text, payment_id, provider, provider_dispute_id, amount_micros,
    currency, reason, status, evidence_due_by, funds_withdrawn_micros, funds_reinstated_micros, evidence,
    evidence_submitted_at, workflow_id, event_seq, created_at, updated_at, closed_at"""


async def fetch_dispute(conn: asyncpg.Connection, dispute_id: str) -> DisputeView | None:
    """By our id (dsp_…) or the provider's (dp_…, du_…)."""
    row = await conn.fetchrow(
        f"SELECT {DISPUTE_COLUMNS} FROM paysaga.disputes WHERE dispute_id = $1 OR provider_dispute_id = $1",
        dispute_id)
    return DisputeView.model_validate(dict(row)) if row else None


async def list_disputes(conn: asyncpg.Connection, payment_id: str) -> list[DisputeView]:
    rows = await conn.fetch(
        f"SELECT {DISPUTE_COLUMNS} FROM paysaga.disputes WHERE payment_id = $1 ORDER BY created_at, dispute_id",
        payment_id,
    )
    return [DisputeView.model_validate(dict(r)) for r in rows]


async def insert(conn: asyncpg.Connection, inp: DisputeInput, withdrawn_micros: int, workflow_id: str
                 ) -> DisputeView:
    row = await conn.fetchrow(
        f"""INSERT INTO paysaga.disputes (dispute_id, tenant_id, payment_id, provider, provider_dispute_id,
                amount_micros, currency, reason, evidence_due_by, funds_withdrawn_micros, workflow_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {DISPUTE_COLUMNS}""",
        inp.dispute_id, inp.tenant_id, inp.payment_id, inp.provider, inp.provider_dispute_id, inp.amount_micros,
        inp.currency, inp.reason, inp.evidence_due_by, withdrawn_micros, workflow_id,
    )
    return DisputeView.model_validate(dict(row))


async def lock(conn: asyncpg.Connection, dispute_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT status, event_seq FROM paysaga.disputes WHERE dispute_id = $1 FOR UPDATE",
                               dispute_id)


async def apply_change(conn: asyncpg.Connection, change: DisputeChange, status: str, seq: int) -> DisputeView:
    row = await conn.fetchrow(
        f"""UPDATE paysaga.disputes SET status = $2, event_seq = $3, evidence = coalesce($4, evidence),
                evidence_submitted_at = CASE WHEN $5 THEN now() ELSE evidence_submitted_at END,
                funds_withdrawn_micros = coalesce($6, funds_withdrawn_micros),
                funds_reinstated_micros = coalesce($7, funds_reinstated_micros)
            WHERE dispute_id = $1 RETURNING {DISPUTE_COLUMNS}""",
        change.dispute_id, status, seq, change.evidence, change.evidence_submitted, change.funds_withdrawn_micros,
        change.funds_reinstated_micros,
    )
    return DisputeView.model_validate(dict(row))


async def record_dispute_event(
    conn: asyncpg.Connection, view: DisputeView, seq: int, old: str | None, event: str, actor: str,
    correlation_id: str, metadata: dict[str, Any],
) -> None:
    """`event` is the lifecycle event's name (`dispute.under_review`, `dispute.evidence_staged`, …); the outbox
    message is `billing.<event>.v1`."""
    # Dispute ids (dsp_…) never collide with payment or refund ids, so the scheme of transition ids is reused.
    tid = transition_id(view.id, seq)
    await conn.execute(
        """INSERT INTO paysaga.dispute_events (transition_id, tenant_id, dispute_id, seq, type, old_status,
               new_status, metadata, actor, correlation_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        tid, view.tenant_id, view.id, seq, event, old, view.status, metadata, actor, correlation_id,
    )
    await outbox.enqueue(conn, view.tenant_id, tid, event, {
        "old_status": old, "new_status": view.status, "correlation_id": correlation_id, "metadata": metadata,
        "dispute": outbox_view(view),
    })


def outbox_view(view: DisputeView) -> dict[str, Any]:
    """The dispute as other systems see it: evidence is named, not copied (it may hold the customer's details)."""
    body = json.loads(view.model_dump_json(exclude={"evidence"}))
    body["evidence_fields"] = sorted(view.evidence)
    return body


async def list_page(conn: asyncpg.Connection, limit: int, starting_after: str | None, status: str | None,
                    payment_id: str | None) -> tuple[list[DisputeView], bool]:
    """Newest first, keyset-paginated after the dispute `starting_after`, optionally of one status or payment;
    (page, has_more). LookupError if the cursor names no dispute."""
    cursor = None
    if starting_after:
        cursor = await conn.fetchrow(
            "SELECT created_at, dispute_id FROM paysaga.disputes WHERE dispute_id = $1", starting_after)
        if cursor is None:
            raise LookupError(starting_after)
    rows = await conn.fetch(
        f"""SELECT {DISPUTE_COLUMNS} FROM paysaga.disputes
            WHERE ($1::timestamptz IS NULL OR (created_at, dispute_id) < ($1, $2))
              AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR payment_id = $4)
            ORDER BY created_at DESC, dispute_id DESC LIMIT $5""",
        cursor["created_at"] if cursor else None, cursor["dispute_id"] if cursor else None, status, payment_id,
        limit + 1,
    )
    return [DisputeView.model_validate(dict(r)) for r in rows[:limit]], len(rows) > limit
