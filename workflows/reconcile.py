"""ReconcileWorkflow: one bounded reconciliation run, started by a Temporal Schedule (or `paysaga reconcile`)."""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.reconciliation import ReconcileActivities
    from contracts.reconciliation import RECONCILE_WORKFLOW, ReconcileInput, ReconcileReport
    from workflows.policies import BATCH_RETRY
    from workflows.steps import finish


@workflow.defn(name=RECONCILE_WORKFLOW)
class ReconcileWorkflow:
    @workflow.run
    async def run(self, inp: ReconcileInput) -> ReconcileReport:
        report: ReconcileReport = await workflow.execute_activity(
            ReconcileActivities.reconcile_stale_payments, inp,
            start_to_close_timeout=timedelta(minutes=10), heartbeat_timeout=timedelta(seconds=60),
            retry_policy=BATCH_RETRY,
        )
        return await finish(report)
