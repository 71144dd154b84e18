"""Dead letters (admin): provider work whose retries ran out, and its replay — exactly once."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from api import audit
from api.auth import Principal, authenticate
from api.problems import Problem
from paysaga.db import tenant_tx
from workflows.contracts import ReplayRequest, ReplayResult
from workflows.payment import PaymentWorkflow

router = APIRouter(prefix="/v1/admin/dead_letters", tags=["admin"])
Auth = Annotated[Principal, Depends(authenticate)]


def _json(row: Any) -> dict[str, Any]:
    return {"id": row["dlq_id"], "object": "dead_letter", "workflow_id": row["workflow_id"],
            "payment_id": row["payment_id"], "step": row["step"], "reason": row["reason"], "status": row["status"],
            "input": row["input"], "created_at": row["created_at"].isoformat(),
            "resolved_at": row["resolved_at"].isoformat() if row["resolved_at"] else None,
            "resolved_by": row["resolved_by"]}


@router.get("")
async def list_dead_letters(
    request: Request, who: Auth, status: Annotated[str, Query(pattern="^(open|replayed|expired|all)$")] = "open",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    who.require("admin")
    async with tenant_tx(request.app.state.pool, who.tenant_id) as conn:
        rows = await conn.fetch(
            "SELECT * FROM paysaga.dead_letters WHERE $1 = 'all' OR status = $1 ORDER BY created_at DESC LIMIT $2",
            status, limit)
    return {"object": "list", "data": [_json(r) for r in rows]}


@router.post("/{dlq_id}/replay")
async def replay(dlq_id: str, request: Request, who: Auth) -> dict[str, Any]:
    who.require("admin")
    async with tenant_tx(request.app.state.pool, who.tenant_id) as conn:
        row = await conn.fetchrow("SELECT workflow_id FROM paysaga.dead_letters WHERE dlq_id = $1", dlq_id)
    if row is None:
        raise Problem(404, "dead-letter-not-found", "Dead letter not found", f"No dead letter {dlq_id}.")
    result = await replay_dead_letter(request.app.state.temporal, row["workflow_id"], dlq_id, f"api:{who.key_id}")
    await audit.record_tx(request, who, "dead_letter.replay", "dead_letter", dlq_id, row["workflow_id"])
    return {"id": result.dlq_id, "object": "dead_letter", "status": result.status}


async def replay_dead_letter(client: Client, workflow_id: str, dlq_id: str, actor: str) -> ReplayResult:
    """Shared by the API and `paysaga dlq replay`. The update id makes a retried call return the first answer."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        return await handle.execute_update(
            PaymentWorkflow.replay_dead_letter, ReplayRequest(dlq_id=dlq_id, actor=actor), id=f"replay-{dlq_id}",
            result_type=ReplayResult)
    except WorkflowUpdateFailedError as exc:
        if isinstance(exc.cause, ApplicationError) and exc.cause.type == "NotReplayable":
            raise Problem(409, "dead-letter-not-replayable", "Not replayable", exc.cause.message) from exc
        raise
    except RPCError as exc:
        raise Problem(409, "dead-letter-not-replayable", "Not replayable",
                      "The workflow of this dead letter is no longer running.") from exc
