"""Sandbox-only: the customer's side of a 3-D Secure challenge (mounted only with the sandbox provider)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.problems import Problem
from api.schemas import AuthenticateBody

router = APIRouter(prefix="/v1/sandbox", tags=["sandbox"])


@router.post("/payment_intents/{intent_id}/authenticate")
async def authenticate_intent(intent_id: str, request: Request, body: AuthenticateBody | None = None) -> dict[str, Any]:
    outcome = (body or AuthenticateBody()).outcome
    try:
        intent = await request.app.state.sandbox.authenticate(intent_id, outcome == "succeed")
    except ValueError as exc:
        raise Problem(409, "not-awaiting-authentication", "Not awaiting authentication", str(exc)) from exc
    return {"id": intent.id, "object": "payment_intent", "status": intent.status.value}
