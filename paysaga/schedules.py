"""Temporal Schedules (not cron): created once, idempotently, when a worker starts."""

from __future__ import annotations

from datetime import timedelta

import structlog
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)

from paysaga.settings import Settings
from workflows.contracts import ReconcileInput
from workflows.reconcile import SCHEDULE_ID, ReconcileWorkflow

log = structlog.get_logger("paysaga.schedules")


async def ensure_schedules(client: Client, settings: Settings) -> None:
    reconcile = Schedule(
        action=ScheduleActionStartWorkflow(
            ReconcileWorkflow.run,
            ReconcileInput(older_than_seconds=settings.reconcile_older_than_seconds,
                           limit=settings.reconcile_batch_limit),
            id="reconcile-run", task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.reconcile_every_seconds))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),  # one run at a time
    )
    try:
        await client.create_schedule(SCHEDULE_ID, reconcile)
        log.info("schedule.created", schedule_id=SCHEDULE_ID)
    except ScheduleAlreadyRunningError:
        pass
