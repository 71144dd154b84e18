"""RiskBiasReportWorkflow: the quarterly bias report of the advisory fraud score, started by a Schedule."""

from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.risk_report import RiskReportActivities, previous_quarter
    from contracts.risk import RISK_BIAS_REPORT_WORKFLOW
    from workflows.policies import REPORT_RETRY
    from workflows.steps import finish


@workflow.defn(name=RISK_BIAS_REPORT_WORKFLOW)
class RiskBiasReportWorkflow:
    @workflow.run
    async def run(self, quarter: str | None = None) -> dict[str, Any]:
        q = quarter or previous_quarter(workflow.now().date())  # the Schedule fires in the quarter after
        report: dict[str, Any] = await workflow.execute_activity(
            RiskReportActivities.generate_bias_report, q, start_to_close_timeout=timedelta(minutes=10),
            retry_policy=REPORT_RETRY,
        )
        return await finish(report)
