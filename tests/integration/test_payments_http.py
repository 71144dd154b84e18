"""End to end over HTTP on the real stack: API → Temporal → worker → sandbox provider → signed webhooks."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.api.enums.v1 import EventType

from tests.integration.helpers import customer_with_method, pay, wait_status
from tests.integration.webhook_helpers import intent_event, post_event
from tests.stack import Stack

pytestmark = pytest.mark.integration


async def transitions(stack: Stack, payment_id: str) -> list[str]:
    rows = await stack.admin_pool.fetch(
        "SELECT metadata->>'transition' AS t FROM paysaga.payment_events WHERE payment_id = $1 ORDER BY seq",
        payment_id)
    return [r["t"] for r in rows]


async def test_a_card_payment_completes_at_confirm_in_one_workflow_task(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http)
        r = await pay(http, cid, pm, "7.50")
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["status"] == "completed" and body["provider_intent_id"].startswith("pi_")  # as on Stripe
        handle = stack.client.get_workflow_handle(body["workflow_id"])
        await handle.result()
    assert await transitions(stack, body["id"]) == ["create", "mark_processing", "mark_completed"]
    assert await stack.admin_pool.fetchval(
        "SELECT count(*) FROM paysaga.outbox WHERE payload->'payment'->>'id' = $1", body["id"]) == 3
    assert await stack.admin_pool.fetchval(
        "SELECT count(*) FROM paysaga.journal_entries WHERE source_id = $1", body["id"]) >= 1
    kinds = [e.event_type for e in (await handle.fetch_history()).events]
    # Processing and completed were recorded together, so the succeeded webhook found the payment either not yet
    # submitted or settled: no signal, no timer, and one workflow task.
    assert kinds.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) == 1
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED not in kinds
    assert EventType.EVENT_TYPE_TIMER_STARTED not in kinds


async def test_payment_completes_via_webhook_with_events_and_outbox(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http, "pm_card_visa_settlesLater")  # processing until the webhook
        r = await pay(http, cid, pm, "12.34", description="order 42", metadata={"order": "42"})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["status"] == "processing" and body["provider_intent_id"].startswith("pi_")
        assert body["amount"] == "12.34" and body["amount_micros"] == 12_340_000
        done = await wait_status(http, body["id"], {"completed"})
    assert done["metadata"] == {"order": "42"}
    assert await transitions(stack, body["id"]) == ["create", "mark_processing", "mark_completed"]
    n_outbox = await stack.admin_pool.fetchval(
        "SELECT count(*) FROM paysaga.outbox WHERE payload->'payment'->>'id' = $1", body["id"])
    assert n_outbox == 3
    inbox = await stack.admin_pool.fetchval("SELECT count(*) FROM paysaga.inbox WHERE tenant_id = $1", tenant[0])
    assert inbox >= 1  # the succeeded webhook, at least, went through the inbox


async def test_decline_fails_with_its_code(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http, "pm_card_chargeDeclinedInsufficientFunds")
        r = await pay(http, cid, pm, "5.00", "EUR")
    assert r.status_code == 201
    assert r.json()["status"] == "failed" and r.json()["failure_code"] == "insufficient_funds"


async def test_three_d_secure_completes(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http, "pm_card_threeDSecure2Required")
        r = await pay(http, cid, pm, "80.00", "GBP")
        body = r.json()
        assert body["status"] == "pending", body
        url = body["next_action"]["redirect_to_url"]["url"]
        assert (await http.post(url, json={"outcome": "succeed"})).status_code == 200
        done = await wait_status(http, body["id"], {"completed"})
    assert done["next_action"] is None
    # The `processing` webhook may or may not arrive before `succeeded`: both paths are valid.
    assert await transitions(stack, body["id"]) in (
        ["create", "mark_processing", "settle_from_processing", "mark_processing", "mark_completed"],
        ["create", "mark_processing", "settle_from_processing", "confirm_from_pending"],
    )


async def test_three_d_secure_abandoned_times_out_to_canceled(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http, "pm_card_authenticationRequired")
        body = (await pay(http, cid, pm)).json()
        assert body["status"] == "pending"
        done = await wait_status(http, body["id"], {"canceled"}, timeout=stack.settings.three_ds_timeout_seconds + 20)
    intent = await stack.admin_pool.fetchval(
        "SELECT status FROM sandbox.payment_intents WHERE intent_id = $1", body["provider_intent_id"])
    assert intent == "canceled"  # compensation: the abandoned intent does not stay open at the provider
    assert done["next_action"] is None


async def test_three_d_secure_failed_authentication(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http, "pm_card_threeDSecure2Required")
        body = (await pay(http, cid, pm)).json()
        await http.post(body["next_action"]["redirect_to_url"]["url"], json={"outcome": "fail"})
        done = await wait_status(http, body["id"], {"failed"})
    assert done["failure_code"] == "authentication_failed"


async def test_duplicate_post_returns_the_same_payment(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http)
        key = str(uuid.uuid4())
        first = await pay(http, cid, pm, "7.00", key=key)
        second = await pay(http, cid, pm, "7.00", key=key)
        assert first.status_code == second.status_code == 201
        assert second.json() == first.json() and second.headers["Idempotent-Replayed"] == "true"
        other = await pay(http, cid, pm, "8.00", key=key)
        assert other.status_code == 422 and other.json()["type"].endswith("/idempotency-key-reused")
        missing = await http.post("/v1/payments", json={"customer_id": cid, "payment_method_id": pm,
                                                        "amount": "1.00", "currency": "USD"})
        assert missing.status_code == 400 and missing.json()["type"].endswith("/idempotency-key-required")
        listed = (await http.get("/v1/payments")).json()["data"]
    assert [p["id"] for p in listed] == [first.json()["id"]]


async def test_concurrent_requests_with_one_key_create_one_payment(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http)
        key = str(uuid.uuid4())
        responses = await asyncio.gather(*(pay(http, cid, pm, "3.00", key=key) for _ in range(5)))
        codes = sorted(r.status_code for r in responses)
        assert set(codes) <= {201, 409} and 201 in codes, codes
        assert all(r.headers["content-type"] == "application/problem+json" for r in responses if r.status_code == 409)
        ids = {r.json()["id"] for r in responses if r.status_code == 201}
        listed = (await http.get("/v1/payments")).json()["data"]
    assert len(ids) == 1 and len(listed) == 1


async def test_same_webhook_five_times_causes_one_transition(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http, "pm_card_threeDSecure2Required")
        body = (await pay(http, cid, pm)).json()
        event = intent_event(body, tenant[0], "succeeded")
        results = [await post_event(stack, event) for _ in range(5)]
        assert [r.status_code for r in results] == [200] * 5
        assert sum(1 for r in results if r.json().get("duplicate")) == 4
        await wait_status(http, body["id"], {"completed"})
    assert (await transitions(stack, body["id"])).count("confirm_from_pending") == 1


async def test_out_of_order_webhooks_end_in_the_right_state(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http, "pm_card_threeDSecure2Required")
        body = (await pay(http, cid, pm)).json()
        # The outcome first, then the stale news that preceded it.
        for status in ("succeeded", "processing", "requires_action"):
            assert (await post_event(stack, intent_event(body, tenant[0], status))).status_code == 200
        await wait_status(http, body["id"], {"completed"})
        await asyncio.sleep(0.5)
        assert (await http.get(f"/v1/payments/{body['id']}")).json()["status"] == "completed"


async def test_failed_webhook_rejects_a_pending_payment(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http, "pm_card_threeDSecure2Required")
        body = (await pay(http, cid, pm)).json()
        event = intent_event(body, tenant[0], "requires_payment_method", "payment_intent.payment_failed",
                             decline_code="do_not_honor")
        await post_event(stack, event)
        done = await wait_status(http, body["id"], {"failed"})
    assert done["failure_code"] == "do_not_honor"
    assert (await transitions(stack, body["id"]))[-1] == "reject_from_pending"


async def test_missing_webhooks_are_covered_by_polling(stack: Stack, tenant: tuple[str, str]) -> None:
    stack.settings.sandbox_webhook_url = "http://127.0.0.1:9"  # the provider's webhooks go nowhere
    try:
        async with stack.http(tenant[1]) as http:
            cid, pm = await customer_with_method(http)
            body = (await pay(http, cid, pm)).json()
            await wait_status(http, body["id"], {"completed"}, timeout=stack.settings.webhook_wait_seconds + 20)
    finally:
        stack.settings.sandbox_webhook_url = None


async def test_cancel(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http, "pm_card_threeDSecure2Required")
        pending = (await pay(http, cid, pm)).json()
        r = await http.post(f"/v1/payments/{pending['id']}/cancel", json={"reason": "duplicate"})
        assert r.status_code == 200 and r.json()["status"] == "canceled", r.text
        cid, pm = await customer_with_method(http)
        paid = (await pay(http, cid, pm)).json()
        await wait_status(http, paid["id"], {"completed"})
        r = await http.post(f"/v1/payments/{paid['id']}/cancel")
        assert r.status_code == 409 and r.json()["type"].endswith("/payment-not-cancelable")
        assert (await http.post("/v1/payments/pay_nope/cancel")).status_code == 404


async def test_cursor_pagination_newest_first(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http, "pm_card_chargeDeclined")  # settles at once
        created = [(await pay(http, cid, pm, f"{i}.00")).json()["id"] for i in range(1, 6)]
        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"starting_after": cursor} if cursor else {})}
            page = (await http.get("/v1/payments", params=params)).json()
            seen += [p["id"] for p in page["data"]]
            if not page["has_more"]:
                break
            cursor = page["next_cursor"]
        assert seen == list(reversed(created))
        bad = await http.get("/v1/payments", params={"starting_after": "pay_unknown"})
        assert bad.status_code == 400


async def test_tenant_isolation_over_http(stack: Stack, tenant: tuple[str, str]) -> None:
    _, other_key = await stack.new_tenant()
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http, "pm_card_chargeDeclined")
        pid = (await pay(http, cid, pm)).json()["id"]
    async with stack.http(other_key) as other:
        assert (await other.get(f"/v1/payments/{pid}")).status_code == 404
        assert (await other.get("/v1/payments")).json()["data"] == []
        assert (await other.get(f"/v1/customers/{cid}")).status_code == 404
        stolen = await pay(other, cid, pm)
        assert stolen.status_code == 422  # tenant B cannot charge tenant A's payment method


async def test_card_numbers_are_refused_and_nothing_is_created(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http)
        r = await pay(http, cid, pm, metadata={"note": "card 4242 4242 4242 4242"})
        assert r.status_code == 422 and r.json()["type"].endswith("/card-number-refused")
        assert "4242 4242" not in r.text
        r = await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": "4000056655665556"})
        assert r.status_code == 422
        assert (await http.get("/v1/payments")).json()["data"] == []


async def test_bad_requests_are_problems_not_500s(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http)
        for amount, currency in [("12.345", "USD"), ("1.5", "JPY"), ("-1.00", "USD"), ("0", "USD"),
                                 ("NaN", "USD"), ("1e3", "USD"), ("1.00", "XXX")]:
            r = await pay(http, cid, pm, amount, currency)
            assert r.status_code == 422, (amount, currency, r.text)
            assert r.headers["content-type"] == "application/problem+json"
        r = await http.post("/v1/payments", content=b"{not json", headers={"Idempotency-Key": "x",
                                                                         "Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["type"].endswith("/malformed-json")
        r = await http.post("/v1/payments", json={"customer_id": cid, "payment_method_id": pm, "amount": 12.34,
                                                  "currency": "USD"}, headers={"Idempotency-Key": "y"})
        assert r.status_code == 422  # a JSON number is never accepted as money
    async with stack.http("psk_wrong") as anon:
        r = await anon.get("/v1/payments")
        assert r.status_code == 401 and r.json()["type"].endswith("/unauthorized")


@pytest.mark.parametrize("case", ["bad_signature", "stale", "missing", "not_utf8", "not_json", "not_event"])
async def test_bad_webhooks_are_400(stack: Stack, case: str) -> None:
    import time

    from activities.providers.webhooks.stripe_signature import sign_stripe_payload

    secret = stack.settings.webhook_secret_list[0]
    body = {"not_utf8": b"\xff\xfe\x00", "not_json": b"{nope", "not_event": b"[1, 2]"}.get(case, b'{"id": "evt"}')
    now = int(time.time())
    header = {
        "bad_signature": sign_stripe_payload(body, "whsec_other", now),
        "stale": sign_stripe_payload(body, secret, now - 3600),
        "missing": None,
    }.get(case, sign_stripe_payload(body, secret, now))
    async with stack.http(None) as http:
        r = await http.post("/v1/webhooks/stripe", content=body,
                            headers={"Stripe-Signature": header} if header else {})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"


async def test_rotated_webhook_secrets_both_verify(stack: Stack, tenant: tuple[str, str]) -> None:
    old = stack.settings.stripe_webhook_secrets
    stack.settings.stripe_webhook_secrets = f"whsec_new,{old}"
    try:
        async with stack.http(tenant[1]) as http:
            cid, pm = await customer_with_method(http, "pm_card_threeDSecure2Required")
            body = (await pay(http, cid, pm)).json()
        r = await post_event(stack, intent_event(body, tenant[0], "succeeded"), secret="whsec_new")
        assert r.status_code == 200 and r.json() == {"received": True}
    finally:
        stack.settings.stripe_webhook_secrets = old


async def test_operations_endpoints(stack: Stack) -> None:
    async with stack.http(None) as http:
        assert (await http.get("/health/live")).json() == {"status": "ok"}
        ready = (await http.get("/health/ready")).json()
        assert ready["checks"] == {"database": "ok", "temporal": "ok"}
        metrics = (await http.get("/metrics")).text
        assert "paysaga_http_request_duration_seconds_bucket" in metrics
        assert "paysaga_webhook_events_total" in metrics
        spec = (await http.get("/openapi.json")).json()
        assert "/v1/payments" in spec["paths"] and "/v1/webhooks/stripe" in spec["paths"]
        assert (await http.get("/docs")).status_code == 200


async def test_sandbox_duplicated_and_shuffled_webhooks(stack: Stack, tenant: tuple[str, str]) -> None:
    """The sandbox's own delivery, told to send every event three times in random order."""
    stack.settings.sandbox_webhook_duplicates, stack.settings.sandbox_webhook_shuffle = 3, True
    try:
        async with stack.http(tenant[1]) as http:
            cid, pm = await customer_with_method(http)
            paid = (await pay(http, cid, pm)).json()
            cid, pm = await customer_with_method(http, "pm_card_threeDSecure2Required")
            secure = (await pay(http, cid, pm)).json()
            await http.post(secure["next_action"]["redirect_to_url"]["url"], json={"outcome": "succeed"})
            for p in (paid, secure):
                await wait_status(http, p["id"], {"completed"})
            await asyncio.sleep(1)  # let the late copies arrive
            metrics = (await http.get("/metrics")).text
        assert 'paysaga_webhook_events_total{outcome="duplicate"}' in metrics
        for p in (paid, secure):
            assert (await transitions(stack, p["id"]))[-1] in ("mark_completed", "confirm_from_pending")
            completions = await stack.admin_pool.fetchval(
                "SELECT count(*) FROM paysaga.payment_events WHERE payment_id = $1 AND new_status = 'completed'",
                p["id"])
            assert completions == 1
    finally:
        stack.settings.sandbox_webhook_duplicates, stack.settings.sandbox_webhook_shuffle = 1, False
