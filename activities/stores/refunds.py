"""Persistence of refunds: row, lifecycle event and outbox message in one transaction."""

from __future__ import annotations

from typing import Any

import asyncpg

from activities.stores import outbox
from contracts.refunds import RefundView
from domain.money import Money
from domain.payment import transition_id
from domain.refund import RefundStatus

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


async def lock_payment(conn: asyncpg.Connection, payment_id: str) -> asyncpg.Record | None:
    """The payment's status and captured amount, locked so concurrent refunds queue behind this one."""
    return await conn.fetchrow(
        "SELECT status, amount_micros, currency FROM paysaga.payments WHERE payment_id = $1 FOR NO KEY UPDATE",
        payment_id)


async def prior(conn: asyncpg.Connection, payment_id: str, currency: str) -> list[tuple[Money, RefundStatus]]:
    rows = await conn.fetch("SELECT amount_micros, status FROM paysaga.refunds WHERE payment_id = $1", payment_id)
    return [(Money(r["amount_micros"], currency), RefundStatus(r["status"])) for r in rows]


async def insert(conn: asyncpg.Connection, refund_id: str, tenant_id: str, payment_id: str, amount: Money,
                 reason: str | None, idempotency_key: str | None, workflow_id: str) -> RefundView:
    row = await conn.fetchrow(
        f"""INSERT INTO paysaga.refunds (refund_id, tenant_id, payment_id, amount_micros, currency, reason,
                idempotency_key, workflow_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {REFUND_COLUMNS}""",
        refund_id, tenant_id, payment_id, amount.micros, amount.currency, reason, idempotency_key, workflow_id,
    )
    return RefundView.model_validate(dict(row))


async def submission(conn: asyncpg.Connection, refund_id: str) -> asyncpg.Record | None:
    """What the provider needs to refund: the amount and the payment's intent."""
    return await conn.fetchrow(
        """SELECT r.amount_micros, r.currency, p.provider_intent_id FROM paysaga.refunds r
           JOIN paysaga.payments p USING (tenant_id, payment_id) WHERE r.refund_id = $1""", refund_id)


async def attach_provider_id(conn: asyncpg.Connection, refund_id: str, provider_refund_id: str | None) -> None:
    """Not a state change, so no lifecycle event."""
    await conn.execute(
        "UPDATE paysaga.refunds SET provider_refund_id = $2 WHERE refund_id = $1 AND status = 'pending' "
        "AND provider_refund_id IS NULL", refund_id, provider_refund_id)


async def lock(conn: asyncpg.Connection, refund_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT status, event_seq FROM paysaga.refunds WHERE refund_id = $1 FOR UPDATE",
                               refund_id)


async def settle(conn: asyncpg.Connection, refund_id: str, outcome: RefundStatus, failure_code: str | None,
                 seq: int, provider_refund_id: str | None) -> RefundView:
    row = await conn.fetchrow(
        f"""UPDATE paysaga.refunds SET status = $2, failure_code = $3, event_seq = $4,
                provider_refund_id = coalesce(provider_refund_id, $5)
            WHERE refund_id = $1 AND status = 'pending' RETURNING {REFUND_COLUMNS}""",
        refund_id, outcome.value, failure_code, seq, provider_refund_id,
    )
    return RefundView.model_validate(dict(row))


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
        "refund": view.model_dump(mode="json"),
    })
