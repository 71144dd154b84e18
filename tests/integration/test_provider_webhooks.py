"""`POST /api/v1/billing/webhook/{provider}` on the real stack: the generic HMAC rail (settings and table secrets,
per tenant, rotation, retirement), replay de-duplication, the response codes by payment state, kind handlers,
and Stripe events on the new path."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from activities.providers.webhooks.verifiers import VERIFIERS, HmacVerifier
from activities.stores import payments as payment_store
from api.problems import Problem
from contracts.webhooks import NormalizedEvent
from domain.payment import Transition, TransitionCommand
from paysaga.db import create_pool, tenant_tx
from tests.integration.helpers import customer_with_method, pay, wait_status
from tests.integration.seeding import seed_payment
from tests.integration.webhook_helpers import intent_event
from tests.stack import Stack

pytestmark = pytest.mark.integration

GENERIC = VERIFIERS["generic"]


def generic_event(tenant_id: str | None, reference_id: str | None, event_type: str = "payment.succeeded",
                  event_id: str | None = None, **extra: Any) -> dict[str, Any]:
    event = {"id": event_id or f"evt_gen_{uuid.uuid4().hex[:16]}", "type": event_type, "tenant_id": tenant_id,
             "reference_id": reference_id, "created": int(time.time()), **extra}
    return {k: v for k, v in event.items() if v is not None}


async def post_generic(stack: Stack, event: dict[str, Any] | bytes, *, secret: str | None = None,
                       timestamp: int | None = None, provider: str = "generic",
                       verifier: Any = GENERIC, headers: dict[str, str] | None = None) -> httpx.Response:
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    signed = verifier.sign(body, secret or stack.settings.webhook_hmac_secret_list[0], timestamp or int(time.time()))
    async with stack.http(None) as http:
        return await http.post(f"/api/v1/billing/webhook/{provider}", content=body,
                               headers={**signed, "Content-Type": "application/json", **(headers or {})})


async def transitions(stack: Stack, payment_id: str) -> list[str]:
    rows = await stack.admin_pool.fetch(
        "SELECT metadata->>'transition' AS t FROM paysaga.payment_events WHERE payment_id = $1 ORDER BY seq",
        payment_id)
    return [r["t"] for r in rows]


async def inbox_rows(stack: Stack, tenant_id: str, event_id: str) -> int:
    return await stack.admin_pool.fetchval(
        "SELECT count(*) FROM paysaga.inbox WHERE tenant_id = $1 AND event_id = $2", tenant_id, event_id)


async def pending_payment(stack: Stack, tenant: tuple[str, str]) -> dict[str, Any]:
    """A card payment waiting in `pending` for a 3-D Secure customer who never answers."""
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http, "pm_card_threeDSecure2Required")
        body = (await pay(http, cid, pm, "42.00", "EUR")).json()
    assert body["status"] == "pending", body
    return body


@pytest.fixture
async def app_pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(stack.db.app_url, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture
def test_rail() -> Iterator[tuple[str, HmacVerifier]]:
    """A rail registered the documented way (one line), with its own headers and only table secrets."""
    name = f"rail-{uuid.uuid4().hex[:8]}"
    verifier = HmacVerifier(signature_header="X-Rail-Signature", timestamp_header="X-Rail-Timestamp")
    VERIFIERS[name] = verifier
    try:
        yield name, verifier
    finally:
        del VERIFIERS[name]


async def add_secret(stack: Stack, provider: str, tenant_id: str | None, secret: str) -> int:
    return await stack.admin_pool.fetchval(
        "INSERT INTO paysaga.webhook_secrets (provider, tenant_id, secret) VALUES ($1, $2, $3) RETURNING secret_id",
        provider, tenant_id, secret)


# --- the generic rail drives the payment saga -----------------------------------------------------------------
async def test_generic_confirmation_completes_a_pending_payment(stack: Stack, tenant: tuple[str, str]) -> None:
    payment = await pending_payment(stack, tenant)
    r = await post_generic(stack, generic_event(tenant[0], payment["id"]))
    assert r.status_code == 200 and r.json() == {"received": True}, r.text
    async with stack.http(tenant[1]) as http:
        done = await wait_status(http, payment["id"], {"completed"})
    assert done["next_action"] is None
    assert (await transitions(stack, payment["id"]))[-1] == "confirm_from_pending"


async def test_generic_rejection_fails_the_payment_with_its_code(stack: Stack, tenant: tuple[str, str]) -> None:
    payment = await pending_payment(stack, tenant)
    event = generic_event(tenant[0], payment["id"], "payment.failed", failure_code="do_not_honor",
                          failure_message="The bank said no.")
    assert (await post_generic(stack, event)).status_code == 200
    async with stack.http(tenant[1]) as http:
        done = await wait_status(http, payment["id"], {"failed"})
    assert (done["failure_code"], done["failure_message"]) == ("do_not_honor", "The bank said no.")
    assert (await transitions(stack, payment["id"]))[-1] == "reject_from_pending"


async def test_a_replayed_event_id_causes_one_transition(stack: Stack, tenant: tuple[str, str]) -> None:
    payment = await pending_payment(stack, tenant)
    event = generic_event(tenant[0], payment["id"])
    first = await post_generic(stack, event)
    # the same event again, re-signed later (a replay within tolerance), concurrently and sequentially
    rest = [*await asyncio.gather(*(post_generic(stack, event) for _ in range(3))), await post_generic(stack, event)]
    assert first.json() == {"received": True}
    assert all(r.status_code == 200 and r.json() == {"received": True, "duplicate": True} for r in rest)
    async with stack.http(tenant[1]) as http:
        await wait_status(http, payment["id"], {"completed"})
    assert (await transitions(stack, payment["id"])).count("confirm_from_pending") == 1
    assert await inbox_rows(stack, tenant[0], event["id"]) == 1


async def test_an_event_on_a_terminal_payment_is_200(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http, "pm_card_chargeDeclined")
        failed = (await pay(http, cid, pm)).json()
    assert failed["status"] == "failed"
    event = generic_event(tenant[0], failed["id"])
    r = await post_generic(stack, event)
    assert r.status_code == 200 and r.json() == {"received": True, "note": "payment already failed"}
    assert await inbox_rows(stack, tenant[0], event["id"]) == 1
    assert (await post_generic(stack, event)).json()["duplicate"] is True
    async with stack.http(tenant[1]) as http:
        assert (await http.get(f"/v1/payments/{failed['id']}")).json()["status"] == "failed"


async def test_an_event_on_a_created_payment_is_409_and_not_recorded(
    stack: Stack, tenant: tuple[str, str], app_pool: asyncpg.Pool
) -> None:
    tid = tenant[0]
    pid = await seed_payment(app_pool, tid)
    event = generic_event(tid, pid)
    r = await post_generic(stack, event)
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/payment-not-submitted")
    assert await inbox_rows(stack, tid, event["id"]) == 0  # the provider's retry will be processed
    assert await stack.admin_pool.fetchval("SELECT status FROM paysaga.payments WHERE payment_id = $1", pid) \
        == "created"


async def test_an_outcome_for_a_renewal_charge_not_yet_recorded_is_acknowledged_and_left_to_its_batch(
    stack: Stack, tenant: tuple[str, str], app_pool: asyncpg.Pool
) -> None:
    """The batch that sent the charge records the provider's answer itself: the early news is recorded in the
    inbox and answered 200, not turned away for the provider to send again, and changes nothing."""
    tid = tenant[0]
    pid = await seed_payment(app_pool, tid)
    # The stack is shared: the charge is settled afterwards, or a later renewal run's sweep would try to send it.
    await stack.admin_pool.execute(
        """INSERT INTO paysaga.renewal_charges (tenant_id, payment_id, invoice_id, subscription_id, period_start,
               run_id, batch_no) VALUES ($1, $2, $3, 'sub_early', date_trunc('second', now()), 'run-early', 1)""",
        uuid.UUID(tid), pid, f"in_{pid}")
    try:
        event = generic_event(tid, pid)
        r = await post_generic(stack, event)
        assert r.status_code == 200
        assert r.json() == {"received": True, "note": "nothing to do for a payment not yet submitted"}
        assert await inbox_rows(stack, tid, event["id"]) == 1
        assert (await post_generic(stack, event)).json()["duplicate"] is True
        assert await stack.admin_pool.fetchval("SELECT status FROM paysaga.payments WHERE payment_id = $1",
                                               pid) == "created"
        assert await stack.admin_pool.fetchval(
            "SELECT state FROM paysaga.renewal_charges WHERE payment_id = $1", pid) == "created"
    finally:
        await stack.admin_pool.execute("UPDATE paysaga.renewal_charges SET state = 'settled' WHERE payment_id = $1",
                                       pid)


async def test_unknown_payments_and_unknown_types_are_200_ignored(stack: Stack, tenant: tuple[str, str]) -> None:
    r = await post_generic(stack, generic_event(tenant[0], "pay_does_not_exist"))
    assert r.status_code == 200 and r.json() == {"received": True, "ignored": "unknown payment"}
    r = await post_generic(stack, generic_event(str(uuid.uuid4()), "pay_x"))  # a tenant that does not exist
    assert r.status_code == 200 and r.json()["ignored"] == "unknown payment"
    r = await post_generic(stack, generic_event(None, None, "ping"))
    assert r.status_code == 200 and r.json() == {"received": True, "ignored": "other events not handled"}
    payment = await pending_payment(stack, tenant)
    r = await post_generic(stack, generic_event(tenant[0], payment["id"], "payment.partially_captured"))
    assert r.status_code == 200 and "not acted on" in r.json()["ignored"]


# --- secrets: settings fallback, table rows per provider and per tenant, rotation, retirement ---------------
async def test_a_per_tenant_secret_verifies_only_that_tenants_events(stack: Stack, tenant: tuple[str, str]) -> None:
    other, _ = await stack.new_tenant()
    secret = f"whsec_tenant_{uuid.uuid4().hex}"
    await add_secret(stack, "generic", tenant[0], secret)
    payment = await pending_payment(stack, tenant)

    wrong = await post_generic(stack, generic_event(tenant[0], payment["id"]), secret="whsec_wrong_secret_000000")
    assert wrong.status_code == 400 and wrong.json()["type"].endswith("/invalid-signature")
    assert wrong.json()["detail"] == "signature_mismatch"
    # the tenant's secret is no provider-wide secret: it does not verify an event naming another tenant
    stolen = await post_generic(stack, generic_event(other, "pay_any"), secret=secret)
    assert stolen.status_code == 400
    r = await post_generic(stack, generic_event(tenant[0], payment["id"]), secret=secret)
    assert r.status_code == 200 and r.json() == {"received": True}, r.text
    async with stack.http(tenant[1]) as http:
        await wait_status(http, payment["id"], {"completed"})


async def test_rotation_two_active_secrets_and_retirement(stack: Stack, tenant: tuple[str, str],
                                                          test_rail: tuple[str, HmacVerifier]) -> None:
    rail, verifier = test_rail
    old, new, third = (f"whsec_{n}_{uuid.uuid4().hex}" for n in ("old", "new", "third"))

    async def status_with(secret: str) -> int:
        event = generic_event(tenant[0], "pay_unknown_to_the_rail")
        return (await post_generic(stack, event, secret=secret, provider=rail, verifier=verifier)).status_code

    assert await status_with(old) == 400  # no secret at all for this rail yet: nothing verifies
    assert await status_with(stack.settings.webhook_hmac_secret_list[0]) == 400  # the settings are 'generic's
    old_id = await add_secret(stack, rail, None, old)
    assert await status_with(old) == 200
    await add_secret(stack, rail, None, new)
    assert (await status_with(old), await status_with(new)) == (200, 200)  # both during the rotation
    with pytest.raises(asyncpg.CheckViolationError, match="two active secrets"):
        await add_secret(stack, rail, None, third)
    await add_secret(stack, rail, tenant[0], third)  # another scope: its own limit of two
    # scheduled retirement: still verifies until then
    await stack.admin_pool.execute(
        "UPDATE paysaga.webhook_secrets SET retired_at = now() + interval '1 hour' WHERE secret_id = $1", old_id)
    assert await status_with(old) == 200
    await stack.admin_pool.execute("UPDATE paysaga.webhook_secrets SET retired_at = now() WHERE secret_id = $1",
                                   old_id)
    assert (await status_with(old), await status_with(new), await status_with(third)) == (400, 200, 200)
    await add_secret(stack, rail, None, f"whsec_next_{uuid.uuid4().hex}")  # a slot is free again


async def test_the_app_role_reads_secrets_only_through_the_function(
    stack: Stack, tenant: tuple[str, str], app_pool: asyncpg.Pool, test_rail: tuple[str, HmacVerifier]
) -> None:
    rail, _ = test_rail
    wide, mine = f"whsec_wide_{uuid.uuid4().hex}", f"whsec_mine_{uuid.uuid4().hex}"
    await add_secret(stack, rail, None, wide)
    await add_secret(stack, rail, tenant[0], mine)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_pool.fetch("SELECT secret FROM paysaga.webhook_secrets")
    async with tenant_tx(app_pool, tenant[0]) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT secret FROM paysaga.webhook_secrets")

    async def secrets_for(tid: str | None) -> set[str]:
        rows = await app_pool.fetch("SELECT secret FROM paysaga.webhook_secrets_for($1, $2::uuid)", rail, tid)
        return {r["secret"] for r in rows}

    assert await secrets_for(None) == {wide}
    assert await secrets_for(tenant[0]) == {wide, mine}
    assert await secrets_for(str(uuid.uuid4())) == {wide}
    flags = await stack.admin_pool.fetchrow(
        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'paysaga.webhook_secrets'::regclass")
    assert tuple(flags) == (True, True)
    with pytest.raises(asyncpg.CheckViolationError):  # too short to be a secret
        await add_secret(stack, rail, None, "short")


# --- errors: never a 500 ----------------------------------------------------------------------------------
async def test_unknown_provider_is_a_404_problem(stack: Stack) -> None:
    async with stack.http(None) as http:
        r = await http.post("/api/v1/billing/webhook/nobody", content=b"{}")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/unknown-webhook-provider")


@pytest.mark.parametrize("case", [
    "no_headers", "no_timestamp", "stale", "future", "bad_hex", "wrong_secret", "body_changed",
    "not_utf8", "not_json", "array", "no_id", "no_tenant", "tenant_not_uuid", "no_reference", "bad_failure_code",
    "deep_nesting",
])
async def test_bad_generic_webhooks_are_400(stack: Stack, tenant: tuple[str, str], case: str) -> None:
    good = generic_event(tenant[0], "pay_1")
    bodies = {
        "not_utf8": b"\xff\xfe\x00", "not_json": b"{nope", "array": b"[1, 2]", "deep_nesting": b"[" * 50_000,
        "no_id": json.dumps({**good, "id": None}).encode(),
        "no_tenant": json.dumps({k: v for k, v in good.items() if k != "tenant_id"}).encode(),
        "tenant_not_uuid": json.dumps({**good, "tenant_id": "acme"}).encode(),
        "no_reference": json.dumps({k: v for k, v in good.items() if k != "reference_id"}).encode(),
        "bad_failure_code": json.dumps({**good, "failure_code": 42}).encode(),
    }
    body = bodies.get(case, json.dumps(good).encode())
    now, secret = int(time.time()), stack.settings.webhook_hmac_secret_list[0]
    headers = GENERIC.sign(body, secret, now)
    if case == "no_headers":
        headers = {}
    elif case == "no_timestamp":
        del headers["X-Paysaga-Timestamp"]
    elif case in ("stale", "future"):
        headers = GENERIC.sign(body, secret, now - 3600 if case == "stale" else now + 3600)
    elif case == "bad_hex":
        headers["X-Paysaga-Signature"] = "sha256=zz" + headers["X-Paysaga-Signature"][9:]
    elif case == "wrong_secret":
        headers = GENERIC.sign(body, "whsec_not_the_secret_0000", now)
    elif case == "body_changed":
        body += b" "
    async with stack.http(None) as http:
        r = await http.post("/api/v1/billing/webhook/generic", content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    expected = "/malformed-payload" if case in bodies else "/invalid-signature"
    assert r.json()["type"].endswith(expected)


async def test_signed_junk_is_never_a_500(stack: Stack, tenant: tuple[str, str]) -> None:
    rnd = random.Random(7)
    values: list[Any] = [None, True, 0, -1, 10**30, 1.5, "", "x" * 300, [], {}, tenant[0], "pay_x",
                         "payment.succeeded", "payment.failed", "refund.created", "\u0000", {"a": [1]}]
    keys = ["id", "type", "tenant_id", "reference_id", "failure_code", "failure_message", "created", "intent_id"]
    for _ in range(40):
        event = {k: rnd.choice(values) for k in rnd.sample(keys, rnd.randint(0, len(keys)))}
        r = await post_generic(stack, json.dumps(event).encode())
        assert r.status_code in (200, 400, 409), (event, r.status_code, r.text)
        r = await post_generic(stack, rnd.randbytes(rnd.randint(0, 64)))
        assert r.status_code == 400


# --- other kinds: the handler registry ------------------------------------------------------------------------
async def test_refund_events_without_and_with_a_registered_handler(stack: Stack, tenant: tuple[str, str]) -> None:
    handlers = stack.app.state.webhooks.handlers  # the app's dispatch table
    original = handlers.pop("refund", None)  # the app's own refund handler (services/refunds.py), put back below
    event = generic_event(tenant[0], "ref_1", "refund.succeeded", data={"amount": "5.00"})
    r = await post_generic(stack, event)
    assert r.json() == {"received": True, "ignored": "refund events not handled"}
    assert await inbox_rows(stack, tenant[0], event["id"]) == 1  # de-duplicated even when nobody handles it

    seen: list[NormalizedEvent] = []
    fail: list[Exception] = []

    async def on_refund(ctx: Any, conn: Any, ev: NormalizedEvent) -> tuple[str, dict[str, Any]]:
        assert await conn.fetchval("SELECT paysaga.current_tenant()::text") == ev.tenant_id
        if fail:
            raise fail.pop()
        seen.append(ev)
        return "accepted", {"received": True, "refund": ev.reference_id}

    handlers["refund"] = on_refund
    try:
        fresh = generic_event(tenant[0], "ref_2", "refund.succeeded", data={"amount": "5.00"})
        fail.append(RuntimeError("refund store down"))
        r = await post_generic(stack, fresh)
        assert r.status_code == 503 and r.json()["type"].endswith("/temporarily-unavailable")
        assert await inbox_rows(stack, tenant[0], fresh["id"]) == 0  # rolled back with the failed handler
        fail.append(Problem(409, "refund-not-ready", "Not yet", "retry later"))
        assert (await post_generic(stack, fresh)).status_code == 409
        r = await post_generic(stack, fresh)  # the provider's retry
        assert r.status_code == 200 and r.json() == {"received": True, "refund": "ref_2"}
        assert (await post_generic(stack, fresh)).json() == {"received": True, "duplicate": True}
        assert [(e.kind, e.event_type, e.raw["data"]) for e in seen] == [("refund", "refund.succeeded",
                                                                           {"amount": "5.00"})]
    finally:
        handlers.pop("refund", None)
        if original is not None:
            handlers["refund"] = original


# --- Stripe on the new path, and the alias --------------------------------------------------------------------
async def test_stripe_events_on_the_provider_path_and_the_alias(stack: Stack, tenant: tuple[str, str]) -> None:
    from activities.providers.webhooks.stripe_signature import sign_stripe_payload

    payment = await pending_payment(stack, tenant)
    event = intent_event(payment, tenant[0], "succeeded")
    body = json.dumps(event).encode()
    secret = stack.settings.webhook_secret_list[0]
    async with stack.http(None) as http:
        for path, expected in [("/api/v1/billing/webhook/stripe", {"received": True}),
                               ("/v1/webhooks/stripe", {"received": True, "duplicate": True})]:
            r = await http.post(path, content=body,
                                headers={"Stripe-Signature": sign_stripe_payload(body, secret, int(time.time()))})
            assert r.status_code == 200 and r.json() == expected, (path, r.text)
        # an HMAC-signed body is not a Stripe event, and the other way round
        r = await http.post("/api/v1/billing/webhook/stripe", content=body,
                            headers=GENERIC.sign(body, secret, int(time.time())))
        assert r.status_code == 400
        r = await http.post("/api/v1/billing/webhook/generic", content=body,
                            headers={"Stripe-Signature": sign_stripe_payload(body, secret, int(time.time()))})
        assert r.status_code == 400
    async with stack.http(tenant[1]) as http:
        await wait_status(http, payment["id"], {"completed"})
    assert (await transitions(stack, payment["id"])).count("confirm_from_pending") == 1
    async with stack.http(None) as http:
        metrics = (await http.get("/metrics")).text
        spec = (await http.get("/openapi.json")).json()
    assert 'paysaga_webhook_events_total{outcome="accepted"}' in metrics
    assert 'paysaga_webhook_events_total{outcome="invalid-signature"}' in metrics
    assert "/api/v1/billing/webhook/{provider}" in spec["paths"] and "/v1/webhooks/stripe" in spec["paths"]


async def test_a_rail_cannot_settle_another_rails_payment(
    stack: Stack, tenant: tuple[str, str], app_pool: asyncpg.Pool
) -> None:
    tid = tenant[0]
    pid = await seed_payment(app_pool, tid, provider="stripe")
    async with tenant_tx(app_pool, tid) as conn:
        await payment_store.apply_transition(
            conn, pid, TransitionCommand(Transition.MARK_PROCESSING, provider_intent_id="pi_x"), {}, "test", "test")
    r = await post_generic(stack, generic_event(tid, pid))  # a valid signature, but of the generic rail
    assert r.status_code == 200 and r.json()["ignored"] == "payment belongs to rail stripe"
    assert await stack.admin_pool.fetchval("SELECT status FROM paysaga.payments WHERE payment_id = $1", pid) \
        == "processing"
    # leave nothing stuck for the reconciliation tests: settle it as its own rail would
    async with tenant_tx(app_pool, tid) as conn:
        await payment_store.apply_transition(
            conn, pid, TransitionCommand(Transition.MARK_FAILED, failure_code="test", failure_message=""), {},
            "test", "test")
