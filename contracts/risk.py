"""The quarterly bias report of the advisory fraud score."""

from __future__ import annotations

RISK_BIAS_REPORT_WORKFLOW = "RiskBiasReportWorkflow"
RISK_BIAS_REPORT_SCHEDULE_ID = "paysaga-risk-bias-report"
