"""Dead letters: provider work whose retries ran out, and its replay — exactly once (API and CLI)."""

from __future__ import annotations

from typing import Any

import asyncpg
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.stores import dead_letters as store
from contracts.auth import Principal
from contracts.dead_letters import ReplayRequest, ReplayResult
from contracts.errors import NOT_REPLAYABLE
from contracts.payments import REPLAY_DEAD_LETTER_UPDATE
from paysaga.db import tenant_tx
from services import audit, temporal
from services.context import AppContext
from services.errors import Conflict, not_found


def dead_letter_json(row: Any) -> dict[str, Any]:
    return {"id": row["dlq_id"], "object": "dead_letter", "workflow_id": row["workflow_id"],
            "payment_id": row["payment_id"], "step": row["step"], "reason": row["reason"], "status": row["status"],
            "input": row["input"], "created_at": row["created_at"].isoformat(),
            "resolved_at": row["resolved_at"].isoformat() if row["resolved_at"] else None,
            "resolved_by": row["resolved_by"]}


async def list_for_tenant(ctx: AppContext, who: Principal, status: str, limit: int) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        rows = await store.list_for_tenant(conn, status, limit)
    return {"object": "list", "data": [dead_letter_json(r) for r in rows]}


async def replay_for_tenant(ctx: AppContext, who: Principal, dlq_id: str) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        workflow_id = await store.workflow_of(conn, dlq_id)
    if workflow_id is None:
        raise not_found("dead_letter", dlq_id)
    result = await replay(ctx.temporal, workflow_id, dlq_id, who.actor)
    await audit.record_tx(ctx, who, "dead_letter.replay", "dead_letter", dlq_id, workflow_id)
    return {"id": result.dlq_id, "object": "dead_letter", "status": result.status}


async def replay(client: Client, workflow_id: str, dlq_id: str, actor: str) -> ReplayResult:
    """The update id makes a retried call return the first answer."""
    try:
        return await temporal.update(client, workflow_id, REPLAY_DEAD_LETTER_UPDATE,
                                     ReplayRequest(dlq_id=dlq_id, actor=actor), update_id=f"replay-{dlq_id}",
                                     result_type=ReplayResult)
    except WorkflowUpdateFailedError as exc:
        if isinstance(exc.cause, ApplicationError) and exc.cause.type == NOT_REPLAYABLE:
            raise Conflict("dead-letter-not-replayable", "Not replayable", exc.cause.message) from exc
        raise
    except RPCError as exc:
        raise Conflict("dead-letter-not-replayable", "Not replayable",
                       "The workflow of this dead letter is no longer running.") from exc


async def list_all(pool: asyncpg.Pool, limit: int) -> list[Any]:
    """Every tenant's dead letters (the operator's view from the CLI)."""
    return await store.all_tenants(pool, limit)


async def replay_any(pool: asyncpg.Pool, client: Client, dlq_id: str, actor: str) -> ReplayResult:
    """Replay a dead letter of any tenant, found by id (the CLI)."""
    match = [r for r in await store.all_tenants(pool, 100_000) if r["dlq_id"] == dlq_id]
    if not match:
        raise not_found("dead_letter", dlq_id)
    return await replay(client, match[0]["workflow_id"], dlq_id, actor)
