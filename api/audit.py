"""The audit trail, for finance (reading it is itself audited)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api import schemas
from api.deps import Ctx, Finance
from api.docs import problems
from services import audit

router = APIRouter(prefix="/v1", tags=["audit"])


@router.get("/audit", response_model=schemas.AuditList, responses=problems(400, 403))
async def list_audit(
    ctx: Ctx, who: Finance,
    action: Annotated[str | None, Query(max_length=64)] = None,
    resource_id: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    starting_after: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """Newest first; pass the last id of a page as `starting_after` for the next one."""
    return await audit.list_events(ctx, who, action=action, resource_id=resource_id, limit=limit,
                                   starting_after=starting_after)
