"""Disputes: read them; finance answers them with evidence or concedes them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header

from api.deps import Caller, Ctx, Finance
from contracts.disputes import AcceptBody, DisputeEvidence
from services import disputes

router = APIRouter(prefix="/v1", tags=["disputes"])


@router.get("/disputes/{dispute_id}")
async def get_dispute(dispute_id: str, ctx: Ctx, who: Caller) -> dict[str, Any]:
    """A dispute, by our id (`dsp_…`) or the provider's."""
    return await disputes.get(ctx, who, dispute_id)


@router.get("/payments/{payment_id}/disputes")
async def list_payment_disputes(payment_id: str, ctx: Ctx, who: Caller) -> dict[str, Any]:
    return await disputes.list_for_payment(ctx, who, payment_id)


@router.post("/disputes/{dispute_id}/evidence")
async def submit_evidence(
    dispute_id: str, body: DisputeEvidence, ctx: Ctx, who: Finance,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> dict[str, Any]:
    """Finance's evidence → the DisputeWorkflow → the provider. 409 once the dispute takes no more evidence."""
    return await disputes.submit_evidence(ctx, who, dispute_id, body, idempotency_key)


@router.post("/disputes/{dispute_id}/accept")
async def accept_dispute(dispute_id: str, ctx: Ctx, who: Finance, body: AcceptBody | None = None) -> dict[str, Any]:
    """Concede the dispute: the provider closes it as lost; the funds stay with the cardholder."""
    return await disputes.accept(ctx, who, dispute_id)
