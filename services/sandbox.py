"""The embedded sandbox provider's customer side: answering a 3-D Secure challenge."""

from __future__ import annotations

from typing import Any

from services.context import AppContext
from services.errors import Conflict, NotFound


async def authenticate(ctx: AppContext, intent_id: str, succeed: bool) -> dict[str, Any]:
    if ctx.sandbox is None:
        raise NotFound("not-found", "Not found", "The sandbox provider is not configured.")
    try:
        intent = await ctx.sandbox.authenticate(intent_id, succeed)
    except ValueError as exc:
        raise Conflict("not-awaiting-authentication", "Not awaiting authentication", str(exc)) from exc
    return {"id": intent.id, "object": "payment_intent", "status": intent.status.value}
