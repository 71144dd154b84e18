"""Dead letters (admin): provider work whose retries ran out, and its replay — exactly once."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api import schemas
from api.deps import Admin, Ctx
from api.docs import problems
from services import dead_letters

router = APIRouter(prefix="/v1/admin/dead_letters", tags=["admin"])


@router.get("", response_model=schemas.DeadLetterList, responses=problems(403))
async def list_dead_letters(
    ctx: Ctx, who: Admin, status: Annotated[str, Query(pattern="^(open|replayed|expired|all)$")] = "open",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    return await dead_letters.list_for_tenant(ctx, who, status, limit)


@router.post("/{dlq_id}/replay", response_model=schemas.Replayed, responses=problems(403, 404, 409))
async def replay(dlq_id: str, ctx: Ctx, who: Admin) -> dict[str, Any]:
    return await dead_letters.replay_for_tenant(ctx, who, dlq_id)
