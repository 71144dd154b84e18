"""StripeProvider and the webhook verifier against a real localstripe server (a subprocess, offline).

Interop only: wire format, SDK error mapping, status/next_action/metadata parsing, webhook signing.
localstripe ignores idempotency keys and is no reference for Stripe's business rules.

Test cards, as localstripe implements them (resources.py in localstripe 1.15.10):
- `pm_card_visa` (4242…) succeeds.
- `pm_card_chargeCustomerFail` (4000000000000341) is declined at charge time with code `card_declined`.
  (`pm_card_visa_chargeDeclined` / 4000000000000002 is declined only when *attached to a customer*; a
  PaymentIntent confirmed with it succeeds on localstripe.)
- 3-D Secure: no `pm_card_threeDSecure*` ids; raw numbers 4000002760003184 / 4000000000003220 created through
  POST /v1/payment_methods (test only) give `requires_action` with `next_action.type == "use_stripe_sdk"`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from activities.providers.base import CardDeclined, CreateIntent, IntentStatus, ProviderUnavailable
from activities.providers.stripe_provider import StripeProvider
from activities.providers.webhooks.stripe_signature import SignatureError, verify_stripe_signature

pytestmark = pytest.mark.integration

API_KEY = "sk_test_paysaga_localstripe"
STARTUP_TIMEOUT_S = 20.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _localstripe_cmd(port: int) -> list[str]:
    script = Path(sys.executable).with_name("localstripe")  # .venv/bin/localstripe
    base = [str(script)] if script.exists() else [sys.executable, "-m", "localstripe"]
    # --from-scratch: never load /tmp/localstripe.pickle (shared by every localstripe on the machine).
    return [*base, "--port", str(port), "--from-scratch"]


@pytest.fixture(scope="module")
def localstripe_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log_path = tmp_path_factory.mktemp("localstripe") / "localstripe.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(_localstripe_cmd(port), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"localstripe exited with {proc.returncode}: {log_path.read_text()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"localstripe did not listen on {port} in {STARTUP_TIMEOUT_S}s")
                    time.sleep(0.1)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest_asyncio.fixture(scope="module")
async def provider(localstripe_url: str) -> AsyncIterator[StripeProvider]:
    p = StripeProvider(API_KEY, localstripe_url, timeout_s=10)
    yield p
    await p.aclose()


@pytest_asyncio.fixture(scope="module")
async def raw(localstripe_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTP to localstripe, for what the port does not expose (raw objects, test-only endpoints)."""
    async with httpx.AsyncClient(base_url=localstripe_url, auth=(API_KEY, ""), timeout=10) as client:
        yield client


def _req(
    payment_method: str, *, payment_id: str | None = None, attempt: int = 1, amount: int = 1999
) -> CreateIntent:
    return CreateIntent(
        payment_id=payment_id or f"pay_{uuid.uuid4().hex}",
        tenant_id="ten_localstripe",
        attempt=attempt,
        amount_minor=amount,
        currency="EUR",
        payment_method=payment_method,
    )


async def _card(raw: httpx.AsyncClient, number: str) -> str:
    """A PaymentMethod from a raw test card number (localstripe only; real Stripe refuses raw PANs)."""
    data = {"type": "card", "card[number]": number, "card[exp_month]": "12", "card[exp_year]": "2034"}
    resp = await raw.post("/v1/payment_methods", data={**data, "card[cvc]": "123"})
    resp.raise_for_status()
    return resp.json()["id"]


async def test_happy_path_visa(provider: StripeProvider) -> None:
    req = _req("pm_card_visa", amount=4200)
    intent = await provider.create_and_confirm(req)
    assert intent.id.startswith("pi_")
    assert intent.status is IntentStatus.SUCCEEDED
    assert (intent.amount_minor, intent.currency) == (4200, "EUR")
    assert intent.metadata == req.metadata
    assert intent.decline_code is None and intent.next_action_url is None
    # The confirm's answer carries what the charge settled (latest_charge.balance_transaction, expanded) ...
    assert [(bt.reporting_category, bt.amount_minor) for bt in intent.balance_transactions] == [("charge", 4200)]
    # ... which a plain retrieve leaves out.
    assert await provider.retrieve(intent.id) == intent.model_copy(update={"balance_transactions": []})


@pytest.mark.parametrize("card", ["pm_card_chargeCustomerFail", "4000000000000341"])
async def test_decline_raises_card_declined(
    provider: StripeProvider, raw: httpx.AsyncClient, card: str
) -> None:
    pm = card if card.startswith("pm_") else await _card(raw, card)
    with pytest.raises(CardDeclined) as exc:
        await provider.create_and_confirm(_req(pm))
    declined = exc.value
    assert declined.decline_code == "card_declined"
    assert declined.message
    # localstripe's 402 names only the charge; the provider recovers the intent id from it.
    assert declined.intent_id is not None and declined.intent_id.startswith("pi_")
    after = await provider.retrieve(declined.intent_id)
    assert after.status is IntentStatus.REQUIRES_PAYMENT_METHOD
    assert after.decline_code == "card_declined"
    assert after.failure_message


@pytest.mark.parametrize("number", ["4000002760003184", "4000000000003220"])
async def test_three_d_secure_requires_action(
    provider: StripeProvider, raw: httpx.AsyncClient, number: str
) -> None:
    intent = await provider.create_and_confirm(_req(await _card(raw, number)))
    assert intent.status is IntentStatus.REQUIRES_ACTION
    pi = (await raw.get(f"/v1/payment_intents/{intent.id}")).json()
    assert pi["next_action"]["type"] == "use_stripe_sdk"
    # localstripe's use_stripe_sdk carries an empty stripe_js URL: the status is the signal, the URL is None.
    assert intent.next_action_url is None

    # Complete the challenge through localstripe's own test hook, then observe the outcome via the port.
    done = await raw.post(
        f"/v1/payment_intents/{intent.id}/_authenticate",
        data={"client_secret": pi["client_secret"], "success": "true"},
    )
    done.raise_for_status()
    assert (await provider.retrieve(intent.id)).status is IntentStatus.SUCCEEDED


async def test_refund_succeeded_payment(provider: StripeProvider) -> None:
    intent = await provider.create_and_confirm(_req("pm_card_visa", amount=3000))
    refund = await provider.refund(intent.id, 1200, f"refund:{intent.id}:1")
    assert refund.id.startswith("re_")
    assert (refund.status, refund.amount_minor) == ("succeeded", 1200)
    full = await provider.refund(intent.id, None, f"refund:{intent.id}:2")
    assert full.amount_minor == 3000  # localstripe refunds the charge amount; Stripe would refund the rest


async def test_refund_declined_payment_is_a_validation_error(provider: StripeProvider) -> None:
    with pytest.raises(CardDeclined) as exc:
        await provider.create_and_confirm(_req("pm_card_chargeCustomerFail"))
    assert exc.value.intent_id
    with pytest.raises(ValueError):
        await provider.refund(exc.value.intent_id, None, "refund:declined")


async def test_find_intent_by_metadata(provider: StripeProvider) -> None:
    payment_id = f"pay_{uuid.uuid4().hex}"
    with pytest.raises(CardDeclined) as exc:
        await provider.create_and_confirm(
            _req("pm_card_chargeCustomerFail", payment_id=payment_id, attempt=1)
        )
    second = await provider.create_and_confirm(_req("pm_card_visa", payment_id=payment_id, attempt=2))

    first = await provider.find_intent(payment_id, 1)
    assert first is not None and first.id == exc.value.intent_id
    assert first.status is IntentStatus.REQUIRES_PAYMENT_METHOD
    found = await provider.find_intent(payment_id, 2)
    assert found is not None and found.id == second.id and found.status is IntentStatus.SUCCEEDED
    assert await provider.find_intent(payment_id, 3) is None
    assert await provider.find_intent(f"pay_{uuid.uuid4().hex}", 1) is None


async def test_cancel_is_idempotent(provider: StripeProvider, raw: httpx.AsyncClient) -> None:
    pending = await provider.create_and_confirm(_req(await _card(raw, "4000002760003184")))
    assert pending.status is IntentStatus.REQUIRES_ACTION
    assert (await provider.cancel(pending.id)).status is IntentStatus.CANCELED
    assert (await provider.cancel(pending.id)).status is IntentStatus.CANCELED  # Stripe says 400; we don't

    paid = await provider.create_and_confirm(_req("pm_card_visa"))
    assert (await provider.cancel(paid.id)).status is IntentStatus.SUCCEEDED

    with pytest.raises(ValueError):
        await provider.cancel("pi_doesnotexist")


async def test_invalid_request_and_unknown_ids_are_value_errors(provider: StripeProvider) -> None:
    with pytest.raises(ValueError):
        await provider.retrieve("pi_doesnotexist")
    with pytest.raises(ValueError):
        await provider.create_and_confirm(_req("pm_doesnotexist"))


async def test_unreachable_server_is_provider_unavailable() -> None:
    dead = StripeProvider(API_KEY, f"http://127.0.0.1:{_free_port()}", timeout_s=5)
    try:
        with pytest.raises(ProviderUnavailable):
            await dead.create_and_confirm(_req("pm_card_visa"))
    finally:
        await dead.aclose()


async def test_signed_webhook_verifies(provider: StripeProvider, raw: httpx.AsyncClient) -> None:
    secret = f"whsec_{uuid.uuid4().hex}"
    received: asyncio.Queue[tuple[bytes, str | None]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await received.put((await request.read(), request.headers.get("Stripe-Signature")))
        return web.Response()

    app = web.Application()
    app.router.add_post("/v1/webhooks/stripe", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        registered = await raw.post(
            f"/_config/webhooks/paysaga_{uuid.uuid4().hex[:8]}",
            json={
                "url": f"http://127.0.0.1:{port}/v1/webhooks/stripe",
                "secret": secret,
                "events": ["payment_intent.succeeded"],
            },
        )
        registered.raise_for_status()

        intent = await provider.create_and_confirm(_req("pm_card_visa"))

        # localstripe delivers ~1 s later, for every intent created from now on: wait for ours.
        async with asyncio.timeout(15):
            while True:
                body, header = await received.get()
                event: dict[str, Any] = json.loads(body)
                if event["data"]["object"]["id"] == intent.id:
                    break
        assert event["type"] == "payment_intent.succeeded"

        now = int(time.time())
        verify_stripe_signature(body, header, [secret], 300, now)
        verify_stripe_signature(body, header, ["whsec_old", secret], 300, now)  # rotation
        with pytest.raises(SignatureError) as exc:
            verify_stripe_signature(body, header, ["whsec_someone_else"], 300, now)
        assert exc.value.reason == "signature_mismatch"
        with pytest.raises(SignatureError) as exc:
            verify_stripe_signature(body + b" ", header, [secret], 300, now)
        assert exc.value.reason == "signature_mismatch"
        with pytest.raises(SignatureError) as exc:
            verify_stripe_signature(body, header, [secret], 300, now + 3600)
        assert exc.value.reason == "timestamp_outside_tolerance"
    finally:
        await runner.cleanup()
