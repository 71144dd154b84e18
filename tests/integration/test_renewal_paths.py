"""The renewal run's less travelled paths, end to end on the real stack: a renewal whose card wants the customer
(3-D Secure) handed to a PaymentWorkflow of its own and completed by the customer; provider answers throttled
(429) or lost after the work (500) in the middle of a run, neither skipping nor repeating a charge; a
`send_invoice` subscription renewed to an open invoice due later and never charged; and calendar billing on
the 31st renewed through the run on the last day of shorter months."""

from __future__ import annotations

import asyncio
import signal
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts.invoices import collection_payment_id
from contracts.payments import PAYMENT_WORKFLOW
from contracts.renewals import RENEWAL_RUN_WORKFLOW, RenewalProgress, RenewalRunInput
from tests.integration.helpers import wait_status
from tests.integration.seeding import seed_due_subscriptions
from tests.integration.test_invoices import customer, seller, trial_balance_is_zero, wait_invoice
from tests.integration.test_subscription_year import set_card
from tests.integration.test_subscriptions import instant, price, renew, subscribe, wait_subscription
from tests.integration.test_worker_crash import spawn_worker
from tests.stack import Stack

pytestmark = pytest.mark.integration


async def shop(stack: Stack, retire: list[str], amount: str) -> tuple[str, str, str, str]:
    """A tenant of its own (its subscriptions ended after the test) with its seller's profile, a monthly price and a
    customer paying by card: (tenant id, API key, price id, customer id)."""
    tenant_id, api_key = await stack.new_tenant(["payments", "finance"])
    retire.append(tenant_id)
    async with stack.http(api_key) as http:
        await seller(http)
        p = await price(http, amount)
        cid = await customer(http, {"country": "DE"}, token="pm_card_visa")
    return tenant_id, api_key, p["id"], cid


async def pay(http: Any, invoice_id: str) -> None:
    """The customer pays a sent invoice (here with the card on file, as a hosted invoice page would)."""
    r = await http.post(f"/v1/invoices/{invoice_id}/pay", json={}, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert r.status_code == 202, r.text
    await wait_invoice(http, invoice_id, lambda b: b["status"] == "paid")


async def test_a_renewal_that_needs_the_customer_becomes_its_own_payment_workflow(
        stack: Stack, retire: list[str]) -> None:
    _, api_key, price_id, cid = await shop(stack, retire, "12.00")
    async with stack.http(api_key) as http:
        sub = await subscribe(http, cid, price_id)
        active = await wait_subscription(http, sub["id"], "active")
        # The card on file now asks for authentication on every charge, off-session ones included.
        await set_card(http, cid, sub["id"], "pm_card_authenticationRequired")
        at = instant(active["current_period_end"]) + timedelta(seconds=1)

        progress = await renew(stack, at)
        assert progress.handed_to_customer >= 1 and progress.failed == 0, progress
        renewed = (await http.get(f"/v1/subscriptions/{sub['id']}")).json()
        invoice_id = renewed["latest_invoice_id"]
        assert invoice_id != active["latest_invoice_id"]
        payment_id = collection_payment_id(invoice_id, 1)
        waiting = await wait_status(http, payment_id, {"pending"})
        url = waiting["next_action"]["redirect_to_url"]["url"]

        # An SRE finds the run by the subscription it collects for: one PaymentWorkflow, not a renewal batch.
        query = f"SubscriptionId = '{sub['id']}' AND WorkflowType = '{PAYMENT_WORKFLOW}'"
        async with asyncio.timeout(20):
            while not (found := [w async for w in stack.client.list_workflows(query)]):
                await asyncio.sleep(0.2)
        assert len(found) == 1 and payment_id in found[0].id, [w.id for w in found]

        assert (await http.post(url, json={"outcome": "succeed"})).status_code == 200
        done = await wait_status(http, payment_id, {"completed"})
        assert done["metadata"]["invoice_id"] == invoice_id
        await wait_invoice(http, invoice_id, lambda b: b["status"] == "paid")
        after = await wait_subscription(http, sub["id"], "active")
        assert after["current_period_start"] == active["current_period_end"]
        intents = await stack.admin_pool.fetchval(  # type: ignore[attr-defined]
            "SELECT count(*) FROM sandbox.payment_intents WHERE payment_id = $1", payment_id)
        assert intents == 1  # the workflow took over the batch's intent; it did not make another
        await trial_balance_is_zero(http)


@pytest.mark.parametrize("fault", ["429", "500"])
async def test_provider_faults_mid_run_neither_skip_nor_repeat_a_charge(
        stack: Stack, retire: list[str], fault: str) -> None:
    """429: refused before any work (the run backs off and reports it); 500: the intent is made and the answer
    lost (the retry finds that intent). Either way each renewal is charged once, and all succeed."""
    n = 40
    tenant_id, api_key, price_id, cid = await shop(stack, retire, "4.00")
    db: Any = stack.admin_pool
    async with stack.http(api_key) as http:
        template = await subscribe(http, cid, price_id)
        await wait_subscription(http, template["id"], "active")
        assert (await http.post(f"/v1/subscriptions/{template['id']}/cancel", json={})).status_code == 200
        at = datetime(2032, 5, 1, 4, int(fault) % 60, tzinfo=UTC)  # an instant of this test's own
        ids = await seed_due_subscriptions(db, tenant_id, template["id"], n, at, prefix=f"f{uuid.uuid4().hex[:4]}")

        queue = f"renewals-faults-{uuid.uuid4().hex[:6]}"
        worker = spawn_worker(stack, queue, PAYSAGA_SCHEDULES_ENABLED="false", PAYSAGA_SANDBOX_FAIL_FIRST_CALLS="1",
                              PAYSAGA_SANDBOX_FAIL_KIND=fault)
        try:
            inp = RenewalRunInput(at=at, batch_size=20, settle_wait_seconds=20)
            progress: RenewalProgress = await stack.client.execute_workflow(
                RENEWAL_RUN_WORKFLOW, inp, id=f"renewals-faults-{uuid.uuid4().hex[:6]}", task_queue=queue,
                result_type=RenewalProgress, execution_timeout=timedelta(minutes=5))
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        assert progress.done and progress.renewed == n and progress.succeeded == n, progress
        assert progress.failed == 0 and progress.handed_to_dunning == 0, progress
        if fault == "429":
            assert progress.pacing.throttled == n, progress.pacing  # each charge refused once, then sent
            assert progress.pacing.waited_seconds > 0, progress.pacing
        rows = await db.fetch(
            """SELECT i.subscription_id, count(DISTINCT i.invoice_id) AS invoices, count(DISTINCT p.payment_id)
                      AS payments, count(x.intent_id) AS intents
                 FROM paysaga.invoices i JOIN paysaga.payments p ON p.tenant_id = i.tenant_id
                                                                AND p.invoice_id = i.invoice_id
                 LEFT JOIN sandbox.payment_intents x ON x.payment_id = p.payment_id
                WHERE i.tenant_id = $1 AND i.subscription_id = ANY($2) AND i.period_start = $3
                GROUP BY i.subscription_id""", tenant_id, ids, at.date())
        assert len(rows) == n, len(rows)
        assert all((r["invoices"], r["payments"], r["intents"]) == (1, 1, 1) for r in rows), \
            [dict(r) for r in rows if (r["invoices"], r["payments"], r["intents"]) != (1, 1, 1)]
        await trial_balance_is_zero(http)


async def test_a_send_invoice_subscription_renews_to_an_open_invoice_and_is_never_charged(
        stack: Stack, retire: list[str]) -> None:
    tenant_id, api_key, price_id, cid = await shop(stack, retire, "20.00")
    db: Any = stack.admin_pool
    async with stack.http(api_key) as http:
        sub = await subscribe(http, cid, price_id, collection_method="send_invoice", days_until_due=14)
        assert sub["status"] == "incomplete"  # until its first invoice is paid
        await pay(http, sub["latest_invoice_id"])
        active = await wait_subscription(http, sub["id"], "active")
        at = instant(active["current_period_end"]) + timedelta(seconds=1)

        progress = await renew(stack, at)
        assert progress.renewed >= 1 and progress.not_charged >= 1, progress
        renewed = (await http.get(f"/v1/subscriptions/{sub['id']}")).json()
        assert renewed["status"] == "active"
        assert renewed["current_period_start"] == active["current_period_end"]
        invoice = (await http.get(f"/v1/invoices/{renewed['latest_invoice_id']}")).json()
        assert invoice["status"] == "open" and invoice["collection_method"] == "send_invoice", invoice
        assert invoice["due_date"] == (at + timedelta(days=14)).date().isoformat(), invoice
        charged = await db.fetchval("SELECT count(*) FROM paysaga.payments WHERE tenant_id = $1 AND invoice_id = $2",
                                    tenant_id, invoice["id"])
        assert charged == 0  # the customer pays it; nothing is taken from the card on file

        # The customer pays it when they choose: the subscription stays active, the invoice is paid once.
        await pay(http, invoice["id"])
        assert (await http.get(f"/v1/subscriptions/{sub['id']}")).json()["status"] == "active"
        await trial_balance_is_zero(http)


async def test_calendar_billing_on_the_31st_renews_on_the_last_day_of_shorter_months(
        stack: Stack, retire: list[str]) -> None:
    _, api_key, price_id, cid = await shop(stack, retire, "31.00")
    async with stack.http(api_key) as http:
        sub = await subscribe(http, cid, price_id, billing_cycle_anchor_config={"day_of_month": 31})
        current = await wait_subscription(http, sub["id"], "active")
        starts = [instant(current["current_period_end"])]
        for _ in range(4):
            at = instant(current["current_period_end"]) + timedelta(seconds=1)
            progress = await renew(stack, at)
            assert progress.renewed >= 1, progress
            current = await wait_subscription(http, sub["id"], "active")
            assert instant(current["current_period_start"]) == starts[-1]
            await wait_invoice(http, current["latest_invoice_id"], lambda b: b["status"] == "paid")
            starts.append(instant(current["current_period_end"]))
    for start in starts:
        last_day = (start.replace(day=1) + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        assert start.day == last_day.day, starts  # the 31st, or the last day of a shorter month
    assert len({s.month for s in starts}) == len(starts)  # one renewal a month, none skipped
    async with stack.http(api_key) as http:
        await trial_balance_is_zero(http)
