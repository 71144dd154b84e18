"""Payout runs (finance): start one, approve or reject it, read it and its report (JSON or CSV); payouts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from api import schemas
from api.deps import Ctx, Finance, IdempotencyKey
from api.docs import created, problems
from api.responses import answered
from contracts.payouts import DecisionBody, PayoutRunCreate
from services import payouts

router = APIRouter(prefix="/v1/payouts", tags=["payouts"])
CSV_RESPONSE = {200: {"content": {payouts.CSV: {"schema": {"type": "string"}}},
                      "description": "The run's report as CSV: one row per account and currency"}}


@router.post("/runs", status_code=201, response_model=None, responses={
    **created(schemas.PayoutRun, "The run, recorded (it computes, may await approval, then pays)"),
    **problems(403, 409)})
async def create_run(body: PayoutRunCreate, ctx: Ctx, who: Finance,
                     idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Pay every connected account (or one) what is payable for its periods ending on or before `as_of`."""
    return answered(await payouts.create_run(ctx, who, body, idempotency_key))


@router.get("/runs", response_model=schemas.PayoutRunList, responses=problems(400, 403))
async def list_runs(ctx: Ctx, who: Finance, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                    starting_after: Annotated[str | None, Query(max_length=64)] = None) -> dict[str, Any]:
    return await payouts.list_runs(ctx, who, limit, starting_after)


@router.get("/runs/{run_id}", response_model=schemas.PayoutRun, responses=problems(403, 404))
async def get_run(run_id: str, ctx: Ctx, who: Finance) -> dict[str, Any]:
    return await payouts.get_run(ctx, who, run_id)


@router.get("/runs/{run_id}/report", response_model=schemas.PayoutReport, responses=problems(403, 404))
async def run_report(run_id: str, ctx: Ctx, who: Finance) -> dict[str, Any]:
    """Per account and currency: gross, fees, refunds, disputes, reserve, net, carried forward, FX, and its payout."""
    return await payouts.report(ctx, who, run_id)


@router.get("/runs/{run_id}/report.csv", response_class=Response, responses={**CSV_RESPONSE,
                                                                             **problems(403, 404)})
async def run_report_csv(run_id: str, ctx: Ctx, who: Finance) -> Response:
    return Response(await payouts.report_csv(ctx, who, run_id), media_type=payouts.CSV,
                    headers={"Content-Disposition": f'attachment; filename="{run_id}.csv"'})


@router.post("/runs/{run_id}/approve", response_model=schemas.PayoutRun, responses=problems(403, 404, 409))
async def approve_run(run_id: str, ctx: Ctx, who: Finance, body: DecisionBody | None = None) -> dict[str, Any]:
    """A run awaiting approval pays."""
    return await payouts.decide(ctx, who, run_id, "approve", body.reason if body else None)


@router.post("/runs/{run_id}/reject", response_model=schemas.PayoutRun, responses=problems(403, 404, 409))
async def reject_run(run_id: str, ctx: Ctx, who: Finance, body: DecisionBody | None = None) -> dict[str, Any]:
    """A run awaiting approval ends without paying anything; the balances wait for the next run."""
    return await payouts.decide(ctx, who, run_id, "reject", body.reason if body else None)


@router.get("", response_model=schemas.PayoutList, responses=problems(400, 403))
async def list_payouts(ctx: Ctx, who: Finance, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                       starting_after: Annotated[str | None, Query(max_length=64)] = None,
                       account_id: Annotated[str | None, Query(max_length=64)] = None,
                       run_id: Annotated[str | None, Query(max_length=64)] = None) -> dict[str, Any]:
    return await payouts.list_payouts(ctx, who, limit, starting_after, account_id, run_id)


@router.get("/{payout_id}", response_model=schemas.Payout, responses=problems(403, 404))
async def get_payout(payout_id: str, ctx: Ctx, who: Finance) -> dict[str, Any]:
    return await payouts.get_payout(ctx, who, payout_id)
