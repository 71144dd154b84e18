"""Transient provider failures are retried with backoff and never make a second PaymentIntent; when retries run
out the step is dead-lettered, and a replay (exactly once) finishes the payment."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from activities.stores import dead_letters
from contracts.dead_letters import DeadLetter
from paysaga.db import create_pool, tenant_tx
from tests.integration.helpers import customer_with_method, pay, wait_status
from tests.stack import Stack

pytestmark = pytest.mark.integration


async def intents_of(stack: Stack, payment_id: str) -> int:
    return await stack.admin_pool.fetchval("SELECT count(*) FROM sandbox.payment_intents WHERE payment_id = $1",
                                           payment_id)


@pytest.mark.parametrize(("kind", "failures"), [("500", 2), ("429", 2), ("timeout", 1)])
async def test_transient_failures_make_one_intent(stack: Stack, tenant: tuple[str, str], kind: str,
                                                  failures: int) -> None:
    s = stack.settings
    s.sandbox_fail_kind, s.sandbox_fail_first_calls = kind, failures
    try:
        async with stack.http(tenant[1]) as http:
            cid, pm = await customer_with_method(http)
            r = await pay(http, cid, pm, "4.20")
            assert r.status_code == 201, r.text
            await wait_status(http, r.json()["id"], {"completed"}, timeout=60)
    finally:
        s.sandbox_fail_first_calls = 0
    assert await intents_of(stack, r.json()["id"]) == 1


async def test_exhausted_retries_are_dead_lettered_and_replayed_once(stack: Stack, tenant: tuple[str, str]) -> None:
    s = stack.settings
    s.sandbox_fail_kind, s.sandbox_fail_first_calls, s.provider_max_attempts = "429", 2, 2
    try:
        async with stack.http(tenant[1]) as http:
            cid, pm = await customer_with_method(http)
            post = asyncio.create_task(pay(http, cid, pm, "6.00"))  # answers only once the intent exists
            async with asyncio.timeout(30):
                while not (letters := (await http.get("/v1/admin/dead_letters")).json()["data"]):
                    await asyncio.sleep(0.2)
            letter = letters[0]
            assert letter["status"] == "open" and letter["step"] == "create_intent" and "429" in letter["reason"]
            payment_id = letter["payment_id"]
            assert (await http.get(f"/v1/payments/{payment_id}")).json()["status"] == "created"

            r = await http.post(f"/v1/admin/dead_letters/{letter['id']}/replay")
            assert r.status_code == 200 and r.json()["status"] == "replayed", r.text
            again = await http.post(f"/v1/admin/dead_letters/{letter['id']}/replay")
            assert again.status_code in (200, 409)  # the same update id answers the same; never a second run
            assert (await post).status_code == 201
            await wait_status(http, payment_id, {"completed"})
            listed = (await http.get("/v1/admin/dead_letters", params={"status": "all"})).json()["data"]
    finally:
        s.sandbox_fail_first_calls, s.provider_max_attempts = 0, 8
    assert [x["status"] for x in listed if x["id"] == letter["id"]] == ["replayed"]
    assert await intents_of(stack, payment_id) == 1
    async with stack.http(tenant[1]) as http:  # after the run closed: the first answer again, nothing re-run
        late = await http.post(f"/v1/admin/dead_letters/{letter['id']}/replay")
    assert late.status_code in (200, 409)
    assert late.json().get("status", "replayed") == "replayed"
    assert await intents_of(stack, payment_id) == 1


async def test_a_claim_run_again_answers_what_its_first_run_answered(stack: Stack, tenant: tuple[str, str]) -> None:
    """A workflow task that claimed a letter and then failed (a signal arrived as the workflow completed) runs the
    claim again: it must answer `replayed` again, not report the letter as no longer open."""
    dlq_id = f"dlq_test_{uuid.uuid4().hex[:12]}"
    pool = await create_pool(stack.db.app_url, max_size=1)
    try:
        async with tenant_tx(pool, tenant[0]) as conn:
            await dead_letters.insert(conn, DeadLetter(
                tenant_id=tenant[0], dlq_id=dlq_id, workflow_id="payment/x", payment_id="pay_x", step="create_intent",
                reason="429", input={}))
        for _ in range(2):
            async with tenant_tx(pool, tenant[0]) as conn:
                assert await dead_letters.resolve(conn, dlq_id, "replayed", "api:key_a")
        async with tenant_tx(pool, tenant[0]) as conn:
            assert not await dead_letters.resolve(conn, dlq_id, "expired", "workflow")  # replayed: not expirable
    finally:
        await pool.close()
    row = await stack.admin_pool.fetchrow(
        "SELECT status, resolved_by FROM paysaga.dead_letters WHERE dlq_id = $1", dlq_id)
    assert dict(row) == {"status": "replayed", "resolved_by": "api:key_a"}


async def test_dead_letters_need_the_admin_role(stack: Stack) -> None:
    _, key = await stack.new_tenant(["payments"])
    async with stack.http(key) as http:
        assert (await http.get("/v1/admin/dead_letters")).status_code == 403


def test_cli_lists_dead_letters(stack: Stack) -> None:
    import os
    import subprocess
    import sys

    s = stack.settings
    env = {**os.environ, "DATABASE_URL": s.database_url, "TEMPORAL_ADDRESS": s.temporal_address}
    out = subprocess.run([sys.executable, "-m", "paysaga.cli", "dlq", "list"], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.splitlines()[0].split()[:3] == ["id", "status", "step"]
    assert "create_intent" in out  # the dead letter of the test above, seen across tenants
