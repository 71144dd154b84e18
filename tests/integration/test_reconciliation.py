"""Reconciliation: with every webhook dropped and no polling, stuck payments still reach their final state."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio.client import ScheduleOverlapPolicy

from contracts.reconciliation import RECONCILE_SCHEDULE_ID as SCHEDULE_ID
from contracts.reconciliation import ReconcileInput, ReconcileReport
from contracts.renewals import RENEWAL_SCHEDULE_ID
from contracts.risk import RISK_BIAS_REPORT_SCHEDULE_ID
from paysaga.schedules import ensure_schedules
from tests.integration.helpers import customer_with_method, pay, wait_status
from tests.recording import record_history
from tests.stack import Stack
from workflows.reconcile import ReconcileWorkflow

pytestmark = pytest.mark.integration


async def run_reconcile(stack: Stack, dry_run: bool) -> ReconcileReport:
    handle = await stack.client.start_workflow(
        ReconcileWorkflow.run, ReconcileInput(older_than_seconds=0, limit=500, dry_run=dry_run),
        id=f"reconcile-test-{uuid.uuid4().hex[:8]}", task_queue=stack.settings.task_queue, result_type=ReconcileReport)
    report = await handle.result()
    await record_history(handle, "dry_run" if dry_run else "run", "reconcile")
    return report


async def test_dropped_webhooks_are_reconciled(stack: Stack, tenant: tuple[str, str]) -> None:
    s = stack.settings
    s.sandbox_webhook_drop_rate, s.webhook_wait_seconds = 1.0, 3600.0  # no webhook, and no polling for an hour
    try:
        async with stack.http(tenant[1]) as http:
            # One customer per payment: several quick payments from one customer would raise the advisory fraud
            # score into a 3-D Secure challenge, which is not what this test is about.
            # Cards that settle after confirm: their outcome exists only at the provider and in the lost webhooks.
            later = "pm_card_visa_settlesLater"
            paid = [(await pay(http, *(await customer_with_method(http, later)))).json() for _ in range(3)]
            cid3, secure = await customer_with_method(http, "pm_card_threeDSecure2Required")
            ok3ds, bad3ds = (await pay(http, cid3, secure)).json(), (await pay(http, cid3, secure)).json()
            await http.post(ok3ds["next_action"]["redirect_to_url"]["url"], json={"outcome": "succeed"})
            await http.post(bad3ds["next_action"]["redirect_to_url"]["url"], json={"outcome": "fail"})
            orphan = (await pay(http, *(await customer_with_method(http, later)))).json()
            await stack.client.get_workflow_handle(orphan["workflow_id"]).terminate("simulating a lost workflow")
            await asyncio.sleep(0.5)  # the provider settles; its webhooks go nowhere
            ours = {p["id"] for p in [*paid, ok3ds, bad3ds, orphan]}
            for pid in ours:
                assert (await http.get(f"/v1/payments/{pid}")).json()["status"] in ("processing", "pending")

            dry = await run_reconcile(stack, dry_run=True)
            planned = {a["payment_id"]: a["transition"] for a in dry.actions if a["payment_id"] in ours}
            assert planned == {
                **{p["id"]: "reconcile" for p in [*paid, orphan]},
                ok3ds["id"]: "confirm_from_pending", bad3ds["id"]: "reject_from_pending",
            }
            for pid in ours:  # a dry run changes nothing
                assert (await http.get(f"/v1/payments/{pid}")).json()["status"] in ("processing", "pending")

            report = await run_reconcile(stack, dry_run=False)
            # (other tests' leftovers may be stuck too, and count as errors if their intents are made up)
            assert report.transitioned >= 1 and report.signalled >= 5
            for p in [*paid, ok3ds, orphan]:
                await wait_status(http, p["id"], {"completed"})
            failed = await wait_status(http, bad3ds["id"], {"failed"})
            assert failed["failure_code"] == "authentication_failed"
    finally:
        s.sandbox_webhook_drop_rate, s.webhook_wait_seconds = 0.0, 3.0
    actors = await stack.admin_pool.fetch(
        "SELECT payment_id, actor, metadata->>'transition' AS t FROM paysaga.payment_events "
        "WHERE payment_id = ANY($1::text[]) AND seq > 2", list(ours))
    assert {(r["payment_id"], r["t"], r["actor"]) for r in actors if r["payment_id"] == orphan["id"]} == {
        (orphan["id"], "reconcile", "reconciler")}
    again = await run_reconcile(stack, dry_run=False)  # idempotent: nothing of ours is stuck any more
    assert not [a for a in again.actions if a["payment_id"] in ours]


async def test_schedules_are_created_once(stack: Stack) -> None:
    await ensure_schedules(stack.client, stack.settings)
    await ensure_schedules(stack.client, stack.settings)  # a second worker start changes nothing
    expected = {SCHEDULE_ID: "ReconcileWorkflow", RISK_BIAS_REPORT_SCHEDULE_ID: "RiskBiasReportWorkflow",
                RENEWAL_SCHEDULE_ID: "RenewalRunWorkflow"}
    for schedule_id, workflow_type in expected.items():
        handle = stack.client.get_schedule_handle(schedule_id)
        try:
            described = await handle.describe()
            assert described.schedule.action.workflow == workflow_type
            if schedule_id == RENEWAL_SCHEDULE_ID:  # one run at a time, missed runs made up within a window
                policy = described.schedule.policy
                assert policy.overlap == ScheduleOverlapPolicy.SKIP
                assert policy.catchup_window == timedelta(seconds=stack.settings.renewal_catchup_window_seconds)
        finally:
            await handle.delete()
