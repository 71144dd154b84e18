"""ReconcileWorkflow: one bounded reconciliation run, started by a Temporal Schedule (or `paysaga reconcile`)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.reconciliation import ReconcileActivities
    from workflows.contracts import ReconcileInput, ReconcileReport

SCHEDULE_ID = "paysaga-reconcile-pending-payments"


@workflow.defn
class ReconcileWorkflow:
    @workflow.run
    async def run(self, inp: ReconcileInput) -> ReconcileReport:
        return await workflow.execute_activity(
            ReconcileActivities.reconcile_stale_payments, inp,
            start_to_close_timeout=timedelta(minutes=10), heartbeat_timeout=timedelta(seconds=60),
            retry_policy=RetryPolicy(maximum_attempts=3, maximum_interval=timedelta(minutes=1)),
        )
