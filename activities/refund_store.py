"""Persistence of refunds: row, lifecycle event and outbox message in one transaction."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from activities import outbox
from domain.payment import transition_id
from workflows.contracts import RefundView

REFUND_COLUMNS = """refund_id AS id, tenant_id::text, payment_id, amount_micros, currency, status, reason,
    provider_refund_id, failure_code, workflow_id, created_at, updated_at"""


async def fetch_refund(conn: asyncpg.Connection, refund_id: str) -> RefundView | None:
    row = await conn.fetchrow(f"SELECT {REFUND_COLUMNS} FROM paysaga.refunds WHERE refund_id = $1", refund_id)
    return RefundView.model_validate(dict(row)) if row else None


async def list_refunds(conn: asyncpg.Connection, payment_id: str) -> list[RefundView]:
    rows = await conn.fetch(
        f"SELECT {REFUND_COLUMNS} FROM paysaga.refunds WHERE payment_id = $1 ORDER BY created_at, refund_id",
        payment_id,
    )
    return [RefundView.model_validate(dict(r)) for r in rows]


async def record_refund_event(
    conn: asyncpg.Connection, view: RefundView, seq: int, old: str | None, actor: str, correlation_id: str,
    metadata: dict[str, Any],
) -> None:
    # Refund ids and payment ids never collide (re_… / pay_…), so the payment scheme of transition ids is reused.
    tid = transition_id(view.id, seq)
    event_type = f"refund.{view.status}"
    await conn.execute(
        """INSERT INTO paysaga.refund_events (transition_id, tenant_id, refund_id, seq, type, old_status, new_status,
               metadata, actor, correlation_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        tid, view.tenant_id, view.id, seq, event_type, old, view.status, metadata, actor, correlation_id,
    )
    await outbox.enqueue(conn, view.tenant_id, tid, event_type, {
        "old_status": old, "new_status": view.status, "correlation_id": correlation_id,
        "refund": json.loads(view.model_dump_json()),
    })
