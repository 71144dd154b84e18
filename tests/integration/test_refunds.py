"""Refunds end to end: API → RefundWorkflow → sandbox provider → refund webhooks (or a poll)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from tests.integration.helpers import customer_with_method, pay, wait_status
from tests.recording import record_history
from tests.stack import Stack

pytestmark = pytest.mark.integration


async def completed_payment(http: httpx.AsyncClient, amount: str = "10.00", token: str = "pm_card_visa") -> dict:
    cid, pm = await customer_with_method(http, token)
    body = (await pay(http, cid, pm, amount)).json()
    return await wait_status(http, body["id"], {"completed"})


async def refund(http: httpx.AsyncClient, payment_id: str, amount: str | None = None,
                 key: str | None = None) -> httpx.Response:
    body = {"reason": "requested_by_customer", **({"amount": amount} if amount else {})}
    return await http.post(f"/v1/payments/{payment_id}/refunds", json=body,
                           headers={"Idempotency-Key": key or str(uuid.uuid4())})


async def wait_refund(http: httpx.AsyncClient, refund_id: str, statuses: set[str], timeout: float = 30) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            body = (await http.get(f"/v1/refunds/{refund_id}")).json()
            if body["status"] in statuses:
                return body
            await asyncio.sleep(0.1)


async def test_full_refund_settles_by_webhook(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        payment = await completed_payment(http, "12.34")
        r = await refund(http, payment["id"])
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["status"] == "pending" and body["amount"] == "12.34" and body["provider_refund_id"]
        done = await wait_refund(http, body["id"], {"succeeded"})
        listed = (await http.get(f"/v1/payments/{payment['id']}/refunds")).json()
    assert done["workflow_id"] == f"refund/{tenant[0]}/{body['id']}"
    await record_history(stack.client.get_workflow_handle(done["workflow_id"]), "full_by_webhook", "refund")
    assert listed["amount_refunded"] == "12.34" and listed["amount_refundable"] == "0.00"
    events = await stack.admin_pool.fetch(
        "SELECT new_status FROM paysaga.refund_events WHERE refund_id = $1 ORDER BY seq", body["id"])
    assert [e["new_status"] for e in events] == ["pending", "succeeded"]
    outbox = await stack.admin_pool.fetchval(
        "SELECT count(*) FROM paysaga.outbox WHERE payload->'refund'->>'id' = $1", body["id"])
    assert outbox == 2


async def test_partial_refunds_never_exceed_the_captured_amount(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        payment = await completed_payment(http, "10.00")
        first = await refund(http, payment["id"], "3.00")
        second = await refund(http, payment["id"], "4.00")
        assert first.status_code == second.status_code == 201
        too_much = await refund(http, payment["id"], "4.00")
        assert too_much.status_code == 422 and too_much.json()["type"].endswith("/refund-exceeds-refundable")
        rest = await refund(http, payment["id"])
        assert rest.status_code == 201 and rest.json()["amount"] == "3.00"
        again = await refund(http, payment["id"], "0.01")
        assert again.status_code == 409 and again.json()["type"].endswith("/payment-fully-refunded")
        bad = await refund(http, payment["id"], "0.001")
        assert bad.status_code == 422


async def test_concurrent_refunds_are_capped_by_the_database(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        payment = await completed_payment(http, "10.00")
        responses = await asyncio.gather(*(refund(http, payment["id"], "3.00") for _ in range(6)))
    created = [r for r in responses if r.status_code == 201]
    assert len(created) == 3, [r.status_code for r in responses]
    assert all(r.status_code == 422 for r in responses if r.status_code != 201)
    total = await stack.admin_pool.fetchval(
        "SELECT sum(amount_micros) FROM paysaga.refunds WHERE payment_id = $1", payment["id"])
    assert total == 9_000_000


async def test_refund_of_a_payment_that_is_not_completed_is_409(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http, "pm_card_threeDSecure2Required")
        pending = (await pay(http, cid, pm)).json()
        r = await refund(http, pending["id"])
        assert r.status_code == 409 and r.json()["type"].endswith("/payment-not-refundable")
        assert (await refund(http, "pay_missing")).status_code == 404


async def test_failed_refund_gives_the_amount_back(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        payment = await completed_payment(http, "5.00", "pm_card_refundFail")
        first = (await refund(http, payment["id"])).json()
        failed = await wait_refund(http, first["id"], {"failed"})
        assert failed["failure_code"] == "expired_or_canceled_card"
        retry = await refund(http, payment["id"])
        assert retry.status_code == 201 and retry.json()["amount"] == "5.00"


async def test_refund_request_is_idempotent(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        payment = await completed_payment(http, "10.00")
        key = str(uuid.uuid4())
        a, b = await refund(http, payment["id"], "1.00", key), await refund(http, payment["id"], "1.00", key)
        assert a.status_code == b.status_code == 201 and a.json()["id"] == b.json()["id"]
        assert b.headers["Idempotent-Replayed"] == "true"
        over = str(uuid.uuid4())
        x, y = await refund(http, payment["id"], "99.00", over), await refund(http, payment["id"], "99.00", over)
        assert x.status_code == y.status_code == 422 and y.headers["Idempotent-Replayed"] == "true"
    n = await stack.admin_pool.fetchval("SELECT count(*) FROM paysaga.refunds WHERE payment_id = $1", payment["id"])
    assert n == 1


async def test_refund_settles_by_polling_when_webhooks_are_lost(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        payment = await completed_payment(http, "2.00")
        stack.settings.sandbox_webhook_drop_rate = 1.0
        try:
            body = (await refund(http, payment["id"])).json()
            await wait_refund(http, body["id"], {"succeeded"}, timeout=stack.settings.webhook_wait_seconds + 20)
        finally:
            stack.settings.sandbox_webhook_drop_rate = 0.0


async def test_database_refuses_over_refund_and_terminal_changes(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        payment = await completed_payment(http, "1.00")
        body = (await refund(http, payment["id"])).json()
        await wait_refund(http, body["id"], {"succeeded"})
    async with stack.admin_pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="exceeds the refundable"):
            await conn.execute(
                """INSERT INTO paysaga.refunds (refund_id, tenant_id, payment_id, amount_micros, currency, workflow_id)
                   VALUES ('re_direct', $1, $2, 1, 'USD', 'x')""", uuid.UUID(tenant[0]), payment["id"])
        with pytest.raises(asyncpg.CheckViolationError, match="terminal"):
            await conn.execute("UPDATE paysaga.refunds SET status = 'failed' WHERE refund_id = $1", body["id"])
        with pytest.raises(asyncpg.CheckViolationError, match="append-only"):
            await conn.execute("DELETE FROM paysaga.refund_events WHERE refund_id = $1", body["id"])


async def test_refunds_are_audited(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        payment = await completed_payment(http, "3.00")
        body = (await refund(http, payment["id"], "1.00")).json()
        events = (await http.get("/v1/audit", params={"action": "refund.create"})).json()["data"]
    assert [(e["resource_id"], e["correlation_id"]) for e in events] == [(body["id"], body["workflow_id"])]


async def test_charge_refunded_webhook_settles_the_refund(stack: Stack, tenant: tuple[str, str]) -> None:
    """Stripe's `charge.refunded` carries the charge with its refunds: each paysaga refund in it is settled."""
    from tests.integration.webhook_helpers import post_event

    s = stack.settings
    async with stack.http(tenant[1]) as http:
        payment = await completed_payment(http, "9.00")
        s.sandbox_webhook_drop_rate, s.webhook_wait_seconds = 1.0, 3600.0  # no refund.* webhook, no poll
        try:
            body = (await refund(http, payment["id"], "2.00")).json()
            await asyncio.sleep(0.5)  # the provider has settled it; nobody was told
            assert (await http.get(f"/v1/refunds/{body['id']}")).json()["status"] == "pending"
            event = {
                "id": f"evt_test_{uuid.uuid4().hex[:16]}", "object": "event", "type": "charge.refunded",
                "data": {"object": {
                    "id": "ch_test", "object": "charge", "payment_intent": payment["provider_intent_id"],
                    "metadata": {"tenant_id": tenant[0], "payment_id": payment["id"]},
                    "refunds": {"object": "list", "data": [{
                        "id": body["provider_refund_id"], "object": "refund", "status": "succeeded", "amount": 200,
                        "metadata": {"tenant_id": tenant[0], "refund_id": body["id"], "payment_id": payment["id"]},
                    }]},
                }},
            }
            r = await post_event(stack, event)
            assert r.status_code == 200 and r.json() == {"received": True}, r.text
            await wait_refund(http, body["id"], {"succeeded"}, timeout=10)
        finally:
            s.sandbox_webhook_drop_rate, s.webhook_wait_seconds = 0.0, 3.0
