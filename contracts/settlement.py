"""Settlement reconciliation reports: the SettlementReconciliationWorkflow's input and result, its Schedules, and
what one tenant's report step takes and answers."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel, Field

SETTLEMENT_WORKFLOW = "SettlementReconciliationWorkflow"
SETTLEMENT_DAILY_SCHEDULE_ID = "paysaga-settlement-daily"
SETTLEMENT_WEEKLY_SCHEDULE_ID = "paysaga-settlement-weekly"

ReportKind = Literal["daily", "weekly", "manual"]


def report_window(kind: ReportKind, now: datetime) -> tuple[datetime, datetime]:
    """The window a scheduled report covers when it runs at `now`: the previous UTC day, or the previous seven
    days ending at today's midnight (a weekly report run on Monday covers Monday to Sunday)."""
    midnight = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)
    return (midnight - timedelta(days=7 if kind == "weekly" else 1), midnight)


class SettlementInput(BaseModel):
    """One reconciliation: every tenant (a Schedule) or one (`paysaga reconcile settlement`)."""

    kind: ReportKind = "daily"
    start: datetime | None = None  # None: the window report_window gives for the run's start
    end: datetime | None = None
    tenant_id: str | None = None
    after_tenant: str | None = None  # continue-as-new cursor
    in_flight_hours: float = 48.0
    margin_hours: float = 24.0
    generated_by: str = "schedule"


class TenantReconcile(BaseModel):
    tenant_id: str
    report_id: str | None = None  # a manual report's (fresh each time); a scheduled one's follows from its window
    kind: ReportKind
    start: datetime
    end: datetime
    in_flight_hours: float = 48.0
    margin_hours: float = 24.0
    generated_by: str = "schedule"


class CurrencySummary(BaseModel):
    currency: str
    volume_micros: int
    unexplained_micros: int
    variance_ppm: int
    exceeds: bool
    discrepancies: dict[str, int] = Field(default_factory=dict)  # kind → how many


class ReportSummary(BaseModel):
    report_id: str
    tenant_id: str
    kind: str
    start: datetime
    end: datetime
    exceeds: bool
    currencies: list[CurrencySummary] = Field(default_factory=list)
    existed: bool = False  # a scheduled report of that window was already stored


class SettlementResult(BaseModel):
    start: datetime
    end: datetime
    reports: list[ReportSummary] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list)  # tenants whose report could not be made (logged)
