"""Disputes end to end: sandbox `pm_card_createDispute` → signed `charge.dispute.created` webhook →
DisputeWorkflow → finance's evidence over HTTP → sandbox verdict → `charge.dispute.closed`."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from contracts import search_attributes as sa
from contracts.disputes import DisputeView
from tests.integration.helpers import customer_with_method, pay, wait_status
from tests.integration.webhook_helpers import post_event
from tests.recording import record_history
from tests.stack import Stack

pytestmark = pytest.mark.integration


async def disputed_payment(http: httpx.AsyncClient, amount: str = "25.00") -> tuple[dict, dict]:
    """A payment that succeeds, then its dispute as the webhook recorded it."""
    cid, pm = await customer_with_method(http, "pm_card_createDispute")
    body = (await pay(http, cid, pm, amount)).json()
    payment = await wait_status(http, body["id"], {"completed"})
    async with asyncio.timeout(30):
        while True:
            listed = (await http.get(f"/v1/payments/{payment['id']}/disputes")).json()
            if listed["data"]:
                return payment, listed["data"][0]
            await asyncio.sleep(0.1)


async def wait_dispute(http: httpx.AsyncClient, dispute_id: str, statuses: set[str], timeout: float = 30) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            body = (await http.get(f"/v1/disputes/{dispute_id}")).json()
            if body["status"] in statuses:
                return body
            await asyncio.sleep(0.1)


async def submit(http: httpx.AsyncClient, dispute_id: str, **evidence: Any) -> httpx.Response:
    return await http.post(f"/v1/disputes/{dispute_id}/evidence", json=evidence)


async def workflow_result(stack: Stack, dispute: dict) -> DisputeView:
    handle = stack.client.get_workflow_handle(dispute["workflow_id"], result_type=DisputeView)
    async with asyncio.timeout(30):
        return await handle.result()


async def test_winning_evidence_wins_and_reinstates_the_funds(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        payment, dispute = await disputed_payment(http, "25.00")
        assert dispute["status"] == "needs_response" and dispute["reason"] == "fraudulent"
        assert dispute["amount"] == dispute["funds_withdrawn"] == "25.00" and dispute["funds_reinstated"] == "0.00"
        assert dispute["accepting_evidence"] is True and dispute["evidence_due_by"]
        assert dispute["provider_dispute_id"].startswith("dp_sbx_") and dispute["id"].startswith("dsp_")
        assert dispute["workflow_id"] == f"dispute/{tenant[0]}/{dispute['id']}"
        assert dispute["payment_dispute_status"] == "disputed"

        r = await submit(http, dispute["id"], uncategorized_text="winning_evidence",
                         customer_email_address="ada@example.com", receipt="file_sbx_receipt")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "under_review" and r.json()["evidence_submitted_at"]
        assert r.json()["evidence"]["receipt"] == "file_sbx_receipt"
        won = await wait_dispute(http, dispute["id"], {"won"})
        assert won["outcome"] == "won" and won["funds_reinstated"] == "25.00" and won["closed_at"]
        listed = (await http.get(f"/v1/payments/{payment['id']}/disputes")).json()
        assert listed["dispute_status"] == "disputed_won" and listed["amount_disputed_net"] == "0.00"
        # The payment row itself is untouched: payments are immutable once completed.
        assert (await http.get(f"/v1/payments/{payment['id']}")).json()["status"] == "completed"
        by_provider_id = (await http.get(f"/v1/disputes/{dispute['provider_dispute_id']}")).json()
        assert by_provider_id["id"] == dispute["id"]

    assert (await workflow_result(stack, dispute)).status == "won"
    described = await stack.client.get_workflow_handle(dispute["workflow_id"]).describe()
    assert described.typed_search_attributes.get(sa.DISPUTE_ID) == dispute["id"]  # an SRE finds it by id
    await record_history(stack.client.get_workflow_handle(dispute["workflow_id"]), "won", "dispute")
    events = await stack.admin_pool.fetch(
        "SELECT type, new_status FROM paysaga.dispute_events WHERE dispute_id = $1 ORDER BY seq", dispute["id"])
    types = [e["type"] for e in events]
    assert types[0] == "dispute.created" and types[1] == "dispute.under_review" and "dispute.won" in types
    assert [e["new_status"] for e in events][-1] == "won"
    outbox = await stack.admin_pool.fetch(
        "SELECT event_type, payload FROM paysaga.outbox WHERE payload->'dispute'->>'id' = $1 ORDER BY outbox_id",
        dispute["id"])
    assert [o["event_type"] for o in outbox] == [f"billing.{t}.v1" for t in types]
    assert all("evidence" not in o["payload"]["dispute"] for o in outbox)  # named, not copied
    notes = await stack.admin_pool.fetch(
        """SELECT payload->>'kind' AS kind FROM paysaga.outbox
           WHERE event_type = 'billing.dispute.notification.v1' AND payload->>'dispute_id' = $1
           ORDER BY outbox_id""", dispute["id"])
    assert [n["kind"] for n in notes] == ["dispute.created", "dispute.closed"]


async def test_losing_evidence_loses_and_marks_the_payment_disputed_lost(
        stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        payment, dispute = await disputed_payment(http, "10.00")
        r = await submit(http, dispute["id"], uncategorized_text="losing_evidence")
        assert r.status_code == 200, r.text
        lost = await wait_dispute(http, dispute["id"], {"lost"})
        assert lost["outcome"] == "lost" and lost["funds_reinstated"] == "0.00"
        assert lost["payment_dispute_status"] == "disputed_lost"
        listed = (await http.get(f"/v1/payments/{payment['id']}/disputes")).json()
        assert listed["dispute_status"] == "disputed_lost" and listed["amount_disputed_net"] == "10.00"
        late = await submit(http, dispute["id"], uncategorized_text="winning_evidence")
        assert late.status_code == 409 and late.json()["type"].endswith("/dispute-not-accepting-evidence")
        again = await http.post(f"/v1/disputes/{dispute['id']}/accept")
        assert again.status_code == 409 and again.json()["type"].endswith("/dispute-not-acceptable")


async def test_accept_concedes_the_dispute(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        payment, dispute = await disputed_payment(http, "7.50")
        r = await http.post(f"/v1/disputes/{dispute['id']}/accept")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "accepted" and r.json()["outcome"] == "lost"
        listed = (await http.get(f"/v1/payments/{payment['id']}/disputes")).json()
        assert listed["dispute_status"] == "disputed_lost"
        late = await submit(http, dispute["id"], uncategorized_text="winning_evidence")
        assert late.status_code == 409
    assert (await workflow_result(stack, dispute)).status == "accepted"
    at_provider = await stack.admin_pool.fetchval(
        "SELECT status FROM sandbox.disputes WHERE dispute_id = $1", dispute["provider_dispute_id"])
    assert at_provider == "lost"


async def test_staged_evidence_then_submit(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        _, dispute = await disputed_payment(http, "3.00")
        staged = await submit(http, dispute["id"], product_description="A blue teapot", submit=False)
        assert staged.status_code == 200, staged.text
        assert staged.json()["status"] == "needs_response" and staged.json()["accepting_evidence"] is True
        final = await submit(http, dispute["id"], uncategorized_text="winning_evidence")
        assert final.json()["evidence"] == {"product_description": "A blue teapot",
                                            "uncategorized_text": "winning_evidence"}
        await wait_dispute(http, dispute["id"], {"won"})


async def test_evidence_and_accept_need_the_finance_role(stack: Stack, tenant: tuple[str, str]) -> None:
    _, payments_only = await stack.new_tenant(["payments"])
    async with stack.http(tenant[1]) as http, stack.http(payments_only) as clerk:
        _, dispute = await disputed_payment(http, "4.00")
        for r in (await submit(clerk, dispute["id"], uncategorized_text="winning_evidence"),
                  await clerk.post(f"/v1/disputes/{dispute['id']}/accept")):
            assert r.status_code == 403 and r.json()["type"].endswith("/forbidden")
    _, finance_key = await stack.new_tenant(["finance"])
    async with stack.http(finance_key) as finance:  # a finance key of another tenant: the dispute is not there
        assert (await submit(finance, dispute["id"], uncategorized_text="x")).status_code == 404


async def test_disputes_are_tenant_isolated(stack: Stack, tenant: tuple[str, str]) -> None:
    _, other = await stack.new_tenant()
    async with stack.http(tenant[1]) as http, stack.http(other) as stranger:
        payment, dispute = await disputed_payment(http, "5.00")
        assert (await stranger.get(f"/v1/disputes/{dispute['id']}")).status_code == 404
        assert (await stranger.get(f"/v1/disputes/{dispute['provider_dispute_id']}")).status_code == 404
        assert (await stranger.get(f"/v1/payments/{payment['id']}/disputes")).status_code == 404
        r = await submit(stranger, dispute["id"], uncategorized_text="losing_evidence")
        assert r.status_code == 404 and r.json()["type"].endswith("/dispute-not-found")
        assert (await stranger.post(f"/v1/disputes/{dispute['id']}/accept")).status_code == 404
        assert (await http.get(f"/v1/disputes/{dispute['id']}")).json()["status"] == "needs_response"


async def test_evidence_bodies_are_validated(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        _, dispute = await disputed_payment(http, "2.00")
        cases = [
            {},  # no evidence at all
            {"submit": True},
            {"uncategorized_text": "x" * 20_001},
            {"receipt": "https://example.com/receipt.pdf"},  # documents are provider file ids
            {"uncategorized_text": "ok", "favourite_colour": "blue"},
        ]
        for body in cases:
            r = await http.post(f"/v1/disputes/{dispute['id']}/evidence", json=body)
            assert r.status_code == 422, (body, r.text)
        pan = await submit(http, dispute["id"], uncategorized_text="card 4242 4242 4242 4242 was used")
        assert pan.status_code == 422 and pan.json()["type"].endswith("/card-number-refused")
        assert (await http.get(f"/v1/disputes/{dispute['id']}")).json()["evidence"] == {}


def dispute_event(provider_dispute_id: str, intent_id: str, event_type: str, status: str,
                  event_id: str | None = None, amount: int = 600) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_test_{uuid.uuid4().hex[:16]}", "object": "event", "type": event_type,
        "created": int(time.time()),
        "data": {"object": {
            "id": provider_dispute_id, "object": "dispute", "amount": amount, "currency": "usd",
            "payment_intent": intent_id, "reason": "product_not_received", "status": status,
            "evidence_details": {"due_by": int(time.time()) + 86_400 * 5}, "metadata": {},
        }},
    }


async def test_dispute_webhooks_are_deduplicated_and_start_one_workflow(
        stack: Stack, tenant: tuple[str, str]) -> None:
    """A dispute opened at the provider by hand (a real Stripe dispute, not the sandbox's): webhooks only."""
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http, "pm_card_visa")
        payment = await wait_status(http, (await pay(http, cid, pm, "6.00")).json()["id"], {"completed"})
        dp = f"dp_test_{uuid.uuid4().hex[:12]}"
        created = dispute_event(dp, payment["provider_intent_id"], "charge.dispute.created", "needs_response",
                                event_id=f"evt_{uuid.uuid4().hex}")
        first, again = await post_event(stack, created), await post_event(stack, created)
        assert first.status_code == again.status_code == 200, (first.text, again.text)
        assert first.json() == {"received": True} and again.json()["duplicate"] is True
        other = dispute_event(dp, payment["provider_intent_id"], "charge.dispute.updated", "needs_response")
        assert (await post_event(stack, other)).json() == {"received": True}  # joins the running workflow
        async with asyncio.timeout(15):  # the workflow records the dispute as its first step: give it the time
            while not (listed := (await http.get(f"/v1/payments/{payment['id']}/disputes")).json())["data"]:
                await asyncio.sleep(0.05)
        assert len(listed["data"]) == 1
        dispute = listed["data"][0]
        assert dispute["reason"] == "product_not_received" and dispute["amount"] == "6.00"

        closed = dispute_event(dp, payment["provider_intent_id"], "charge.dispute.closed", "won")
        assert (await post_event(stack, closed)).status_code == 200
        won = await wait_dispute(http, dispute["id"], {"won"})
        assert won["funds_reinstated"] == "6.00"
        await workflow_result(stack, dispute)
        late = dispute_event(dp, payment["provider_intent_id"], "charge.dispute.closed", "won")
        r = await post_event(stack, late)
        assert r.status_code == 200 and r.json()["note"] == "dispute already closed"

        unknown = dispute_event(f"dp_test_{uuid.uuid4().hex[:12]}", "pi_nobody", "charge.dispute.created",
                                "needs_response")
        r = await post_event(stack, unknown)
        assert r.status_code == 200 and "ignored" in r.json()
    runs = await stack.client.count_workflows(f"WorkflowId = '{dispute['workflow_id']}'")
    assert runs.count == 1


async def test_database_guards_disputes(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        _, dispute = await disputed_payment(http, "1.00")
        r = await http.post(f"/v1/disputes/{dispute['id']}/accept")
        assert r.status_code == 200
    async with stack.admin_pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant[0])
        with pytest.raises(asyncpg.CheckViolationError, match="terminal"):
            await conn.execute("UPDATE paysaga.disputes SET status = 'won' WHERE dispute_id = $1", dispute["id"])
    async with stack.admin_pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="append-only"):
            await conn.execute("DELETE FROM paysaga.dispute_events WHERE dispute_id = $1", dispute["id"])
    app = await asyncpg.connect(stack.db.app_url)
    try:  # the application role without a tenant sees no disputes, and may ask only whose intent this is
        assert await app.fetchval("SELECT count(*) FROM paysaga.disputes") == 0
        owner = await app.fetchrow("SELECT tenant_id::text, payment_id FROM paysaga.payment_by_intent($1)",
                                   "pi_nobody")
        assert owner is None
    finally:
        await app.close()


async def test_duplicated_out_of_order_webhooks_still_make_one_dispute(stack: Stack, tenant: tuple[str, str]) -> None:
    stack.settings.sandbox_webhook_duplicates, stack.settings.sandbox_webhook_shuffle = 3, True
    try:
        async with stack.http(tenant[1]) as http:
            _, dispute = await disputed_payment(http, "8.00")
            r = await submit(http, dispute["id"], uncategorized_text="winning_evidence")
            assert r.status_code == 200, r.text
            won = await wait_dispute(http, dispute["id"], {"won"})
            assert won["funds_reinstated"] == "8.00"
    finally:
        stack.settings.sandbox_webhook_duplicates, stack.settings.sandbox_webhook_shuffle = 1, False
    await workflow_result(stack, dispute)
    statuses = await stack.admin_pool.fetch(
        "SELECT new_status, old_status FROM paysaga.dispute_events WHERE dispute_id = $1 ORDER BY seq",
        dispute["id"])
    moves = [(e["old_status"], e["new_status"]) for e in statuses if e["old_status"] != e["new_status"]]
    assert moves == [(None, "needs_response"), ("needs_response", "under_review"), ("under_review", "won")]
    assert await stack.admin_pool.fetchval(
        "SELECT count(*) FROM paysaga.disputes WHERE payment_id = $1", dispute["payment_id"]) == 1


async def test_no_evidence_by_the_deadline_is_lost(stack: Stack, tenant: tuple[str, str]) -> None:
    """The sandbox closes an unanswered dispute as lost once it is past due; the workflow's poll finds out."""
    saved = stack.settings.sandbox_dispute_evidence_seconds, stack.settings.dispute_poll_seconds
    stack.settings.sandbox_dispute_evidence_seconds, stack.settings.dispute_poll_seconds = 2.0, 1.0
    try:
        async with stack.http(tenant[1]) as http:
            payment, dispute = await disputed_payment(http, "9.00")
            lost = await wait_dispute(http, dispute["id"], {"lost"})
            assert lost["funds_reinstated"] == "0.00" and lost["accepting_evidence"] is False
            late = await submit(http, dispute["id"], uncategorized_text="winning_evidence")
            assert late.status_code == 409
            listed = (await http.get(f"/v1/payments/{payment['id']}/disputes")).json()
            assert listed["dispute_status"] == "disputed_lost"
    finally:
        stack.settings.sandbox_dispute_evidence_seconds, stack.settings.dispute_poll_seconds = saved
    await workflow_result(stack, dispute)
    notes = await stack.admin_pool.fetch(
        """SELECT payload->>'kind' AS kind FROM paysaga.outbox
           WHERE event_type = 'billing.dispute.notification.v1' AND payload->>'dispute_id' = $1
           ORDER BY outbox_id""", dispute["id"])
    assert [n["kind"] for n in notes] == ["dispute.created", "dispute.deadline_passed", "dispute.closed"]
