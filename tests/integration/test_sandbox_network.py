"""The sandbox network on its own: a database of its own, the provider writing, a runner delivering to a
recording endpoint (httpx.MockTransport), nothing else running."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from activities.providers.base import CreateIntent, IntentStatus
from activities.providers.sandbox import SandboxProvider
from activities.providers.sandbox.events import NOT_SUBSCRIBED, Outgoing, envelope, publish
from activities.providers.sandbox.network import SandboxNetwork, Tuning
from activities.providers.webhooks.stripe_signature import verify_stripe_signature
from paysaga.db import create_pool
from paysaga.settings import Settings
from tests.stack import Databases, Stack, fresh_database, with_database

pytestmark = pytest.mark.integration

# One answer per attempt (the last one repeats); an exception class is raised instead of answering.
Script = list[int | type[Exception]]


@dataclass
class Endpoint:
    """Stands in for the API's webhook endpoint: checks each signature, answers from a script per event type."""

    secret: str
    scripts: dict[str, Script] = field(default_factory=dict)
    posts: list[tuple[float, str, str]] = field(default_factory=list)  # (monotonic time, event id, type)
    hang: set[str] = field(default_factory=set)  # event types whose post never gets an answer

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        verify_stripe_signature(request.content, request.headers.get("Stripe-Signature"), [self.secret], 300,
                                int(time.time()))
        event = json.loads(request.content)
        self.posts.append((time.monotonic(), event["id"], event["type"]))
        if event["type"] in self.hang:
            await asyncio.sleep(3600)
        script = self.scripts.get(event["type"], [200])
        answer = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(answer, type):
            raise answer("scripted failure")
        return httpx.Response(answer, json={"received": answer < 300})

    def types(self) -> Counter[str]:
        return Counter(t for _, _, t in self.posts)


@dataclass
class Sandbox:
    pool: asyncpg.Pool
    admin: asyncpg.Pool
    settings: Settings
    endpoint: Endpoint
    provider: SandboxProvider

    async def pay(self, token: str = "pm_card_visa_settlesLater") -> str:  # settled by the network, after the delay
        req = CreateIntent(payment_id=f"pay_{uuid.uuid4().hex[:12]}", tenant_id=str(uuid.uuid4()),
                           amount_minor=1250, currency="USD", payment_method=token)
        return (await self.provider.create_and_confirm(req)).id

    async def events(self, object_id: str) -> list[asyncpg.Record]:
        return await self.admin.fetch(
            "SELECT *, xmin::text AS tx FROM sandbox.events WHERE payload->'data'->'object'->>'id' = $1 ORDER BY seq",
            object_id)

    @asynccontextmanager
    async def network(self, **tuning: float) -> AsyncIterator[SandboxNetwork]:
        transport = httpx.MockTransport(self.endpoint)
        network, stop = (SandboxNetwork(self.pool, self.settings, tuning=Tuning(**tuning), transport=transport),
                         asyncio.Event())
        task = asyncio.create_task(network.run(stop))
        try:
            yield network
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            await transport.aclose()


@pytest.fixture(scope="module")
async def databases(stack: Stack) -> Databases:
    """A database of its own, so that no other runner (the stack's) takes these events."""
    owner = urlsplit(stack.db.admin_url).username or "postgres"
    return await fresh_database(with_database(stack.db.admin_url, owner, "postgres"))


@pytest.fixture
async def sandbox(databases: Databases) -> AsyncIterator[Sandbox]:
    # Retries 0.2 s apart (the default is 1 s, doubling): the tests here are about how many, not how long.
    settings = Settings(database_url=databases.app_url, sandbox_settle_delay_ms=50, sandbox_webhook_events="*",
                        sandbox_webhook_url="http://endpoint.test", sandbox_webhook_first_retry_seconds=0.2)
    pool, admin = await create_pool(databases.app_url, max_size=8), await create_pool(databases.admin_url, max_size=2)
    await admin.execute("TRUNCATE sandbox.events, sandbox.disputes, sandbox.refunds, sandbox.payment_intents")
    try:
        yield Sandbox(pool, admin, settings, Endpoint(settings.webhook_secret_list[0]),
                      SandboxProvider(pool, settings))
    finally:
        await pool.close()
        await admin.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def intent_status(sandbox: Sandbox, intent_id: str) -> str:
    return await sandbox.admin.fetchval("SELECT status FROM sandbox.payment_intents WHERE intent_id = $1", intent_id)


# --- durability -------------------------------------------------------------------------------------------------
async def test_events_are_written_in_the_transaction_of_the_state_change(sandbox: Sandbox) -> None:
    intent_id = await sandbox.pay()
    events = await sandbox.events(intent_id)
    assert [(e["type"], e["state"], e["attempts"]) for e in events] == [
        ("payment_intent.created", "pending", 0), ("payment_intent.processing", "pending", 0)]
    made_in = await sandbox.admin.fetchval(
        "SELECT xmin::text FROM sandbox.payment_intents WHERE intent_id = $1", intent_id)
    assert {e["tx"] for e in events} == {made_in}  # the very transaction that made the intent

    canceled = await sandbox.provider.cancel(intent_id)
    assert canceled.status == IntentStatus.CANCELED
    changed_in = await sandbox.admin.fetchval(
        "SELECT xmin::text FROM sandbox.payment_intents WHERE intent_id = $1", intent_id)
    assert [(e["type"], e["tx"]) for e in (await sandbox.events(intent_id))[2:]] == [
        ("payment_intent.canceled", changed_in)]


async def test_a_card_succeeds_at_confirm_with_its_charge_and_events_in_that_transaction(sandbox: Sandbox) -> None:
    intent = await sandbox.provider.create_and_confirm(CreateIntent(
        payment_id=f"pay_{uuid.uuid4().hex[:12]}", tenant_id=str(uuid.uuid4()), amount_minor=1250, currency="USD",
        payment_method="pm_card_visa"))
    assert intent.status == IntentStatus.SUCCEEDED  # as Stripe answers a card that needs no authentication
    events = await sandbox.events(intent.id)
    assert [e["type"] for e in events] == ["payment_intent.created", "payment_intent.succeeded"]
    made_in = await sandbox.admin.fetchval(
        "SELECT xmin::text FROM sandbox.payment_intents WHERE intent_id = $1", intent.id)
    charge = await sandbox.admin.fetchrow(
        "SELECT amount_minor, xmin::text AS tx FROM sandbox.balance_transactions WHERE payment_intent_id = $1",
        intent.id)
    assert {e["tx"] for e in events} == {made_in} == {charge["tx"]} and charge["amount_minor"] == 1250
    # The answer carries what the charge settled, as Stripe's does with `latest_charge.balance_transaction`
    # expanded: the same row the provider reports when asked afterwards.
    assert intent.balance_transactions == await sandbox.provider.balance_transactions_of(intent.id)
    assert [bt.amount_minor for bt in intent.balance_transactions] == [1250]


@pytest.mark.parametrize(("token", "three_ds", "after"), [
    ("pm_card_threeDSecure2Required", False, IntentStatus.SUCCEEDED),
    ("pm_card_visa", True, IntentStatus.SUCCEEDED),  # challenged because the merchant asked for it
    ("pm_card_visa_settlesLater", True, IntentStatus.PROCESSING),
])
async def test_a_passed_challenge_succeeds_when_the_customer_answers_unless_the_card_settles_later(
        sandbox: Sandbox, token: str, three_ds: bool, after: IntentStatus) -> None:
    intent = await sandbox.provider.create_and_confirm(CreateIntent(
        payment_id=f"pay_{uuid.uuid4().hex[:12]}", tenant_id=str(uuid.uuid4()), amount_minor=990, currency="EUR",
        payment_method=token, request_three_d_secure=three_ds))
    assert intent.status == IntentStatus.REQUIRES_ACTION
    answered = await sandbox.provider.authenticate(intent.id, True)
    assert answered.status == after
    charges = await sandbox.admin.fetchval(
        "SELECT count(*) FROM sandbox.balance_transactions WHERE payment_intent_id = $1", intent.id)
    assert charges == (1 if after == IntentStatus.SUCCEEDED else 0)  # a later settlement writes it then
    assert [e["type"] for e in await sandbox.events(intent.id)][-1] == f"payment_intent.{after.value}"


async def test_events_of_a_rolled_back_change_are_never_written(sandbox: Sandbox) -> None:
    event = envelope("payment_intent.succeeded", {"id": "pi_sbx_rolled_back", "object": "payment_intent"})
    with pytest.raises(RuntimeError):
        async with sandbox.pool.acquire() as conn, conn.transaction():
            await publish(conn, sandbox.settings, [Outgoing(uuid.uuid4(), event)])
            raise RuntimeError("the state change failed")
    assert await sandbox.events("pi_sbx_rolled_back") == []


async def test_an_event_written_while_no_network_runs_is_delivered_once_one_starts(sandbox: Sandbox) -> None:
    intent_id = await sandbox.pay()
    await asyncio.sleep(0.3)  # long past the settle delay, and nobody to settle or deliver
    assert await intent_status(sandbox, intent_id) == "processing" and sandbox.endpoint.posts == []

    async with sandbox.network():
        await eventually(lambda: _delivered(sandbox, intent_id, 3))
        await asyncio.sleep(0.3)  # anything further would be a second delivery
    assert sandbox.endpoint.types() == {
        "payment_intent.created": 1, "payment_intent.processing": 1, "payment_intent.succeeded": 1}
    assert await intent_status(sandbox, intent_id) == "succeeded"
    assert [(e["state"], e["attempts"]) for e in await sandbox.events(intent_id)] == [("delivered", 1)] * 3


async def test_stopping_hands_unfinished_deliveries_to_the_next_runner(sandbox: Sandbox) -> None:
    sandbox.endpoint.hang = {"payment_intent.created"}
    intent_id = await sandbox.pay()
    started = time.monotonic()
    async with sandbox.network(shutdown_grace_seconds=0.2, lease_seconds=3600):
        await eventually(lambda: _posted(sandbox, "payment_intent.created"))
    assert time.monotonic() - started < 3  # a hung post does not hold the shutdown
    created = (await sandbox.events(intent_id))[0]
    assert (created["state"], created["attempts"]) == ("pending", 0)  # handed back, not leased for an hour

    sandbox.endpoint.hang = set()
    async with sandbox.network():
        await eventually(lambda: _delivered(sandbox, intent_id, 3))


# --- the knobs --------------------------------------------------------------------------------------------------
async def test_duplicates_post_every_event_that_many_times_out_of_order(sandbox: Sandbox) -> None:
    sandbox.settings.sandbox_webhook_duplicates, sandbox.settings.sandbox_webhook_shuffle = 3, True
    intent_id = await sandbox.pay()
    async with sandbox.network():
        await eventually(lambda: _delivered(sandbox, intent_id, 3))
    assert sorted(Counter(event_id for _, event_id, _ in sandbox.endpoint.posts).values()) == [3, 3, 3]
    assert all(e["attempts"] == 1 for e in await sandbox.events(intent_id))


async def test_dropped_events_are_never_posted_but_the_payment_still_settles(sandbox: Sandbox) -> None:
    sandbox.settings.sandbox_webhook_drop_rate = 1.0
    intent_id = await sandbox.pay()
    async with sandbox.network():
        await eventually(lambda: _states(sandbox, intent_id, ["dropped"] * 3))
    assert sandbox.endpoint.posts == []
    assert await intent_status(sandbox, intent_id) == "succeeded"


async def test_an_event_the_endpoint_is_not_subscribed_to_is_recorded_as_dropped_and_never_posted(
        sandbox: Sandbox) -> None:
    sandbox.settings.sandbox_webhook_events = "payment_intent.succeeded"
    intent_id = await sandbox.pay()
    assert [(e["type"], e["state"], e["attempts"], e["last_error"]) for e in await sandbox.events(intent_id)] == [
        ("payment_intent.created", "dropped", 0, NOT_SUBSCRIBED),
        ("payment_intent.processing", "dropped", 0, NOT_SUBSCRIBED)]
    async with sandbox.network():
        await eventually(lambda: _states(sandbox, intent_id, ["dropped", "dropped", "delivered"]))
    assert sandbox.endpoint.types() == {"payment_intent.succeeded": 1}
    assert await intent_status(sandbox, intent_id) == "succeeded"


async def test_409_5xx_and_network_errors_are_retried_with_backoff_other_4xx_are_final(sandbox: Sandbox) -> None:
    sandbox.endpoint.scripts = {
        "payment_intent.created": [409, 503, 200],
        "payment_intent.processing": [400],
        "payment_intent.succeeded": [httpx.ConnectError, 200],
    }
    intent_id = await sandbox.pay()
    async with sandbox.network():
        await eventually(lambda: _states(sandbox, intent_id, ["delivered", "rejected", "delivered"]))
    events = await sandbox.events(intent_id)
    assert [e["attempts"] for e in events] == [3, 1, 2]
    assert events[1]["last_error"] == "HTTP 400" and events[1]["delivered_at"] is None
    tries = [at for at, _, t in sandbox.endpoint.posts if t == "payment_intent.created"]
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert gaps[0] >= 0.18 and gaps[1] >= 0.38  # 0.2 s, then doubled


async def test_an_endpoint_that_keeps_failing_is_given_up_after_five_tries(sandbox: Sandbox) -> None:
    sandbox.endpoint.scripts = {"payment_intent.created": [500]}
    intent_id = await sandbox.pay()
    async with sandbox.network():
        await eventually(lambda: _states(sandbox, intent_id, ["exhausted", "delivered", "delivered"]), timeout=10)
    assert sandbox.endpoint.types()["payment_intent.created"] == 5
    assert (await sandbox.events(intent_id))[0]["last_error"] == "HTTP 500"


# --- waiting ----------------------------------------------------------------------------------------------------
async def test_an_idle_network_sleeps_and_a_commit_wakes_it(sandbox: Sandbox) -> None:
    async with sandbox.network(idle_seconds=60) as network:
        await asyncio.sleep(0.2)  # its first look finds nothing
        before = network.iterations
        await asyncio.sleep(1.0)
        assert network.iterations - before <= 1  # asleep, not polling
        intent_id = await sandbox.pay()
        await eventually(lambda: _delivered(sandbox, intent_id, 3))  # woken by NOTIFY, not by the 60 s timeout
        await asyncio.sleep(0.3)
        before = network.iterations
        await asyncio.sleep(1.0)
        assert network.iterations - before <= 1  # and asleep again once everything is done


async def test_a_network_whose_connections_are_cut_listens_again(sandbox: Sandbox) -> None:
    async with sandbox.network(idle_seconds=60):
        await asyncio.sleep(0.2)
        cut = await sandbox.admin.fetchval(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE usename = 'paysaga_app' AND datname = current_database()""")
        assert cut >= 1
        await asyncio.sleep(1.5)  # it notices at once, and tries again after a second
        intent_id = await sandbox.pay()
        await eventually(lambda: _delivered(sandbox, intent_id, 3))  # woken by NOTIFY again


# --- settlement over time ----------------------------------------------------------------------------------------
async def test_an_intent_settles_only_after_the_delay(sandbox: Sandbox) -> None:
    sandbox.settings.sandbox_settle_delay_ms = 600
    async with sandbox.network():
        intent_id = await sandbox.pay()
        made = time.monotonic()
        await eventually(lambda: _posted(sandbox, "payment_intent.processing"))
        assert await intent_status(sandbox, intent_id) == "processing"
        await eventually(lambda: _posted(sandbox, "payment_intent.succeeded"))
    settled = next(at for at, _, t in sandbox.endpoint.posts if t == "payment_intent.succeeded")
    assert settled - made >= 0.55
    assert await intent_status(sandbox, intent_id) == "succeeded"


async def test_refunds_settle_after_the_delay_and_a_failing_card_gives_the_amount_back(sandbox: Sandbox) -> None:
    async with sandbox.network():
        ok, failing = await sandbox.pay(), await sandbox.pay("pm_card_refundFail")
        await eventually(lambda: _all_status(sandbox, [ok, failing], "succeeded"))
        sandbox.settings.sandbox_settle_delay_ms = 500
        refunds = [await sandbox.provider.refund(i, 250, f"refund-{i}") for i in (ok, failing)]
        assert [r.status for r in refunds] == ["pending", "pending"]
        await asyncio.sleep(0.2)
        assert await _refund_statuses(sandbox) == {"pending"}
        await eventually(lambda: _posted(sandbox, "refund.failed"))
        await eventually(lambda: _posted(sandbox, "refund.updated"))
    assert sandbox.endpoint.types()["refund.created"] == 2
    assert await _refund_statuses(sandbox) == {"succeeded", "failed"}
    refunded = await sandbox.admin.fetch("SELECT intent_id, amount_refunded FROM sandbox.payment_intents")
    assert {r["intent_id"]: r["amount_refunded"] for r in refunded} == {ok: 250, failing: 0}


async def test_a_dispute_is_announced_and_decided_after_the_delay(sandbox: Sandbox) -> None:
    sandbox.settings.sandbox_settle_delay_ms = 500
    async with sandbox.network():
        intent_id = await sandbox.pay("pm_card_createDispute")
        await eventually(lambda: _posted(sandbox, "charge.dispute.funds_withdrawn"))
        dispute_id = await sandbox.admin.fetchval("SELECT dispute_id FROM sandbox.disputes WHERE intent_id = $1",
                                                  intent_id)
        review = await sandbox.provider.submit_dispute_evidence(dispute_id, {"uncategorized_text": "winning_evidence"},
                                                                submit=True)
        assert review.status == "under_review"
        await eventually(lambda: _posted(sandbox, "charge.dispute.closed"))
    # The later event's delivery against the earlier one's creation (the database's clock for both): the earlier
    # event's own delivery may come late on a busy machine, which says nothing about the delay.
    rows = await sandbox.admin.fetch(
        "SELECT type, created_at, delivered_at FROM sandbox.events WHERE payload->'data'->'object'->>'id' = $1"
        " OR payload->'data'->'object'->>'payment_intent' = $1", intent_id)
    made, posted = ({r["type"]: r[col].timestamp() for r in rows if r[col]} for col in ("created_at", "delivered_at"))
    assert posted["charge.dispute.created"] - made["payment_intent.succeeded"] >= 0.35  # announced a delay later
    assert posted["charge.dispute.closed"] - made["charge.dispute.updated"] >= 0.35  # the issuer took its time
    assert "charge.dispute.funds_reinstated" in posted
    assert (await sandbox.provider.retrieve_dispute(dispute_id)).status == "won"


# --- helpers ----------------------------------------------------------------------------------------------------
async def _delivered(sandbox: Sandbox, object_id: str, count: int) -> bool:
    return await _states(sandbox, object_id, ["delivered"] * count)


async def _states(sandbox: Sandbox, object_id: str, states: list[str]) -> bool:
    return [e["state"] for e in await sandbox.events(object_id)] == states


async def _posted(sandbox: Sandbox, event_type: str) -> bool:
    return event_type in sandbox.endpoint.types()


async def _all_status(sandbox: Sandbox, intent_ids: list[str], status: str) -> bool:
    return all([await intent_status(sandbox, i) == status for i in intent_ids])


async def _refund_statuses(sandbox: Sandbox) -> set[str]:
    return {r["status"] for r in await sandbox.admin.fetch("SELECT status FROM sandbox.refunds")}
