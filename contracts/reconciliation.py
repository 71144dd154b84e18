"""Reconciliation of stuck payments: the ReconcileWorkflow's input and report."""

from __future__ import annotations

from pydantic import BaseModel, Field

RECONCILE_WORKFLOW = "ReconcileWorkflow"
RECONCILE_SCHEDULE_ID = "paysaga-reconcile-pending-payments"


class ReconcileInput(BaseModel):
    older_than_seconds: float = 600.0
    limit: int = 200
    dry_run: bool = False


class ReconcileReport(BaseModel):
    examined: int = 0
    signalled: int = 0  # news handed to a running payment workflow
    transitioned: int = 0  # applied directly: the payment's workflow was no longer running
    unchanged: int = 0  # the provider is still working on it
    errors: int = 0
    dry_run: bool = False
    actions: list[dict[str, str]] = Field(default_factory=list)
