"""Sandbox-only: the customer's side of a 3-D Secure challenge (mounted only with the sandbox provider)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import StringConstraints

from api.deps import Ctx
from api.docs import problems
from api.schemas import SandboxIntent
from contracts.common import Body
from services import sandbox

router = APIRouter(prefix="/v1/sandbox", tags=["sandbox"])


class AuthenticateBody(Body):
    outcome: Annotated[str, StringConstraints(pattern=r"^(succeed|fail)$")] = "succeed"


@router.post("/payment_intents/{intent_id}/authenticate", response_model=SandboxIntent, responses=problems(404, 409))
async def authenticate_intent(intent_id: str, ctx: Ctx, body: AuthenticateBody | None = None) -> dict[str, Any]:
    return await sandbox.authenticate(ctx, intent_id, (body or AuthenticateBody()).outcome == "succeed")
