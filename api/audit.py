"""The audit trail: who (API key), tenant, what, when and correlation id of every access to payment-method data
and every money-moving action. Append-only in PostgreSQL (a trigger refuses UPDATE, DELETE and TRUNCATE, even by
the owner); readable by the `finance` role, and reading it is itself audited.

Rows are written inside the caller's tenant transaction, so an audit row commits together with the action it
records, or not at all.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Query, Request

from api.auth import Principal, authenticate
from api.problems import Problem
from paysaga.db import tenant_tx

router = APIRouter(prefix="/v1", tags=["audit"])
Auth = Annotated[Principal, Depends(authenticate)]

SYSTEM = "system"
REQUEST_ID_HEADER = "x-request-id"
_MAX_REQUEST_ID = 128


def request_id_of(request: Request) -> str:
    """The client's X-Request-Id when it is sane, else one made up for this request (kept on request.state so
    every audit row of one request carries the same id)."""
    existing = getattr(request.state, "audit_request_id", None)
    if existing:
        return existing
    sent = request.headers.get(REQUEST_ID_HEADER, "").strip()
    rid = sent if sent and len(sent) <= _MAX_REQUEST_ID and sent.isprintable() else f"req_{secrets.token_hex(12)}"
    request.state.audit_request_id = rid
    return rid


async def record(
    conn: asyncpg.Connection, principal: Principal | None, action: str, resource_type: str,
    resource_id: str | None, correlation_id: str | None = None, *, request_id: str | None = None,
    **details: Any,
) -> int:
    """Append one audit row in the caller's (tenant) transaction. `principal=None` records the actor 'system'.
    The correlation id defaults to the request id. Returns the audit id."""
    actor = principal.key_id if principal is not None else SYSTEM
    return await conn.fetchval(
        """INSERT INTO paysaga.audit_log (tenant_id, actor, action, resource_type, resource_id, correlation_id,
               request_id, details)
           VALUES (paysaga.current_tenant(), $1, $2, $3, $4, $5, $6, $7) RETURNING audit_id""",
        actor, action, resource_type, resource_id, correlation_id or request_id, request_id, details,
    )


async def record_tx(
    request: Request, principal: Principal, action: str, resource_type: str, resource_id: str | None,
    correlation_id: str | None = None, **details: Any,
) -> int:
    """`record` in a transaction of its own, for actions whose own write happens elsewhere (a payment's rows are
    written by its workflow): called once the action has happened."""
    async with tenant_tx(request.app.state.pool, principal.tenant_id) as conn:
        return await record(conn, principal, action, resource_type, resource_id, correlation_id,
                            request_id=request_id_of(request), **details)


def audit_json(row: Any) -> dict[str, Any]:
    return {"id": row["audit_id"], "object": "audit_event", "tenant_id": str(row["tenant_id"]),
            "actor": row["actor"], "action": row["action"], "resource_type": row["resource_type"],
            "resource_id": row["resource_id"], "correlation_id": row["correlation_id"],
            "request_id": row["request_id"], "details": row["details"], "at": row["at"].isoformat()}


@router.get("/audit")
async def list_audit(
    request: Request, who: Auth,
    action: Annotated[str | None, Query(max_length=64)] = None,
    resource_id: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    starting_after: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """Newest first; pass the last id of a page as `starting_after` for the next one. Needs the `finance` role
    (or `admin`). The read is recorded as `audit.read` in the same transaction, after the page was taken, so a
    page never contains its own read."""
    who.require("finance")
    async with tenant_tx(request.app.state.pool, who.tenant_id) as conn:
        if starting_after is not None and not await conn.fetchval(
            "SELECT true FROM paysaga.audit_log WHERE audit_id = $1", starting_after
        ):
            raise Problem(400, "invalid-cursor", "Invalid cursor", f"No audit event {starting_after}.")
        rows = await conn.fetch(
            """SELECT * FROM paysaga.audit_log
                WHERE ($1::bigint IS NULL OR audit_id < $1) AND ($2::text IS NULL OR action = $2)
                  AND ($3::text IS NULL OR resource_id = $3)
                ORDER BY audit_id DESC LIMIT $4""",
            starting_after, action, resource_id, limit + 1,
        )
        page = [audit_json(r) for r in rows[:limit]]
        await record(conn, who, "audit.read", "audit_log", None, request_id=request_id_of(request),
                     filters={k: v for k, v in {"action": action, "resource_id": resource_id,
                                                "starting_after": starting_after}.items() if v is not None},
                     returned=len(page))
    has_more = len(rows) > limit
    return {"object": "list", "data": page, "has_more": has_more,
            "next_cursor": page[-1]["id"] if has_more else None}
