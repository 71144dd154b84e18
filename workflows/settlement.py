"""SettlementReconciliationWorkflow: the daily and weekly settlement reports (two Temporal Schedules), or one
tenant's report of any window (`paysaga reconcile settlement --from --to`). One activity call per tenant
(activities/settlement.py does the work); a tenant whose report fails is named in the result and logged, the
others go on. Many tenants: the run continues as new every few hundred."""

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.settlement import SettlementActivities
    from contracts.settlement import (
        SETTLEMENT_WORKFLOW,
        ReportSummary,
        SettlementInput,
        SettlementResult,
        TenantReconcile,
        report_window,
    )
    from workflows.policies import BATCH_RETRY
    from workflows.steps import finish, local_step

A = SettlementActivities
TENANTS_PER_RUN = 300
REPORT_TIMEOUT = timedelta(minutes=15)


@workflow.defn(name=SETTLEMENT_WORKFLOW)
class SettlementReconciliationWorkflow:
    @workflow.run
    async def run(self, inp: SettlementInput) -> SettlementResult:
        if inp.start is not None and inp.end is not None:
            start, end = inp.start, inp.end
        else:
            start, end = report_window(inp.kind, workflow.now())
        result = SettlementResult(start=start, end=end)
        tenants: list[str] = await local_step(A.settlement_tenants, inp)
        for tenant_id in tenants[:TENANTS_PER_RUN]:
            req = TenantReconcile(
                tenant_id=tenant_id, kind=inp.kind, start=start, end=end, in_flight_hours=inp.in_flight_hours,
                margin_hours=inp.margin_hours, generated_by=inp.generated_by,
                report_id=f"srr_{workflow.uuid4().hex[:24]}" if inp.kind == "manual" else None)
            try:
                summary: ReportSummary = await workflow.execute_activity(
                    A.reconcile_tenant, req, start_to_close_timeout=REPORT_TIMEOUT, retry_policy=BATCH_RETRY)
            except ActivityError as err:
                workflow.logger.error("settlement report failed", extra={"tenant_id": tenant_id,
                                                                         "error": str(err.cause or err)})
                result.failed.append(tenant_id)
                continue
            result.reports.append(summary)
        if len(tenants) > TENANTS_PER_RUN:
            workflow.continue_as_new(inp.model_copy(update={"start": start, "end": end,
                                                            "after_tenant": tenants[TENANTS_PER_RUN - 1]}))
        return await finish(result)
