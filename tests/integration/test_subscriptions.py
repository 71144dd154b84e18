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


async def test_catalogue_versions_and_archive(stack: Stack) -> None:
    _, api_key = await stack.new_tenant(["payments", "finance"])
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
        r = await http.put("/v1/billing_policy", json={"change_policy": {"downgrades": "now"},
                                                       "dunning_policy": {"stages": [1, 3]}})
        assert r.status_code == 200, r.text
        assert r.json()["change_policy"]["downgrades"] == "now" and r.json()["dunning_policy"] == {"stages": [1, 3]}


async def test_create_first_invoice_paid_active_then_renewed_as_previewed(stack: Stack) -> None:
    _, api_key = await stack.new_tenant(["payments", "finance"])
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
