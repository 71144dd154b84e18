"""The audit trail: who (API key), tenant, what, when and correlation id of every access to payment-method data
and every money-moving action. Append-only; readable by the `finance` role, and reading it is itself audited.

Rows are written inside the caller's tenant transaction, so an audit row commits together with the action it
records, or not at all.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from activities.stores import audit as store
from contracts.auth import Principal
from paysaga.db import tenant_tx
from services.context import AppContext
from services.errors import BadRequest

SYSTEM = "system"


async def record(conn: asyncpg.Connection, who: Principal | None, action: str, resource_type: str,
                 resource_id: str | None, correlation_id: str | None = None, **details: Any) -> int:
    """Append one audit row in the caller's (tenant) transaction. `who=None` records the actor 'system'.
    The correlation id defaults to the request id. Returns the audit id."""
    request_id = who.request_id if who is not None else None
    return await store.append(conn, who.key_id if who is not None else SYSTEM, action, resource_type, resource_id,
                              correlation_id or request_id, request_id, details)


async def record_tx(ctx: AppContext, who: Principal, action: str, resource_type: str, resource_id: str | None,
                    correlation_id: str | None = None, **details: Any) -> int:
    """`record` in a transaction of its own, for actions whose own write happens elsewhere (a payment's rows are
    written by its workflow): called once the action has happened."""
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        return await record(conn, who, action, resource_type, resource_id, correlation_id, **details)


def audit_json(row: Any) -> dict[str, Any]:
    return {"id": row["audit_id"], "object": "audit_event", "tenant_id": str(row["tenant_id"]),
            "actor": row["actor"], "action": row["action"], "resource_type": row["resource_type"],
            "resource_id": row["resource_id"], "correlation_id": row["correlation_id"],
            "request_id": row["request_id"], "details": row["details"], "at": row["at"].isoformat()}


async def list_events(ctx: AppContext, who: Principal, *, action: str | None, resource_id: str | None, limit: int,
                      starting_after: int | None) -> dict[str, Any]:
    """Newest first. The read is recorded as `audit.read` in the same transaction, after the page was taken, so a
    page never contains its own read."""
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        if starting_after is not None and not await store.exists(conn, starting_after):
            raise BadRequest("invalid-cursor", "Invalid cursor", f"No audit event {starting_after}.")
        rows = await store.page(conn, starting_after, action, resource_id, limit + 1)
        page = [audit_json(r) for r in rows[:limit]]
        await record(conn, who, "audit.read", "audit_log", None,
                     filters={k: v for k, v in {"action": action, "resource_id": resource_id,
                                                "starting_after": starting_after}.items() if v is not None},
                     returned=len(page))
    has_more = len(rows) > limit
    return {"object": "list", "data": page, "has_more": has_more, "next_cursor": page[-1]["id"] if has_more else None}
