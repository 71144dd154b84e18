"""The inbox: inbound messages (provider webhooks) de-duplicated by their id, per tenant and source."""

from __future__ import annotations

import asyncpg


async def record(conn: asyncpg.Connection, source: str, event_id: str, event_type: str) -> bool:
    """Insert the message's row in `conn`'s tenant transaction; False if it was already there."""
    fresh = await conn.fetchval(
        """INSERT INTO paysaga.inbox (tenant_id, source, event_id, event_type)
           VALUES (paysaga.current_tenant(), $1, $2, $3) ON CONFLICT DO NOTHING RETURNING true""",
        source, event_id, event_type,
    )
    return bool(fresh)
