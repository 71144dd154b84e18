"""Settlement reconciliation reports (finance): the daily and weekly reports, their discrepancies, as CSV."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api import schemas
from api.deps import Ctx, Finance
from api.docs import problems
from services import settlement_reports

router = APIRouter(prefix="/v1/reconciliation", tags=["reconciliation"])
CSV = "text/csv; charset=utf-8"


@router.get("/reports", response_model=schemas.SettlementReportList, responses=problems(400, 403))
async def list_reports(ctx: Ctx, who: Finance, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                       starting_after: Annotated[str | None, Query(max_length=80)] = None,
                       kind: Literal["daily", "weekly", "manual"] | None = None) -> dict[str, Any]:
    """Newest first: each with its variance per settlement currency (unexplained ÷ volume; objective < 0.01 %)."""
    return await settlement_reports.list_reports(ctx, who, limit, starting_after, kind)


@router.get("/reports/{report_id}", response_model=schemas.SettlementReport, responses=problems(403, 404))
async def get_report(report_id: str, ctx: Ctx, who: Finance) -> dict[str, Any]:
    """The report with every discrepancy (missing here, missing at the provider, amount, currency, fee, timing)
    and the records and provider lines behind each."""
    return await settlement_reports.get_report(ctx, who, report_id)


@router.get("/reports/{report_id}/discrepancies.csv", response_class=Response, responses={
    200: {"content": {CSV: {"schema": {"type": "string"}}}, "description": "One row per discrepancy"},
    **problems(403, 404)})
async def report_csv(report_id: str, ctx: Ctx, who: Finance) -> Response:
    return Response(await settlement_reports.discrepancies_csv(ctx, who, report_id), media_type=CSV,
                    headers={"Content-Disposition": f'attachment; filename="{report_id}.csv"'})
