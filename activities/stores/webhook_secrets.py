"""Per-rail (and per-tenant) webhook signing secrets, read before any tenant is known."""

from __future__ import annotations

import asyncpg


async def for_rail(pool: asyncpg.Pool, provider: str, tenant_id: str | None) -> list[str]:
    """The rail's provider-wide secrets, plus the named tenant's (through one narrow owner function)."""
    rows = await pool.fetch("SELECT secret FROM paysaga.webhook_secrets_for($1, $2::uuid)", provider, tenant_id)
    return [row["secret"] for row in rows]
