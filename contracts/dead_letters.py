"""Dead letters: provider steps whose retries ran out, parked until an operator replays them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class DeadLetter(BaseModel):
    tenant_id: str
    dlq_id: str
    workflow_id: str
    payment_id: str | None = None
    step: str
    reason: str
    input: dict[str, Any]


class ReplayRequest(BaseModel):
    dlq_id: str
    actor: str = "operator"
    tenant_id: str | None = None  # filled in by the workflow, which knows its tenant


class ReplayResult(BaseModel):
    dlq_id: str
    status: str
