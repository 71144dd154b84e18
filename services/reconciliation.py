"""Reconciliation of stuck payments, run now (the Schedule runs it every few minutes)."""

from __future__ import annotations

import uuid

from temporalio.client import Client

from contracts.reconciliation import RECONCILE_WORKFLOW, ReconcileInput, ReconcileReport


async def run_now(client: Client, task_queue: str, inp: ReconcileInput) -> ReconcileReport:
    report: ReconcileReport = await client.execute_workflow(
        RECONCILE_WORKFLOW, inp, id=f"reconcile-manual-{uuid.uuid4().hex[:8]}", task_queue=task_queue,
        result_type=ReconcileReport)
    return report
