"""Subscriptions on the real stack over HTTP: the catalogue (versions, archive), create → first invoice paid →
active, trials, renewals by the renewal run (the preview equals the invoice issued), plan changes with each
proration behaviour (a credit note for unused time, the customer's credit applied to the next invoice), pause
and resume of collection, cancellation, and tenant isolation — with the trial balance at zero throughout."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus

from contracts.dunning import dunning_workflow_id
from contracts.renewals import RENEWAL_RUN_WORKFLOW, RenewalProgress, RenewalRunInput
from tests.integration.test_invoices import customer, seller, trial_balance_is_zero, wait_invoice
from tests.stack import Stack

pytestmark = pytest.mark.integration


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def price(http: httpx.AsyncClient, amount: str = "30.00", *, scheme: str = "per_unit", interval: str = "month",
                currency: str = "EUR", family: str | None = None) -> dict[str, Any]:
    product = f"prod_{uuid.uuid4().hex[:8]}"
    r = await http.post("/v1/products", json={"id": product, "name": "Pro plan"}, headers=key())
    assert r.status_code == 201, r.text
    body: dict[str, Any] = {"product_id": product, "currency": currency, "unit_amount": amount,
                            "billing_scheme": scheme, "interval": interval}
    if family:
        body["family"] = family
    r = await http.post("/v1/prices", json=body, headers=key())
    assert r.status_code == 201, r.text
    return r.json()


async def subscribe(http: httpx.AsyncClient, cid: str, price_id: str, **extra: Any) -> dict[str, Any]:
    r = await http.post("/v1/subscriptions", json={"customer_id": cid, "price_id": price_id, **extra}, headers=key())
    assert r.status_code == 201, r.text
    return r.json()


async def wait_subscription(http: httpx.AsyncClient, sid: str, status: str, timeout: float = 30) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            body = (await http.get(f"/v1/subscriptions/{sid}")).json()
            if body["status"] == status:
                return body
            await asyncio.sleep(0.1)


async def renew(stack: Stack, at: datetime, **overrides: Any) -> RenewalProgress:
    """One renewal run at `at`, on the stack's worker."""
    inp = RenewalRunInput(at=at, settle_wait_seconds=10, batch_size=overrides.pop("batch_size", 50), **overrides)
    result: RenewalProgress = await stack.client.execute_workflow(
        RENEWAL_RUN_WORKFLOW, inp, id=f"renewals-test-{uuid.uuid4().hex[:8]}", task_queue=stack.settings.task_queue,
        result_type=RenewalProgress, execution_timeout=timedelta(minutes=5))
    return result


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


async def test_catalogue_versions_and_archive(stack: Stack, retire: list[str]) -> None:
    tenant_id, api_key = await stack.new_tenant(["payments", "finance"])
    retire.append(tenant_id)
    async with stack.http(api_key) as http:
        p = await price(http, "19.99", family="pro_monthly")
        assert p["id"] == "pro_monthly.v1" and p["unit_amount"] == "19.99" and p["active"]
        r = await http.post("/v1/prices/pro_monthly.v1/revise", json={"unit_amount": "24.99"}, headers=key())
        assert r.status_code == 201, r.text
        assert r.json()["id"] == "pro_monthly.v2" and r.json()["supersedes"] == "pro_monthly.v1"
        old = (await http.get("/v1/prices/pro_monthly.v1")).json()
        assert old["active"] is False
        again = await http.post("/v1/prices/pro_monthly.v1/revise", json={"unit_amount": "29.99"}, headers=key())
        assert again.status_code == 409 and again.json()["type"].endswith("not-latest-version")
        same = await http.post("/v1/prices/pro_monthly.v2/revise", json={"unit_amount": "24.99"}, headers=key())
        assert same.status_code == 422 and same.json()["type"].endswith("revision-changes-nothing")
        listed = (await http.get("/v1/prices", params={"family": "pro_monthly"})).json()["data"]
        assert [x["id"] for x in listed] == ["pro_monthly.v1", "pro_monthly.v2"]
        r = await http.post(f"/v1/products/{p['product_id']}/archive")
        assert r.status_code == 200 and r.json()["active"] is False
        await seller(http)
        cid = await customer(http, {"country": "DE"})
        r = await http.post("/v1/subscriptions", json={"customer_id": cid, "price_id": "pro_monthly.v2"},
                            headers=key())
        assert r.status_code == 409 and r.json()["type"].endswith("product-inactive")
        r = await http.put("/v1/billing_policy", json={"change_policy": {"downgrades": "now"}, "dunning_policy": {
            "stages": [{"retry_after_seconds": 86400, "notification": {"template": "retry_1", "tone": "friendly"}},
                       {"retry_after_seconds": 259200, "notification": {"template": "retry_2", "tone": "firm"}}]}})
        assert r.status_code == 200, r.text
        assert r.json()["change_policy"]["downgrades"] == "now", r.text
        assert [x["retry_after_seconds"] for x in r.json()["dunning_policy"]["stages"]] == [86400, 259200]
        bad = await http.put("/v1/billing_policy", json={"dunning_policy": {"stages": [1, 3]}})
        assert bad.status_code in (400, 422) and bad.headers["content-type"].startswith("application/problem+json")
        backwards = await http.put("/v1/billing_policy", json={"dunning_policy": {"stages": [
            {"retry_after_seconds": 300, "notification": {"template": "a", "tone": "firm"}},
            {"retry_after_seconds": 200, "notification": {"template": "b", "tone": "firm"}}]}})
        assert backwards.status_code == 422 and backwards.json()["type"].endswith("invalid-policy"), backwards.text


async def test_create_first_invoice_paid_active_then_renewed_as_previewed(stack: Stack, retire: list[str]) -> None:
    tenant_id, api_key = await stack.new_tenant(["payments", "finance"])
    retire.append(tenant_id)
    async with stack.http(api_key) as http:
        await seller(http)
        cid = await customer(http, {"country": "DE", "city": "Berlin"})
        p = await price(http, "19.99")
        sub = await subscribe(http, cid, p["id"], quantity=3)
        assert sub["status"] == "incomplete" and sub["latest_invoice"]["total"] == "71.36"  # 59.97 + 19 % VAT
        active = await wait_subscription(http, sub["id"], "active")
        first = await wait_invoice(http, sub["latest_invoice_id"], lambda b: b["status"] == "paid")
        assert first["subscription_id"] == sub["id"] and first["amount_paid"] == "71.36"

        preview = (await http.get(f"/v1/subscriptions/{sub['id']}/upcoming_invoice")).json()
        assert preview["preview"] and preview["total"] == "71.36"
        progress = await renew(stack, instant(active["current_period_end"]) + timedelta(seconds=1))
        assert progress.done and progress.renewed >= 1
        renewed = await wait_subscription(http, sub["id"], "active")
        assert renewed["current_period_start"] == active["current_period_end"]
        issued = await wait_invoice(http, renewed["latest_invoice_id"], lambda b: b["status"] == "paid")
        assert issued["id"] == preview["id"]
        for field in ("subtotal", "tax", "total", "amount_due", "credit_applied", "period_start", "period_end",
                      "due_date", "currency", "collection_method"):
            assert issued[field] == preview[field], field
        assert [(x["description"], x["amount"], x["taxes"]) for x in issued["lines"]] == [
            (x["description"], x["amount"], x["taxes"]) for x in preview["lines"]]
        events = [e["type"] for e in (await http.get(f"/v1/subscriptions/{sub['id']}/events")).json()["data"]]
        assert events == ["subscription.created", "subscription.first_invoice_paid", "subscription.renewed",
                          "subscription.renewal_paid"]
        await trial_balance_is_zero(http)


async def test_trials_with_and_without_a_payment_method(stack: Stack, retire: list[str]) -> None:
    tenant_id, api_key = await stack.new_tenant(["payments", "finance"])
    retire.append(tenant_id)
    async with stack.http(api_key) as http:
        await seller(http)
        p = await price(http, "10.00", scheme="flat")
        paying = await customer(http, {"country": "DE"})
        trial = await subscribe(http, paying, p["id"], trial_period_days=14)
        assert trial["status"] == "trialing" and trial["trial_end"] == trial["current_period_end"]
        without = await customer(http, {"country": "DE"}, token=None)
        unpaid_trial = await subscribe(http, without, p["id"], trial_period_days=14)
        assert unpaid_trial["status"] == "trialing" and unpaid_trial["default_payment_method_id"] is None

        # Three days before: the "trial will end" notice, once.
        noticed = await renew(stack, instant(trial["trial_end"]) - timedelta(days=2))
        assert noticed.trial_notices == 2 and noticed.trials_converted == 0
        assert (await renew(stack, instant(trial["trial_end"]) - timedelta(days=1))).trial_notices == 0

        progress = await renew(stack, instant(trial["trial_end"]) + timedelta(seconds=1))
        assert progress.trials_converted >= 1 and progress.trials_paused >= 1
        converted = await wait_subscription(http, trial["id"], "active")
        first = await wait_invoice(http, converted["latest_invoice_id"], lambda b: b["status"] == "paid")
        assert first["total"] == "11.90" and first["period_start"] == trial["trial_end"][:10]
        paused = await wait_subscription(http, unpaid_trial["id"], "paused")
        assert "resume" in paused["actions"]

        # A payment method later: resumed, a first invoice paid, active again.
        r = await http.post(f"/v1/customers/{without}/payment_methods", json={"token": "pm_card_de"})
        assert r.status_code == 201, r.text
        r = await http.post(f"/v1/customers/{without}", json={"default_payment_method_id": r.json()["id"]})
        assert r.status_code == 200, r.text
        r = await http.post(f"/v1/subscriptions/{unpaid_trial['id']}/resume")
        assert r.status_code == 200, r.text
        resumed = await wait_subscription(http, unpaid_trial["id"], "active")
        await wait_invoice(http, resumed["latest_invoice_id"], lambda b: b["status"] == "paid")
        await trial_balance_is_zero(http)


async def test_cancel_at_period_end_undo_then_cancel_now_and_list_filters(stack: Stack, retire: list[str]) -> None:
    tenant_id, api_key = await stack.new_tenant(["payments", "finance"])
    retire.append(tenant_id)
    async with stack.http(api_key) as http:
        await seller(http)
        p = await price(http, "5.00")
        other = await price(http, "7.00")
        cid = await customer(http, {"country": "DE"})
        subs = [await subscribe(http, cid, p["id"]) for _ in range(3)]
        odd = await subscribe(http, cid, other["id"])
        for s in [*subs, odd]:
            await wait_subscription(http, s["id"], "active")
        first = subs[0]["id"]
        r = await http.post(f"/v1/subscriptions/{first}/cancel", json={"at_period_end": True})
        assert r.status_code == 200 and r.json()["cancel_at_period_end"] and "undo_cancel" in r.json()["actions"]
        r = await http.post(f"/v1/subscriptions/{first}/undo_cancel")
        assert r.status_code == 200 and not r.json()["cancel_at_period_end"]
        again = await http.post(f"/v1/subscriptions/{first}/undo_cancel")
        assert again.status_code == 409 and again.headers["content-type"].startswith("application/problem+json")
        r = await http.post(f"/v1/subscriptions/{first}/cancel", json={})
        assert r.status_code == 200 and r.json()["status"] == "canceled" and r.json()["ended_at"]
        r = await http.post(f"/v1/subscriptions/{first}/cancel", json={})
        assert r.status_code == 409

        ended = await http.post(f"/v1/subscriptions/{subs[1]['id']}/cancel", json={"at_period_end": True})
        at_end = instant(ended.json()["current_period_end"]) + timedelta(seconds=1)
        progress = await renew(stack, at_end)
        assert progress.ended >= 1
        assert (await http.get(f"/v1/subscriptions/{subs[1]['id']}")).json()["status"] == "canceled"

        listed = (await http.get("/v1/subscriptions", params={"customer_id": cid, "limit": 2})).json()
        assert len(listed["data"]) == 2 and listed["has_more"]
        rest = (await http.get("/v1/subscriptions", params={"customer_id": cid, "limit": 2,
                                                            "starting_after": listed["next_cursor"]})).json()
        ids = [x["id"] for x in listed["data"] + rest["data"]]
        assert sorted(ids) == sorted(s["id"] for s in [*subs, odd]) and len(set(ids)) == 4
        canceled = (await http.get("/v1/subscriptions", params={"status": "canceled"})).json()["data"]
        assert {x["id"] for x in canceled} == {first, subs[1]["id"]}
        by_price = (await http.get("/v1/subscriptions", params={"price_id": other["id"]})).json()["data"]
        assert [x["id"] for x in by_price] == [odd["id"]]
        missing = await http.get("/v1/subscriptions/sub_nope")
        assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
        await trial_balance_is_zero(http)


async def test_pause_collection_keep_as_draft_then_resume(stack: Stack, retire: list[str]) -> None:
    tenant_id, api_key = await stack.new_tenant(["payments", "finance"])
    retire.append(tenant_id)
    async with stack.http(api_key) as http:
        await seller(http)
        p = await price(http, "12.00")
        cid = await customer(http, {"country": "DE"})
        sub = await subscribe(http, cid, p["id"])
        active = await wait_subscription(http, sub["id"], "active")
        r = await http.post(f"/v1/subscriptions/{sub['id']}/pause_collection", json={"behavior": "keep_as_draft"})
        assert r.status_code == 200 and r.json()["pause_collection"]["behavior"] == "keep_as_draft", r.text
        progress = await renew(stack, instant(active["current_period_end"]) + timedelta(seconds=1))
        assert progress.renewed >= 1 and progress.charged == 0
        renewed = (await http.get(f"/v1/subscriptions/{sub['id']}")).json()
        assert renewed["current_period_start"] == active["current_period_end"]
        kept = (await http.get(f"/v1/invoices/{renewed['latest_invoice_id']}")).json()
        assert kept["status"] == "draft"
        r = await http.post(f"/v1/subscriptions/{sub['id']}/resume_collection")
        assert r.status_code == 200 and r.json()["pause_collection"] is None, r.text
        await trial_balance_is_zero(http)


@pytest.mark.parametrize("behavior", ["always_invoice", "create_prorations", "none"])
async def test_quantity_change_with_each_proration_behavior(stack: Stack, behavior: str, retire: list[str]) -> None:
    tenant_id, api_key = await stack.new_tenant(["payments", "finance"])
    retire.append(tenant_id)
    async with stack.http(api_key) as http:
        await seller(http)
        p = await price(http, "30.00")
        cid = await customer(http, {"country": "DE"})
        sub = await subscribe(http, cid, p["id"])
        active = await wait_subscription(http, sub["id"], "active")
        before = (await http.get(f"/v1/subscriptions/{sub['id']}/upcoming_invoice")).json()
        start, end = instant(active["current_period_start"]), instant(active["current_period_end"])
        midway = start + (end - start) / 2
        r = await http.post(f"/v1/subscriptions/{sub['id']}/change", json={
            "quantity": 2, "proration_behavior": behavior, "timing": "now",
            "proration_date": midway.isoformat().replace("+00:00", "Z")})
        assert r.status_code == 200, r.text
        changed = r.json()
        assert changed["quantity"] == 2
        preview = (await http.get(f"/v1/subscriptions/{sub['id']}/upcoming_invoice")).json()
        if behavior == "always_invoice":
            assert changed["latest_invoice_id"] != active["latest_invoice_id"]
            now_invoice = await wait_invoice(http, changed["latest_invoice_id"], lambda b: b["status"] == "paid")
            assert all(line["amount"] != "0.00" for line in now_invoice["lines"])
        elif behavior == "create_prorations":
            assert changed["latest_invoice_id"] == active["latest_invoice_id"]
            assert len(preview["lines"]) > len(before["lines"])  # the remaining time's charge waits for it
        else:
            assert changed["latest_invoice_id"] == active["latest_invoice_id"]
            assert len(preview["lines"]) == len(before["lines"])
        # The next renewal issues exactly what was previewed.
        await renew(stack, end + timedelta(seconds=1))
        renewed = await wait_subscription(http, sub["id"], "active")
        issued = await wait_invoice(http, renewed["latest_invoice_id"], lambda b: b["status"] == "paid")
        assert issued["id"] == preview["id"]
        for field in ("subtotal", "tax", "total", "credit_applied", "amount_due"):
            assert issued[field] == preview[field], field
        await trial_balance_is_zero(http)


async def test_a_declined_renewal_goes_to_dunning_and_a_new_card_recovers_it(stack: Stack, retire: list[str]) -> None:
    tenant_id, api_key = await stack.new_tenant(["payments", "finance"])
    retire.append(tenant_id)
    async with stack.http(api_key) as http:
        await seller(http)
        p = await price(http, "9.00")
        cid = await customer(http, {"country": "DE"})
        # Dunning runs on the server's clock: the renewal is due a few seconds from now, for real (a free first
        # period up to the anchor).
        anchor = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
        sub = await subscribe(http, cid, p["id"], billing_cycle_anchor=anchor.isoformat().replace("+00:00", "Z"),
                              prorate_first_period=False)
        active = await wait_subscription(http, sub["id"], "active")
        assert active["current_period_end"] == anchor.isoformat().replace("+00:00", "Z")
        r = await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": "pm_card_chargeDeclined"})
        assert r.status_code == 201, r.text
        r = await http.post(f"/v1/subscriptions/{sub['id']}/payment_method", json={"payment_method_id": r.json()["id"]})
        assert r.status_code == 200, r.text
        await asyncio.sleep(max(0.0, (anchor - datetime.now(UTC)).total_seconds()) + 1.1)
        progress = await renew(stack, datetime.now(UTC).replace(microsecond=0))
        assert progress.failed >= 1 and progress.handed_to_dunning >= 1
        past_due = await wait_subscription(http, sub["id"], "past_due")
        invoice_id = past_due["latest_invoice_id"]
        invoice = (await http.get(f"/v1/invoices/{invoice_id}")).json()
        assert invoice["status"] == "open"
        dunning = stack.client.get_workflow_handle(dunning_workflow_id(str(tenant_id), invoice_id))
        assert (await dunning.describe()).status == WorkflowExecutionStatus.RUNNING
        # A new card, even within the failure's second: dunning retries at once (not at its next stage), the
        # invoice is paid, the subscription is active again.
        r = await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": "pm_card_de"})
        r = await http.post(f"/v1/subscriptions/{sub['id']}/payment_method", json={"payment_method_id": r.json()["id"]})
        assert r.status_code == 200, r.text
        recovered = await wait_subscription(http, sub["id"], "active")
        await wait_invoice(http, invoice_id, lambda b: b["status"] == "paid")
        async with asyncio.timeout(30):
            while (await dunning.describe()).status == WorkflowExecutionStatus.RUNNING:
                await asyncio.sleep(0.2)
        events = [e["type"] for e in (await http.get(f"/v1/subscriptions/{sub['id']}/events")).json()["data"]]
        assert events[-3:] == ["subscription.renewal_failed", "subscription.payment_method_updated",
                               "subscription.recovered"], events
        assert recovered["current_period_start"] == active["current_period_end"]
        scraped = (await http.get("/metrics")).text
        assert 'paysaga_renewals{outcome="recovered"}' in scraped
        assert 'paysaga_dunning_recoveries{stage="new_payment_method"}' in scraped
        assert 'paysaga_dunning_revenue_recovered_micros{currency="EUR"}' in scraped
        await trial_balance_is_zero(http)


async def test_dunning_exhausted_cancels_only_that_subscription(stack: Stack, retire: list[str]) -> None:
    tenant_id, api_key = await stack.new_tenant(["payments", "finance"])
    retire.append(tenant_id)
    async with stack.http(api_key) as http:
        await seller(http)
        note = {"template": "retry", "tone": "firm"}
        r = await http.put("/v1/billing_policy", json={"dunning_policy": {
            "stages": [{"retry_after_seconds": 1, "notification": note},
                       {"retry_after_seconds": 2, "notification": note}],
            "final_action": {"subscription": "canceled", "mark_invoice_uncollectible": True, "notification": note}}})
        assert r.status_code == 200, r.text
        p = await price(http, "4.00")
        cid = await customer(http, {"country": "DE"})
        anchor = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
        at = anchor.isoformat().replace("+00:00", "Z")
        doomed = await subscribe(http, cid, p["id"], billing_cycle_anchor=at, prorate_first_period=False)
        other = await subscribe(http, cid, p["id"], billing_cycle_anchor=at, prorate_first_period=False)
        await wait_subscription(http, doomed["id"], "active")
        await wait_subscription(http, other["id"], "active")
        r = await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": "pm_card_chargeDeclined"})
        r = await http.post(f"/v1/subscriptions/{doomed['id']}/payment_method",
                            json={"payment_method_id": r.json()["id"]})
        assert r.status_code == 200, r.text
        await asyncio.sleep(max(0.0, (anchor - datetime.now(UTC)).total_seconds()) + 1.1)
        progress = await renew(stack, datetime.now(UTC).replace(microsecond=0))
        assert progress.failed == 1 and progress.succeeded >= 1
        canceled = await wait_subscription(http, doomed["id"], "canceled", timeout=60)
        invoice = await wait_invoice(http, canceled["latest_invoice_id"], lambda b: b["status"] == "uncollectible")
        assert invoice["amount_paid"] == "0.00"
        events = [e["type"] for e in (await http.get(f"/v1/subscriptions/{doomed['id']}/events")).json()["data"]]
        assert events.count("subscription.retry_failed") == 2, events
        assert events[-1] == "subscription.dunning_exhausted_canceled", events
        # Dunning blocked only the subscription whose invoice was unpaid.
        assert (await http.get(f"/v1/subscriptions/{other['id']}")).json()["status"] == "active"
        await trial_balance_is_zero(http)
