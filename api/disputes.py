"""Disputes: read them; finance answers them with evidence or concedes them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query

from api import schemas
from api.deps import Caller, Ctx, Finance
from api.docs import problems
from contracts.disputes import AcceptBody, DisputeEvidence
from services import disputes

router = APIRouter(prefix="/v1", tags=["disputes"])
DisputeStatusName = Literal["needs_response", "under_review", "won", "lost", "accepted"]


@router.get("/disputes", response_model=schemas.DisputeList, responses=problems(400))
async def list_disputes(
    ctx: Ctx, who: Caller, limit: Annotated[int, Query(ge=1, le=100)] = 20,
    starting_after: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[DisputeStatusName | None, Query()] = None,
    payment_id: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Newest first; `status=needs_response` is what finance must answer before its deadline. Pass the last id
    of a page as `starting_after` for the next one."""
    return await disputes.list_page(ctx, who, limit=limit, starting_after=starting_after, status=status,
                                    payment_id=payment_id)


@router.get("/disputes/{dispute_id}", response_model=schemas.Dispute, responses=problems(404))
async def get_dispute(dispute_id: str, ctx: Ctx, who: Caller) -> dict[str, Any]:
    """A dispute, by our id (`dsp_…`) or the provider's."""
    return await disputes.get(ctx, who, dispute_id)


@router.get("/payments/{payment_id}/disputes", response_model=schemas.PaymentDisputes, responses=problems(404))
async def list_payment_disputes(payment_id: str, ctx: Ctx, who: Caller) -> dict[str, Any]:
    return await disputes.list_for_payment(ctx, who, payment_id)


@router.post("/disputes/{dispute_id}/evidence", response_model=schemas.Dispute, responses=problems(403, 404, 409))
async def submit_evidence(
    dispute_id: str, body: DisputeEvidence, ctx: Ctx, who: Finance,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> dict[str, Any]:
    """Finance's evidence → the DisputeWorkflow → the provider. 409 once the dispute takes no more evidence."""
    return await disputes.submit_evidence(ctx, who, dispute_id, body, idempotency_key)


@router.post("/disputes/{dispute_id}/accept", response_model=schemas.Dispute, responses=problems(403, 404, 409))
async def accept_dispute(dispute_id: str, ctx: Ctx, who: Finance, body: AcceptBody | None = None) -> dict[str, Any]:
    """Concede the dispute: the provider closes it as lost; the funds stay with the cardholder."""
    return await disputes.accept(ctx, who, dispute_id)
