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
    """open → `status`, once (status guard). True when the letter is in `status` now: a step that runs again
    after its first run committed (its workflow task was retried, e.g. because a signal arrived as the workflow
    completed) answers what the first run answered. One replay per letter reaches the step (the replay's update id
    is the letter's), so the letter already being `replayed` means this replay claimed it; a letter that expired,
    or was replayed, answers False to the other status."""
    return bool(await conn.fetchval(
        """WITH claimed AS (
               UPDATE paysaga.dead_letters SET status = $2, resolved_at = now(), resolved_by = $3
                WHERE dlq_id = $1 AND status = 'open' RETURNING 1)
           SELECT EXISTS (SELECT 1 FROM claimed)
               OR EXISTS (SELECT 1 FROM paysaga.dead_letters WHERE dlq_id = $1 AND status = $2)""",
        dlq_id, status, actor))


async def list_for_tenant(conn: asyncpg.Connection, status: str, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM paysaga.dead_letters WHERE $1 = 'all' OR status = $1 ORDER BY created_at DESC LIMIT $2",
        status, limit)


async def workflow_of(conn: asyncpg.Connection, dlq_id: str) -> str | None:
    return await conn.fetchval("SELECT workflow_id FROM paysaga.dead_letters WHERE dlq_id = $1", dlq_id)


async def all_tenants(pool: asyncpg.Pool, limit: int) -> list[asyncpg.Record]:
    """Every tenant's dead letters, newest first, ids and reasons only (an operator's view)."""
    return await pool.fetch("SELECT * FROM paysaga.open_dead_letters($1)", limit)
