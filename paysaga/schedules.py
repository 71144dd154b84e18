"""Temporal Schedules (not cron): created once, idempotently, when a worker starts."""

from __future__ import annotations

from datetime import timedelta

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

from contracts.reconciliation import RECONCILE_SCHEDULE_ID, RECONCILE_WORKFLOW, ReconcileInput
from contracts.risk import RISK_BIAS_REPORT_SCHEDULE_ID, RISK_BIAS_REPORT_WORKFLOW
from paysaga.settings import Settings

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
    for schedule_id, schedule in ((RECONCILE_SCHEDULE_ID, reconcile), (RISK_BIAS_REPORT_SCHEDULE_ID, bias_report)):
        try:
            await client.create_schedule(schedule_id, schedule)
            log.info("schedule.created", schedule_id=schedule_id)
        except ScheduleAlreadyRunningError:
            pass
