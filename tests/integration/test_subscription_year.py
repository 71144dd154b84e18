"""A year of one subscription's life on the real stack, in seconds: a monthly subscription created over HTTP, then
twelve renewals by the renewal run at successive instants (each the period's end), a quantity change with
`create_prorations` in the fourth period, and the sixth renewal declined and recovered by its DunningWorkflow
on a new card. Checked on what was written: every invoice's period and amounts to the micro-unit, each paid
once, one dunning run that recovered, the subscription active at the end, the trial balance at zero."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus

from contracts.dunning import STATUS_QUERY, DunningState, dunning_workflow_id
from contracts.renewals import Pacing, RenewalProgress
from tests.integration.seeding import seed_due_subscriptions
from tests.integration.test_invoices import customer, seller, trial_balance_is_zero, wait_invoice
from tests.integration.test_subscriptions import instant, price, renew, subscribe, wait_subscription
from tests.integration.test_tenants_and_keys import cli
from tests.stack import Stack

pytestmark = pytest.mark.integration

M = 10_000  # micro-units per cent
RENEWALS = 12
CHANGED_IN = 4  # the period (1 = the first, invoiced at creation) in which the quantity goes from 1 to 2
DECLINED = 6  # the renewal whose charge is declined


def micros(amount: str) -> int:
    units, _, cents = amount.partition(".")
    sign = -1 if units.startswith("-") else 1
    return sign * (abs(int(units)) * 1_000_000 + int(cents.ljust(2, "0")) * M)


def next_month(d: date) -> date:
    # Anniversary billing on a day every month has (the subscription starts today; see the day check below).
    return date(d.year + d.month // 12, d.month % 12 + 1, d.day)


async def set_card(http: httpx.AsyncClient, cid: str, sid: str, token: str) -> str:
    r = await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": token})
    assert r.status_code in (200, 201), r.text  # 200: the customer's card of that token, attached already
    method = r.json()["id"]
    r = await http.post(f"/v1/subscriptions/{sid}/payment_method", json={"payment_method_id": method})
    assert r.status_code == 200, r.text
    return str(method)


async def test_a_year_of_one_subscription(
        stack: Stack, retire: list[str]) -> None:
    tenant_id, api_key = await stack.new_tenant(["payments", "finance"])
    retire.append(tenant_id)
    db: Any = stack.admin_pool
    async with stack.http(api_key) as http:
        await seller(http)
        p = await price(http, "30.00")
        cid = await customer(http, {"country": "DE"})
        sub = await subscribe(http, cid, p["id"])
        sid = sub["id"]
        current = await wait_subscription(http, sid, "active")
        start = instant(current["current_period_start"]).date()
        if start.day > 28:
            pytest.skip("anniversary dates past the 28th move in short months; the expected periods assume not")

        declined_invoice = None
        for n in range(1, RENEWALS + 1):
            if n == CHANGED_IN:  # in period n (the one the (n-1)th renewal began): 1 seat → 2, at its midpoint
                s, e = instant(current["current_period_start"]), instant(current["current_period_end"])
                midway = s + (e - s) / 2
                assert midway.microsecond == 0 and (e - s).total_seconds() % 2 == 0
                r = await http.post(f"/v1/subscriptions/{sid}/change", json={
                    "quantity": 2, "proration_behavior": "create_prorations", "timing": "now",
                    "proration_date": midway.isoformat().replace("+00:00", "Z")})
                assert r.status_code == 200, r.text
                assert r.json()["quantity"] == 2 and r.json()["latest_invoice_id"] == current["latest_invoice_id"]
            if n == DECLINED:
                await set_card(http, cid, sid, "pm_card_chargeDeclined")
            end = instant(current["current_period_end"])
            progress = await renew(stack, end + timedelta(seconds=1))
            assert progress.done and progress.renewed >= 1, progress
            if n == DECLINED:
                assert progress.failed >= 1 and progress.handed_to_dunning >= 1, progress
                past_due = await wait_subscription(http, sid, "past_due")
                declined_invoice = past_due["latest_invoice_id"]
                assert (await http.get(f"/v1/invoices/{declined_invoice}")).json()["status"] == "open"
                # A new card: dunning retries at once, without waiting for its first stage (a day away).
                await set_card(http, cid, sid, "pm_card_de")
            renewed = await wait_subscription(http, sid, "active")
            assert instant(renewed["current_period_start"]) == end, n
            await wait_invoice(http, renewed["latest_invoice_id"], lambda b: b["status"] == "paid")
            current = renewed

        # The invoices, oldest first: the first at creation, then one per renewal, each for the next month.
        invoices = [(await http.get(f"/v1/invoices/{r['invoice_id']}")).json() for r in await db.fetch(
            "SELECT invoice_id FROM paysaga.invoices WHERE tenant_id = $1 AND subscription_id = $2 "
            "ORDER BY period_start, created_at", tenant_id, sid)]
        assert len(invoices) == RENEWALS + 1
        period = start
        for n, inv in enumerate(invoices, start=1):
            assert (inv["period_start"], inv["period_end"]) == (period.isoformat(), next_month(period).isoformat()), n
            assert inv["status"] == "paid" and inv["currency"] == "EUR", n
            period = next_month(period)
            seats = 1 if n <= CHANGED_IN else 2  # billed in advance: the change shows from the next invoice
            # The change at the midpoint adds half a month of two seats to the next invoice; the unused half
            # month of one seat is credited (a credit note of 15.00 + VAT) and that credit pays part of it.
            net = seats * 30_000_000 + (30_000_000 if n == CHANGED_IN + 1 else 0)
            credit = 15_000_000 * 119 // 100 if n == CHANGED_IN + 1 else 0
            assert micros(inv["subtotal"]) == net, (n, inv["subtotal"])
            assert micros(inv["tax"]) == net * 19 // 100, (n, inv["tax"])  # German VAT, exact in cents here
            assert micros(inv["total"]) == net * 119 // 100, (n, inv["total"])
            assert micros(inv["credit_applied"]) == credit, (n, inv["credit_applied"])
            assert micros(inv["amount_due"]) == net * 119 // 100 - credit, (n, inv["amount_due"])
        assert micros(invoices[CHANGED_IN]["amount_due"]) == 89_250_000  # 60 + 30 - 15, plus 19 %
        lines = [sorted(micros(x["amount"]) for x in inv["lines"]) for inv in invoices]
        assert lines == [[30_000_000]] * CHANGED_IN + [[30_000_000, 60_000_000]] + [[60_000_000]] * (
            RENEWALS - CHANGED_IN), lines
        notes = await db.fetch("SELECT * FROM paysaga.credit_notes WHERE tenant_id = $1", tenant_id)
        assert len(notes) == 1, notes
        assert invoices[DECLINED]["id"] == declined_invoice

        # Paid once each: one completed payment per invoice of its total; the declined renewal one failure more.
        due = {inv["id"]: micros(inv["amount_due"]) for inv in invoices}
        rows = await db.fetch(
            """SELECT i.invoice_id, p.status, p.amount_micros
                 FROM paysaga.invoices i JOIN paysaga.payments p USING (tenant_id, invoice_id)
                WHERE i.tenant_id = $1 AND i.subscription_id = $2 ORDER BY p.created_at""", tenant_id, sid)
        by_invoice: dict[str, list[str]] = {}
        for r in rows:
            by_invoice.setdefault(r["invoice_id"], []).append(r["status"])
            if r["status"] == "completed":
                assert r["amount_micros"] == due[r["invoice_id"]], r
        assert by_invoice == {inv["id"]: (["failed", "completed"] if inv["id"] == declined_invoice else ["completed"])
                              for inv in invoices}

        # One dunning run, for the declined invoice, and it recovered it.
        dunning = await db.fetch("SELECT invoice_id FROM paysaga.subscription_dunning WHERE tenant_id = $1 "
                                 "AND subscription_id = $2", tenant_id, sid)
        assert [r["invoice_id"] for r in dunning] == [declined_invoice]
        handle = stack.client.get_workflow_handle(dunning_workflow_id(str(tenant_id), str(declined_invoice)))
        async with asyncio.timeout(30):
            while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await asyncio.sleep(0.2)
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
        state = await handle.query(STATUS_QUERY, result_type=DunningState)
        assert state.outcome == "recovered" and state.attempts == 2, state

        final = (await http.get(f"/v1/subscriptions/{sid}")).json()
        assert final["status"] == "active" and final["quantity"] == 2
        events = [e["type"] for e in (await http.get(f"/v1/subscriptions/{sid}/events")).json()["data"]]
        assert events.count("subscription.renewed") == RENEWALS, events
        assert events.count("subscription.renewal_failed") == 1 and events.count("subscription.recovered") == 1
        await trial_balance_is_zero(http)


async def test_a_new_customer_default_recovers_the_subscription_charged_to_it_and_only_that(
        stack: Stack, retire: list[str]) -> None:
    tenant_id, api_key = await stack.new_tenant(["payments", "finance"])
    retire.append(tenant_id)
    db: Any = stack.admin_pool
    async with stack.http(api_key) as http:
        await seller(http)
        p = await price(http, "12.00")
        cid = await customer(http, {"country": "DE"})
        on_default = await subscribe(http, cid, p["id"])  # charged to the customer's default payment method
        on_own = await subscribe(http, cid, p["id"])  # charged to a card of its own
        ends = [instant((await wait_subscription(http, s["id"], "active"))["current_period_end"])
                for s in (on_default, on_own)]
        r = await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": "pm_card_chargeDeclined"})
        assert r.status_code == 201, r.text
        r = await http.post(f"/v1/customers/{cid}", json={"default_payment_method_id": r.json()["id"]})
        assert r.status_code == 200, r.text
        await set_card(http, cid, on_own["id"], "pm_card_chargeDeclinedInsufficientFunds")

        progress = await renew(stack, max(ends) + timedelta(seconds=1))
        assert progress.failed >= 2 and progress.handed_to_dunning >= 2, progress
        invoices = [(await wait_subscription(http, s["id"], "past_due"))["latest_invoice_id"]
                    for s in (on_default, on_own)]
        handles = [stack.client.get_workflow_handle(dunning_workflow_id(str(tenant_id), i)) for i in invoices]
        async with asyncio.timeout(30):  # both dunning runs started and waiting for their first stage (a day)
            for h in handles:
                while (await h.query(STATUS_QUERY, result_type=DunningState)).waiting_for != "retry":
                    await asyncio.sleep(0.1)
        for h, invoice_id in zip(handles, invoices, strict=True):
            # The starter did the first steps: each run waits for its first retry without a local step before
            # its timer, and what those steps write is there once (the dunning event, the stage's notice).
            events = [e async for e in h.fetch_history_events()]
            timer = next(i for i, e in enumerate(events) if e.HasField("timer_started_event_attributes"))
            assert not [e for e in events[:timer] if e.HasField("marker_recorded_event_attributes")], events
            assert await db.fetchval("SELECT count(*) FROM paysaga.invoice_events WHERE invoice_id = $1 "
                                     "AND type = 'invoice.dunning_started'", invoice_id) == 1
            notices = await db.fetch("SELECT payload FROM paysaga.outbox WHERE tenant_id = $1 AND event_id = $2",
                                     tenant_id, f"ntf_{invoice_id}_dunning_retry_1")
            assert len(notices) == 1 and notices[0]["payload"]["data"]["stage"] == 1, notices

        # The customer's new default, through the customer's update: the subscription charged to it is retried
        # at once and recovers; the one with its own card is not retried on that card again.
        r = await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": "pm_card_visa"})
        assert r.status_code == 201, r.text
        r = await http.post(f"/v1/customers/{cid}", json={"default_payment_method_id": r.json()["id"]})
        assert r.status_code == 200, r.text
        await wait_subscription(http, on_default["id"], "active")
        await wait_invoice(http, invoices[0], lambda b: b["status"] == "paid")
        async with asyncio.timeout(30):
            while (await handles[0].describe()).status == WorkflowExecutionStatus.RUNNING:
                await asyncio.sleep(0.1)
        state = await handles[0].query(STATUS_QUERY, result_type=DunningState)
        assert state.outcome == "recovered" and state.attempts == 2, state
        assert any("a new payment method was added" in x for x in state.explanations), state.explanations

        await asyncio.sleep(1)  # time for a retry that should not happen
        other = await handles[1].query(STATUS_QUERY, result_type=DunningState)
        assert other.outcome is None and other.waiting_for == "retry" and other.attempts == 1, other
        assert (await http.get(f"/v1/subscriptions/{on_own['id']}")).json()["status"] == "past_due"
        payments = {i: [r["status"] for r in await db.fetch(
            "SELECT status FROM paysaga.payments WHERE tenant_id = $1 AND invoice_id = $2 ORDER BY created_at",
            tenant_id, i)] for i in invoices}
        assert payments == {invoices[0]: ["failed", "completed"], invoices[1]: ["failed"]}, payments
        await trial_balance_is_zero(http)


async def test_the_cli_renewal_run_dry_run_writes_nothing_then_a_real_run_renews(
        stack: Stack, tmp_path: Any, retire: list[str]) -> None:
    tenant_id, api_key = await stack.new_tenant(["payments", "finance"])
    retire.append(tenant_id)
    db: Any = stack.admin_pool
    env = {"PAYSAGA_TEMPORAL_ADDRESS": stack.settings.temporal_address,
           "PAYSAGA_TEMPORAL_NAMESPACE": stack.settings.temporal_namespace,
           "PAYSAGA_TASK_QUEUE": stack.settings.task_queue, "PAYSAGA_RENEWAL_SETTLE_WAIT_SECONDS": "10"}
    async with stack.http(api_key) as http:
        await seller(http)
        p = await price(http, "7.00")
        cid = await customer(http, {"country": "DE"})
        sub = await subscribe(http, cid, p["id"])
        active = await wait_subscription(http, sub["id"], "active")
        at = (instant(active["current_period_end"]) + timedelta(seconds=1)).isoformat().replace("+00:00", "Z")

        async def written() -> dict[str, int]:
            row = await db.fetchrow(
                """SELECT (SELECT count(*) FROM paysaga.invoices WHERE tenant_id = $1) AS invoices,
                          (SELECT count(*) FROM paysaga.payments WHERE tenant_id = $1) AS payments,
                          (SELECT count(*) FROM paysaga.renewal_charges WHERE tenant_id = $1) AS charges,
                          (SELECT count(*) FROM paysaga.subscription_events WHERE tenant_id = $1) AS events""",
                tenant_id)
            return dict(row)

        before = await written()
        code, out = await cli("renewals", "run", "--at", at, "--dry-run", cwd=tmp_path, env=env)
        assert code == 0, out
        assert "(dry run)" in out.splitlines()[0], out
        dry = RenewalProgress.model_validate_json(out[out.index("{"):])
        assert dry.dry_run and dry.done and dry.due >= 1, dry
        assert dry.invoiced == dry.charged == dry.renewed == 0, dry
        assert await written() == before  # nothing written
        assert (await http.get(f"/v1/subscriptions/{sub['id']}")).json()["current_period_start"] == \
            active["current_period_start"]

        code, out = await cli("renewals", "run", "--at", at, cwd=tmp_path, env=env)
        assert code == 0, out
        real = RenewalProgress.model_validate_json(out[out.index("{"):])
        assert not real.dry_run and real.done and real.renewed >= 1 and real.due >= 1, real
        renewed = await wait_subscription(http, sub["id"], "active")
        assert renewed["current_period_start"] == active["current_period_end"]
        await wait_invoice(http, renewed["latest_invoice_id"], lambda b: b["status"] == "paid")
        after = await written()
        assert after["invoices"] == before["invoices"] + 1 and after["charges"] == before["charges"] + 1, after
        await trial_balance_is_zero(http)


async def test_renewal_charges_are_paced_at_the_configured_rate_and_the_pacing_is_reported(
        stack: Stack, retire: list[str]) -> None:
    tenant_id, api_key = await stack.new_tenant(["payments", "finance"])
    retire.append(tenant_id)
    db: Any = stack.admin_pool
    n, rate, burst = 60, 20.0, 5.0
    async with stack.http(api_key) as http:
        await seller(http)
        p = await price(http, "3.00")
        cid = await customer(http, {"country": "DE"}, token="pm_card_visa")
        template = await subscribe(http, cid, p["id"])
        await wait_subscription(http, template["id"], "active")
        assert (await http.post(f"/v1/subscriptions/{template['id']}/cancel", json={})).status_code == 200
        at = datetime(2030, 7, 1, 3, 17, tzinfo=UTC)
        ids = await seed_due_subscriptions(db, tenant_id, template["id"], n, at, prefix=f"p{uuid.uuid4().hex[:4]}")
        account = f"sandbox-paced-{uuid.uuid4().hex[:6]}"  # a bucket of its own: full at the start
        pacing = Pacing(account=account, rate_per_second=rate, burst=burst, chunk=5, concurrency=2)
        progress = await renew(stack, at, pacing=pacing, batch_size=30)
        assert progress.done and progress.succeeded >= n, progress
        assert (progress.pacing.account, progress.pacing.rate_per_second) == (account, rate), progress.pacing
        # Beyond the burst, n - burst charges wait for tokens at `rate` a second: that long at least, reported.
        least = (n - burst) / rate
        assert progress.pacing.waited_seconds >= 0.8 * least, progress.pacing
        sent = [r["created_at"] for r in await db.fetch(
            """SELECT x.created_at FROM sandbox.payment_intents x JOIN paysaga.payments p USING (payment_id)
                 JOIN paysaga.invoices i ON i.tenant_id = p.tenant_id AND i.invoice_id = p.invoice_id
                WHERE p.tenant_id = $1 AND i.subscription_id = ANY($2) ORDER BY x.created_at""", tenant_id, ids)]
        assert len(sent) == n
        assert (sent[-1] - sent[0]).total_seconds() >= 0.9 * least, (sent[0], sent[-1])
        # Respected: no second saw more than the tokens of a second plus the burst and the chunks in flight (tokens
        # are taken before a call; the calls in flight may reach the provider together), allowing half a second
        # of lag: an intent is stamped when the provider's transaction starts, which a busy machine delays, so
        # chunks granted apart can land close together. Unpaced, all 60 would land within the same second.
        lag = 0.5
        most = rate * (1 + lag) + burst + pacing.chunk * pacing.concurrency
        assert most < n
        for i, first in enumerate(sent):
            within = sum(1 for t in sent[i:] if t - first < timedelta(seconds=1))
            assert within <= most, (first, within)
        await trial_balance_is_zero(http)
