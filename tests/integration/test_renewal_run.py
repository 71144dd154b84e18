"""A renewal run of a few thousand subscriptions on the real stack, its worker killed (SIGKILL) in the middle and
a new one started: every subscription renewed exactly once — one invoice, one charge, one provider intent, one
`renewed` event each — and the run's progress adds up."""

from __future__ import annotations

import asyncio
import signal
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from contracts.renewals import RENEWAL_RUN_WORKFLOW, RenewalProgress, RenewalRunInput
from tests.integration.seeding import seed_due_subscriptions
from tests.integration.test_invoices import customer, seller, trial_balance_is_zero
from tests.integration.test_subscriptions import price, subscribe, wait_subscription
from tests.integration.test_worker_crash import spawn_worker
from tests.stack import Stack

pytestmark = pytest.mark.integration
N = 3000


async def test_a_renewal_run_survives_its_worker_killed_mid_run(stack: Stack, retire: list[str]) -> None:
    tenant_id, api_key = await stack.new_tenant(["payments", "finance"])
    retire.append(tenant_id)
    async with stack.http(api_key) as http:
        await seller(http)
        p = await price(http, "8.00")
        cid = await customer(http, {"country": "DE"}, token="pm_card_visa")
        template = await subscribe(http, cid, p["id"])
        await wait_subscription(http, template["id"], "active")
        # Copied, then canceled: the template is not due itself.
        canceled = await http.post(f"/v1/subscriptions/{template['id']}/cancel", json={})
        assert canceled.status_code == 200, canceled.text
        at = datetime(2031, 3, 1, tzinfo=UTC)
        ids = await seed_due_subscriptions(stack.admin_pool, tenant_id, template["id"], N, at,  # type: ignore[arg-type]
                                           prefix=f"k{uuid.uuid4().hex[:4]}")
        assert len(ids) == N

        queue = f"renewals-crash-{uuid.uuid4().hex[:6]}"
        env = {"PAYSAGA_SCHEDULES_ENABLED": "false"}
        first = spawn_worker(stack, queue, **env)
        second = None
        try:
            inp = RenewalRunInput(at=at, batch_size=250, batches_per_run=5, settle_wait_seconds=20)
            handle = await stack.client.start_workflow(
                RENEWAL_RUN_WORKFLOW, inp, id=f"renewals-crash-{uuid.uuid4().hex[:6]}", task_queue=queue,
                result_type=RenewalProgress, execution_timeout=timedelta(minutes=10))
            # Kill it once some batches are invoiced and some charged, with more to go.
            async with asyncio.timeout(240):
                while await stack.admin_pool.fetchval(  # type: ignore[attr-defined]
                        "SELECT count(*) FROM paysaga.renewal_charges WHERE tenant_id = $1 AND state <> 'created'",
                        tenant_id) < N // 4:
                    await asyncio.sleep(0.2)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            half = await stack.admin_pool.fetchval(  # type: ignore[attr-defined]
                "SELECT count(*) FROM paysaga.renewal_charges WHERE tenant_id = $1 AND state <> 'created'", tenant_id)
            assert half < N, "the run finished before the worker was killed"
            second = spawn_worker(stack, queue, **env)
            progress = await asyncio.wait_for(handle.result(), 480)
        finally:
            for proc in (first, second):
                if proc and proc.poll() is None:
                    proc.terminate()
                    proc.wait(10)

        db = stack.admin_pool
        counts = await db.fetchrow(  # type: ignore[attr-defined]
            """SELECT (SELECT count(*) FROM paysaga.invoices WHERE tenant_id = $1 AND subscription_id = ANY($2)
                         AND period_start = $3::date) AS invoices,
                      (SELECT count(DISTINCT subscription_id) FROM paysaga.invoices
                        WHERE tenant_id = $1 AND subscription_id = ANY($2) AND status = 'paid') AS paid_subs,
                      (SELECT count(*) FROM paysaga.payments p JOIN paysaga.invoices i USING (tenant_id, invoice_id)
                        WHERE p.tenant_id = $1 AND i.subscription_id = ANY($2)) AS payments,
                      (SELECT count(*) FROM sandbox.payment_intents x JOIN paysaga.payments p USING (payment_id)
                         JOIN paysaga.invoices i ON i.tenant_id = p.tenant_id AND i.invoice_id = p.invoice_id
                        WHERE p.tenant_id = $1 AND i.subscription_id = ANY($2)) AS intents,
                      (SELECT count(*) FROM paysaga.subscription_events WHERE tenant_id = $1
                         AND subscription_id = ANY($2) AND type = 'renewed') AS renewed,
                      (SELECT count(*) FROM paysaga.subscriptions WHERE tenant_id = $1 AND subscription_id = ANY($2)
                         AND period_start = $4 AND status = 'active') AS moved""",
            tenant_id, ids, at.date(), at)
        assert dict(counts) == {"invoices": N, "paid_subs": N, "payments": N, "intents": N, "renewed": N,
                                "moved": N}
        assert progress.done and progress.runs >= 2
        assert progress.due == progress.invoiced == progress.renewed == N
        assert progress.charged == progress.succeeded == N and progress.failed == 0
        async with stack.http(api_key) as http:
            await trial_balance_is_zero(http)
