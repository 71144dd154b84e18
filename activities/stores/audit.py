"""The append-only audit trail (a trigger refuses UPDATE, DELETE and TRUNCATE, even by the owner)."""

from __future__ import annotations

from typing import Any

import asyncpg


async def append(conn: asyncpg.Connection, actor: str, action: str, resource_type: str, resource_id: str | None,
                 correlation_id: str | None, request_id: str | None, details: dict[str, Any]) -> int:
    return await conn.fetchval(
        """INSERT INTO paysaga.audit_log (tenant_id, actor, action, resource_type, resource_id, correlation_id,
               request_id, details)
           VALUES (paysaga.current_tenant(), $1, $2, $3, $4, $5, $6, $7) RETURNING audit_id""",
        actor, action, resource_type, resource_id, correlation_id, request_id, details,
    )


async def exists(conn: asyncpg.Connection, audit_id: int) -> bool:
    return bool(await conn.fetchval("SELECT true FROM paysaga.audit_log WHERE audit_id = $1", audit_id))


async def page(conn: asyncpg.Connection, before: int | None, action: str | None, resource_id: str | None,
               limit: int) -> list[asyncpg.Record]:
    """Newest first; `limit` rows at most."""
    return await conn.fetch(
        """SELECT * FROM paysaga.audit_log
            WHERE ($1::bigint IS NULL OR audit_id < $1) AND ($2::text IS NULL OR action = $2)
              AND ($3::text IS NULL OR resource_id = $3)
            ORDER BY audit_id DESC LIMIT $4""",
        before, action, resource_id, limit,
    )
