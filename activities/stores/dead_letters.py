"""Dead letters: provider steps whose retries ran out, with the reason and the input, until replayed."""

from __future__ import annotations

import asyncpg

from contracts.dead_letters import DeadLetter


async def insert(conn: asyncpg.Connection, letter: DeadLetter) -> None:
    await conn.execute(
        """INSERT INTO paysaga.dead_letters (dlq_id, tenant_id, workflow_id, payment_id, step, reason, input)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
        letter.dlq_id, letter.tenant_id, letter.workflow_id, letter.payment_id, letter.step, letter.reason,
        letter.input,
    )


async def resolve(conn: asyncpg.Connection, dlq_id: str, status: str, actor: str) -> bool:
    """open → `status`, once: the status guard makes a second claim of the same letter a no-op (False)."""
    return bool(await conn.fetchval(
        """UPDATE paysaga.dead_letters SET status = $2, resolved_at = now(), resolved_by = $3
           WHERE dlq_id = $1 AND status = 'open' RETURNING true""", dlq_id, status, actor))


async def list_for_tenant(conn: asyncpg.Connection, status: str, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM paysaga.dead_letters WHERE $1 = 'all' OR status = $1 ORDER BY created_at DESC LIMIT $2",
        status, limit)


async def workflow_of(conn: asyncpg.Connection, dlq_id: str) -> str | None:
    return await conn.fetchval("SELECT workflow_id FROM paysaga.dead_letters WHERE dlq_id = $1", dlq_id)


async def all_tenants(pool: asyncpg.Pool, limit: int) -> list[asyncpg.Record]:
    """Every tenant's dead letters, newest first, ids and reasons only (an operator's view)."""
    return await pool.fetch("SELECT * FROM paysaga.open_dead_letters($1)", limit)
