"""Advisory fraud scoring on the real stack: stored on the payment, shown by the API, searchable in Temporal,
able to ask for 3-D Secure — never to decline."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from activities.risk_report import quarter_of
from contracts import search_attributes as sa
from tests.integration.helpers import pay, wait_status
from tests.recording import record_history
from tests.stack import Stack
from workflows.risk_report import RiskBiasReportWorkflow

pytestmark = pytest.mark.integration


async def customer(http, country: str, token: str = "pm_card_visa") -> tuple[str, str]:  # type: ignore[no-untyped-def]
    cid = (await http.post("/v1/customers", json={"country": country})).json()["id"]
    pm = (await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": token})).json()["id"]
    return cid, pm


async def test_a_risky_payment_is_challenged_not_declined(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer(http, "DE")  # pm_card_visa is issued in the US: a country mismatch
        for _ in range(4):  # repeat purchases within the hour, each settled before the next
            body = (await pay(http, cid, pm, "20.00", "EUR")).json()
            assert body["fraud"]["action"] == "allow", body["fraud"]
            await wait_status(http, body["id"], {"completed"})
        body = (await pay(http, cid, pm, "20.00", "EUR")).json()  # the fifth in the hour: a burst
        assert body["fraud"]["action"] in ("require_3ds", "review") and body["fraud"]["score"] >= 40
        assert {"velocity_last_hour", "context_corroborates_risk"} <= {r["code"] for r in body["fraud"]["reasons"]}
        assert body["status"] == "pending" and body["next_action"]  # the score asked for 3-D Secure
        await http.post(body["next_action"]["redirect_to_url"]["url"], json={"outcome": "succeed"})
        await wait_status(http, body["id"], {"completed"})
    described = await stack.client.get_workflow_handle(body["workflow_id"]).describe()
    assert described.typed_search_attributes.get(sa.FRAUD_SCORE) == body["fraud"]["score"]


@pytest.mark.parametrize("token", ["pm_card_visa", "pm_card_de"])
async def test_a_first_payment_from_abroad_completes_without_3ds(
        stack: Stack, tenant: tuple[str, str], token: str) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer(http, "DE", token)
        card = (await http.get(f"/v1/payment_methods/{pm}")).json()
        body = (await pay(http, cid, pm, "49.90", "EUR")).json()
        assert body["fraud"]["action"] == "allow" and body["fraud"]["score"] < 40, body["fraud"]
        assert body["status"] == "completed" and not body.get("next_action")  # a card succeeds at confirm
        done = await wait_status(http, body["id"], {"completed", "failed", "canceled"})
    assert done["status"] == "completed"
    codes = {r["code"] for r in body["fraud"]["reasons"]}
    assert ("country_mismatch" in codes) is (card["country"] != "DE")
    assert card["country"] == ("US" if token == "pm_card_visa" else "DE")


async def test_an_ordinary_payment_is_allowed_and_scored(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer(http, "US")
        body = (await pay(http, cid, pm, "20.00")).json()
    assert body["fraud"]["action"] == "allow" and body["status"] == "completed"  # a card succeeds at confirm
    assert all(set(r) >= {"code", "contribution", "explanation"} for r in body["fraud"]["reasons"])


async def test_bias_report_workflow_and_cli(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer(http, "DE")
        await pay(http, cid, pm, "5.00", "EUR")
    quarter = quarter_of(datetime.now(UTC).date())
    handle = await stack.client.start_workflow(
        RiskBiasReportWorkflow.run, quarter, id=f"bias-{quarter}-{tenant[0][:8]}", task_queue=stack.settings.task_queue)
    report = await handle.result()
    await record_history(handle, "quarter", "risk_bias_report")
    segments = {(kind, seg["segment"]) for kind, rows in report["segments"].items() for seg in rows}
    assert ("currency", "EUR") in segments and ("country", "DE") in segments
    env = {**os.environ, "DATABASE_URL": stack.settings.database_url}
    out = (await asyncio.to_thread(  # off the event loop: the in-process worker and API keep running
        subprocess.run, [sys.executable, "-m", "paysaga.cli", "risk", "bias-report", "--quarter", quarter],
        env=env, capture_output=True, text=True, timeout=60, check=True)).stdout
    assert "EUR" in out and quarter in out
    bad = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "paysaga.cli", "risk", "bias-report", "--quarter", "2026Q5"],
        env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
