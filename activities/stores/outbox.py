"""The transactional outbox: a message is written in the same transaction as the state change it announces."""

from __future__ import annotations

from typing import Any

import asyncpg


async def enqueue(
    conn: asyncpg.Connection, tenant_id: str, event_id: str, event_type: str, payload: dict[str, Any]
) -> bool:
    """Add `billing.<event_type>.v1` (subject `billing.<event_type>`); a repeated event id is a no-op."""
    return await put(conn, tenant_id, event_id, f"billing.{event_type}.v1", f"billing.{event_type}",
                     {"event_id": event_id, "type": event_type, **payload})


async def put(conn: asyncpg.Connection, tenant_id: str, event_id: str, event_type: str, subject: str,
              payload: dict[str, Any]) -> bool:
    """One message with its full type and subject; False when the event id was already written."""
    return bool(await conn.fetchval(
        """INSERT INTO paysaga.outbox (tenant_id, event_id, event_type, subject, payload)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING RETURNING true""",
        tenant_id, event_id, event_type, subject, payload,
    ))
