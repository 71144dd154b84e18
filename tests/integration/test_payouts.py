"""Payout runs on the real stack: finance starts a run over HTTP, the tenant requires approval, finance approves,
transfers and payouts reach the sandbox, its payout webhooks settle them; a failed payout gives the funds back to
the seller's balance; the report as JSON and CSV; the weekly Schedule's run opens the same way."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from contracts import search_attributes as sa
from contracts.payouts import PAYOUT_RUNS_SCHEDULE_ID, scheduled_run_id
from paysaga.schedules import ensure_schedules
from tests.integration.test_connect import balances, new_account, split_payment, wait_for
from tests.stack import Stack

pytestmark = pytest.mark.integration
DAILY = {"interval": "daily", "delay_days": 0}


@pytest.fixture(autouse=True)
def funds_available_at_once(stack: Stack) -> Iterator[None]:
    """The sandbox makes a charge's funds available the same day, so that today's run can pay them."""
    before, stack.settings.sandbox_available_days = stack.settings.sandbox_available_days, 0
    try:
        yield
    finally:
        stack.settings.sandbox_available_days = before


async def enabled_account(http: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    account = await new_account(http, payout_schedule=DAILY, **extra)
    r = await http.post(f"/v1/connected_accounts/{account['id']}", json={"onboarding_status": "enabled"})
    assert r.status_code == 200, r.text
    return r.json()


async def start_run(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await http.post("/v1/payouts/runs", json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert r.status_code == 201, r.text
    return r.json()


async def test_a_run_approved_by_finance_pays_and_a_failed_payout_returns_the_funds(
        stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        r = await http.put("/v1/tenant/settings", json={"payout_approval_required": True,
                                                        "payout_approval_hours": 48, "payout_reminder_hours": 24})
        assert r.status_code == 200, r.text
        good = await enabled_account(http)
        closed = await enabled_account(http, payout_method={"token": "ba_1NqFailAccountClosed"})
        paid_in = await split_payment(http, good["id"], "100.00", "10.00")
        await split_payment(http, closed["id"], "50.00", "5.00")
        r = await http.post(f"/v1/payments/{paid_in['id']}/refunds", json={"amount": "20.00"},
                            headers={"Idempotency-Key": str(uuid.uuid4())})
        assert r.status_code == 201, r.text
        await wait_for(http, f"/v1/refunds/{r.json()['id']}", lambda b: b["status"] == "succeeded")

        run = await start_run(http)
        assert run["approval_required"] is True and run["trigger"] == "api"
        run = await wait_for(http, f"/v1/payouts/runs/{run['id']}",
                             lambda b: b["status"] in {"awaiting_approval", "completed"})
        report = (await http.get(f"/v1/payouts/runs/{run['id']}/report")).json()
        assert run["status"] == "awaiting_approval", str(report)
        assert run["approval_deadline"] and run["payable"] == 2
        lines = {line["account_id"]: line for line in report["lines"]}
        # 100.00, less its fee (10.00 less the 2.00 the refund gave back), less the 20.00 refund: 72.00.
        assert lines[good["id"]]["gross"] == "100.00" and lines[good["id"]]["fees"] == "8.00"
        assert lines[good["id"]]["refunds"] == "20.00"
        assert lines[good["id"]]["net"] == "72.00" and lines[closed["id"]]["net"] == "45.00"
        assert (await http.get("/v1/payouts", params={"run_id": run["id"]})).json()["data"] == []

        approved = await http.post(f"/v1/payouts/runs/{run['id']}/approve", json={"reason": "checked"})
        assert approved.status_code == 200, approved.text
        assert approved.json()["decided_by"] and approved.json()["status"] in {"paying", "settling", "completed"}
        again = await http.post(f"/v1/payouts/runs/{run['id']}/reject")
        assert again.status_code == 409 and again.headers["content-type"].startswith("application/problem+json")

        done = await wait_for(http, f"/v1/payouts/runs/{run['id']}", lambda b: b["status"] == "completed", 60)
        assert done["payouts"] == {"paid": 1, "failed": 1}
        payouts = {p["account_id"]: p for p in
                   (await http.get("/v1/payouts", params={"run_id": run["id"]})).json()["data"]}
        assert payouts[good["id"]]["status"] == "paid" and payouts[good["id"]]["amount"] == "72.00"
        assert payouts[closed["id"]]["status"] == "failed" and payouts[closed["id"]]["funds_returned"] is True
        assert payouts[closed["id"]]["failure_code"] == "account_closed"
        now = await balances(http)
        assert now[f"seller_payable:{good['id']}:USD"] == 0
        assert now[f"seller_payable:{closed['id']}:USD"] == -45_000_000  # back on its balance for the next run
        assert (await http.get("/v1/ledger/trial_balance")).json()["balanced"] is True

        csv_answer = await http.get(f"/v1/payouts/runs/{run['id']}/report.csv")
        assert csv_answer.status_code == 200 and csv_answer.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(csv_answer.text)))
        assert {row["account_id"] for row in rows} == {good["id"], closed["id"]}

        # A second run the same day pays nothing twice: the payout key (account, period, currency) names the
        # payout already made, at the provider and here.
        second = await start_run(http, connected_account_id=good["id"])
        await wait_for(http, f"/v1/payouts/runs/{second['id']}", lambda b: b["status"] == "awaiting_approval")
        assert (await http.post(f"/v1/payouts/runs/{second['id']}/approve")).status_code == 200
        await wait_for(http, f"/v1/payouts/runs/{second['id']}", lambda b: b["status"] == "completed", 60)
        mine = (await http.get("/v1/payouts", params={"account_id": good["id"]})).json()["data"]
        assert [p["id"] for p in mine] == [payouts[good["id"]]["id"]]
        assert (await balances(http))[f"seller_payable:{good['id']}:USD"] == 0

    described = await stack.client.get_workflow_handle(run["workflow_id"]).describe()
    assert described.typed_search_attributes.get(sa.PAYOUT_RUN_ID) == [run["id"]]
    assert described.typed_search_attributes.get(sa.PAYOUT_STATUS) == "completed"
    types = {r["event_type"] for r in await stack.admin_pool.fetch(
        "SELECT event_type FROM paysaga.outbox WHERE tenant_id = $1 AND event_type LIKE 'billing.payout%'",
        uuid.UUID(tenant[0]))}
    assert {"billing.payout.created.v1", "billing.payout.paid.v1", "billing.payout.failed.v1"} <= types


async def test_the_weekly_schedule_opens_a_run_that_waits_for_finance(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        await http.put("/v1/tenant/settings", json={"payout_approval_required": True, "payout_approval_hours": 48})
        account = await enabled_account(http)
        await split_payment(http, account["id"], "30.00", "3.00")
    await ensure_schedules(stack.client, stack.settings)
    schedule = stack.client.get_schedule_handle(PAYOUT_RUNS_SCHEDULE_ID)
    try:
        described = await schedule.describe()
        assert described.schedule.action.workflow == "PayoutRunsWorkflow"
        await schedule.trigger()  # what Monday morning does
        run_id = scheduled_run_id(tenant[0], datetime.now(UTC).date())
        async with stack.http(tenant[1]) as http:
            run = await wait_for(http, f"/v1/payouts/runs/{run_id}",
                                 lambda b: b.get("status") == "awaiting_approval", 60)
            deadline = datetime.fromisoformat(run["approval_deadline"]) - datetime.fromisoformat(run["created_at"])
            # 48 h from when the run began to wait, a few ms from when its row was created
            assert timedelta(hours=47, minutes=59) < deadline < timedelta(hours=48, minutes=1)
            assert (await http.post(f"/v1/payouts/runs/{run_id}/approve")).status_code == 200
            run = await wait_for(http, f"/v1/payouts/runs/{run_id}", lambda b: b.get("status") == "completed", 60)
    finally:
        await schedule.delete()
    assert run["trigger"] == "schedule" and run["payouts"] == {"paid": 1}
    assert run["totals"] == {"USD": "27.00"}


async def cli(stack: Stack, *args: str) -> tuple[int, str]:
    """`paysaga …` against the test stack, as an operator runs it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "paysaga.cli", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "DATABASE_ADMIN_URL": stack.db.admin_url, "DATABASE_URL": stack.settings.database_url,
             "TEMPORAL_ADDRESS": stack.settings.temporal_address, "PAYSAGA_TASK_QUEUE": stack.settings.task_queue})
    out = (await asyncio.wait_for(proc.communicate(), 90))[0].decode()
    assert proc.returncode is not None
    return proc.returncode, out


async def test_finance_runs_and_approves_a_payout_run_from_the_cli(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        await http.put("/v1/tenant/settings", json={"payout_approval_required": True})
        account = await enabled_account(http)
        await split_payment(http, account["id"], "12.00", "2.00")
    code, out = await cli(stack, "payouts", "run", "--tenant", tenant[0])
    assert code == 0, out
    run_id = out.split(":", 1)[0].strip()
    assert run_id.startswith("prun_")
    async with stack.http(tenant[1]) as http:
        await wait_for(http, f"/v1/payouts/runs/{run_id}", lambda b: b["status"] == "awaiting_approval")
        code, out = await cli(stack, "payouts", "approve", run_id, "--tenant", tenant[0], "--reason", "ok")
        assert code == 0, out
        run = await wait_for(http, f"/v1/payouts/runs/{run_id}", lambda b: b["status"] == "completed", 60)
    assert run["trigger"] == "cli" and run["decided_by"] == "cli" and run["totals"] == {"USD": "10.00"}


async def test_a_payout_the_bank_returns_after_paid_gives_the_funds_back(stack: Stack, tenant: tuple[str, str]
                                                                        ) -> None:
    async with stack.http(tenant[1]) as http:
        account = await enabled_account(http, payout_method={"token": "ba_1NqReturnedAfterPaid"})
        await split_payment(http, account["id"], "40.00", "4.00")
        run = await start_run(http)
        await wait_for(http, f"/v1/payouts/runs/{run['id']}", lambda b: b["status"] == "completed", 60)
        payouts = (await http.get("/v1/payouts", params={"run_id": run["id"]})).json()["data"]
        (payout,) = await asyncio.gather(wait_for(
            http, f"/v1/payouts/{payouts[0]['id']}", lambda b: b["status"] == "failed" and b["funds_returned"], 60))
        assert payout["failure_code"] == "account_closed" and payout["amount"] == "36.00"
        now = await balances(http)
        assert now[f"seller_payable:{account['id']}:USD"] == -36_000_000  # owed again, for the next run
        assert now.get(f"payouts_in_transit:{account['id']}:USD", 0) == 0
        assert (await http.get("/v1/ledger/trial_balance")).json()["balanced"] is True


async def test_a_seller_settling_in_eur_is_paid_usd_charges_converted(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        account = await enabled_account(http, settlement_currency="EUR")
        await split_payment(http, account["id"], "50.00", "5.00")
        run = await start_run(http)
        run = await wait_for(http, f"/v1/payouts/runs/{run['id']}", lambda b: b["status"] == "completed", 60)
        (line,) = (await http.get(f"/v1/payouts/runs/{run['id']}/report")).json()["lines"]
        (payout,) = (await http.get("/v1/payouts", params={"run_id": run["id"]})).json()["data"]
        trial = (await http.get("/v1/ledger/trial_balance")).json()
    assert line["currency"] == "USD" and line["net"] == "45.00" and line["settlement_currency"] == "EUR"
    assert line["fx_rate"] and line["fx_source"] and line["settlement_net"]
    assert payout["status"] == "paid" and payout["destination_currency"] == "EUR" and payout["destination_amount"]
    # The report quotes the ECB rate; the provider converted at its own (the sandbox's: 1 % below it).
    quoted, arrived = Decimal(line["settlement_net"]), Decimal(payout["destination_amount"])
    assert abs(arrived - quoted * Decimal("0.99")) <= Decimal("0.01")
    assert trial["balanced"] is True


async def test_a_rolling_reserve_is_held_back_and_a_refunded_share_pays_nothing(
        stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        held = await enabled_account(http, reserve={"basis_points": 1000, "hold_days": 30})
        await split_payment(http, held["id"], "100.00", "10.00")
        owing = await enabled_account(http)
        paid_in = await split_payment(http, owing["id"], "20.00", "2.00")
        r = await http.post(f"/v1/payments/{paid_in['id']}/refunds", json={},
                            headers={"Idempotency-Key": str(uuid.uuid4())})
        await wait_for(http, f"/v1/refunds/{r.json()['id']}", lambda b: b["status"] == "succeeded")
        run = await start_run(http)
        await wait_for(http, f"/v1/payouts/runs/{run['id']}", lambda b: b["status"] == "completed", 60)
        lines = {line["account_id"]: line for line in
                 (await http.get(f"/v1/payouts/runs/{run['id']}/report")).json()["lines"]}
        balance = (await http.get(f"/v1/connected_accounts/{held['id']}/balance")).json()
    # 10 % of the 90.00 share is held for 30 days: 81.00 paid, 9.00 stays.
    assert (lines[held["id"]]["reserve"], lines[held["id"]]["net"]) == ("9.00", "81.00")
    assert lines[held["id"]]["carried_forward"] == "9.00" and lines[held["id"]]["decision"] == "pay"
    assert (lines[owing["id"]]["net"], lines[owing["id"]]["decision"]) == ("0.00", "nothing")
    assert balance["object"] == "connected_account_balance"


async def test_without_webhooks_the_run_polls_the_provider(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        account = await enabled_account(http)
        await split_payment(http, account["id"], "15.00", "1.50")
        s = stack.settings
        drop, poll = s.sandbox_webhook_drop_rate, s.payout_poll_seconds
        s.sandbox_webhook_drop_rate, s.payout_poll_seconds = 1.0, 1.0  # every webhook lost; a poll each second
        try:
            run = await start_run(http)
            run = await wait_for(http, f"/v1/payouts/runs/{run['id']}", lambda b: b["status"] == "completed", 60)
        finally:
            s.sandbox_webhook_drop_rate, s.payout_poll_seconds = drop, poll
    assert run["payouts"] == {"paid": 1} and run["totals"] == {"USD": "13.50"}
