"""RiskBiasReportWorkflow: the quarterly bias report of the advisory fraud score, started by a Schedule."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.risk_report import RiskReportActivities, previous_quarter
    from workflows.policies import INVALID_REQUEST

SCHEDULE_ID = "paysaga-risk-bias-report"


@workflow.defn
class RiskBiasReportWorkflow:
    @workflow.run
    async def run(self, quarter: str | None = None) -> dict[str, Any]:
        q = quarter or previous_quarter(workflow.now().date())  # the Schedule fires in the quarter after
        return await workflow.execute_activity(
            RiskReportActivities.generate_bias_report, q, start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_attempts=5, non_retryable_error_types=[INVALID_REQUEST]),
        )
