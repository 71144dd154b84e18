"""Temporal Schedules (not cron): created once, idempotently, when a worker starts."""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
)

from contracts.payouts import PAYOUT_RUNS_SCHEDULE_ID, PAYOUT_RUNS_WORKFLOW, PayoutRunsInput
from contracts.reconciliation import RECONCILE_SCHEDULE_ID, RECONCILE_WORKFLOW, ReconcileInput
from contracts.renewals import RENEWAL_RUN_WORKFLOW, RENEWAL_SCHEDULE_ID, Pacing, RenewalRunInput
from contracts.risk import RISK_BIAS_REPORT_SCHEDULE_ID, RISK_BIAS_REPORT_WORKFLOW
from contracts.settlement import (
    SETTLEMENT_DAILY_SCHEDULE_ID,
    SETTLEMENT_WEEKLY_SCHEDULE_ID,
    SETTLEMENT_WORKFLOW,
    SettlementInput,
)
from paysaga.settings import WEEKDAYS, Settings


def renewal_input(settings: Settings, *, at: datetime | None = None, dry_run: bool = False) -> RenewalRunInput:
    """A renewal run's input from settings (fixed for the run: a replay sees what the run saw)."""
    return RenewalRunInput(
        at=at, dry_run=dry_run, batch_size=settings.renewal_batch_size, invoice_window=settings.renewal_invoice_window,
        charge_window=settings.renewal_charge_window, batches_per_run=settings.renewal_batches_per_run,
        settle_wait_seconds=settings.renewal_settle_wait_seconds,
        provider_call_timeout_seconds=settings.provider_call_timeout_seconds,
        pacing=Pacing(account=settings.provider_account or settings.provider,
                      rate_per_second=settings.provider_rate_per_second, burst=settings.provider_rate_burst,
                      chunk=settings.renewal_charge_chunk, concurrency=settings.renewal_charge_concurrency))

log = structlog.get_logger("paysaga.schedules")


async def ensure_schedules(client: Client, settings: Settings) -> None:
    reconcile = Schedule(
        action=ScheduleActionStartWorkflow(
            RECONCILE_WORKFLOW,
            args=[ReconcileInput(older_than_seconds=settings.reconcile_older_than_seconds,
                           limit=settings.reconcile_batch_limit)],
            id="reconcile-run", task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.reconcile_every_seconds))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),  # one run at a time
    )
    bias_report = Schedule(
        action=ScheduleActionStartWorkflow(
            RISK_BIAS_REPORT_WORKFLOW, args=[None], id="risk-bias-report-run", task_queue=settings.task_queue),
        # 03:00 UTC on the first day of each quarter: the report of the quarter that just ended.
        spec=ScheduleSpec(calendars=[ScheduleCalendarSpec(
            month=[ScheduleRange(1), ScheduleRange(4), ScheduleRange(7), ScheduleRange(10)],
            day_of_month=[ScheduleRange(1)], hour=[ScheduleRange(3)], minute=[ScheduleRange(0)],
            second=[ScheduleRange(0)])], time_zone_name="UTC"),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    renewals = Schedule(
        action=ScheduleActionStartWorkflow(
            RENEWAL_RUN_WORKFLOW, args=[renewal_input(settings)], id="renewal-run", task_queue=settings.task_queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.renewal_every_seconds))]),
        # One run at a time (a long run is not doubled by the next tick); ticks missed while the server was down
        # are made up if they are at most this old — one run renews everything due by its time anyway.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP,
                              catchup_window=timedelta(seconds=settings.renewal_catchup_window_seconds)),
    )
    for schedule_id, schedule in ((RECONCILE_SCHEDULE_ID, reconcile), (RISK_BIAS_REPORT_SCHEDULE_ID, bias_report),
                                  (RENEWAL_SCHEDULE_ID, renewals), *money_schedules(settings).items()):
        try:
            await client.create_schedule(schedule_id, schedule)
            log.info("schedule.created", schedule_id=schedule_id)
        except ScheduleAlreadyRunningError:
            pass


def temporal_weekday(name: str) -> int:
    """Temporal's day_of_week counts from Sunday (0); ours from Monday."""
    return (WEEKDAYS.index(name) + 1) % 7


def _at(hour: int, weekday: str | None = None) -> ScheduleSpec:
    days = [ScheduleRange(temporal_weekday(weekday))] if weekday else [ScheduleRange(0, 6)]
    return ScheduleSpec(calendars=[ScheduleCalendarSpec(day_of_week=days, hour=[ScheduleRange(hour)],
                                                        minute=[ScheduleRange(0)], second=[ScheduleRange(0)])],
                        time_zone_name="UTC")


def money_schedules(settings: Settings) -> dict[str, Schedule]:
    """The weekly payout runs, and the daily and weekly settlement reconciliation reports."""
    skip = SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP)
    settlement = {"in_flight_hours": settings.settlement_in_flight_hours,
                  "margin_hours": settings.settlement_margin_hours}
    return {
        PAYOUT_RUNS_SCHEDULE_ID: Schedule(
            action=ScheduleActionStartWorkflow(
                PAYOUT_RUNS_WORKFLOW, args=[PayoutRunsInput(
                    batch_size=settings.payout_batch_size, poll_seconds=settings.payout_poll_seconds,
                    provider_call_timeout_seconds=settings.provider_call_timeout_seconds)],
                id="payout-runs", task_queue=settings.task_queue),
            spec=_at(settings.payout_run_hour_utc, settings.payout_run_weekday), policy=skip),
        SETTLEMENT_DAILY_SCHEDULE_ID: Schedule(
            action=ScheduleActionStartWorkflow(SETTLEMENT_WORKFLOW, args=[SettlementInput(kind="daily", **settlement)],
                                               id="settlement-daily-run", task_queue=settings.task_queue),
            spec=_at(settings.settlement_daily_hour_utc), policy=skip),
        SETTLEMENT_WEEKLY_SCHEDULE_ID: Schedule(
            action=ScheduleActionStartWorkflow(SETTLEMENT_WORKFLOW, args=[SettlementInput(kind="weekly",
                                                                                          **settlement)],
                                               id="settlement-weekly-run", task_queue=settings.task_queue),
            spec=_at(settings.settlement_weekly_hour_utc, settings.settlement_weekly_weekday), policy=skip),
    }
