"""Settlement reconciliation on the real stack: sandbox activity (charges, a split charge, a refund, a lost
dispute, and charges and a refund in EUR and GBP settled in USD at the provider's rate), the sandbox's settlement
file against our records. Clean, it reconciles to zero variance; with each kind of discrepancy injected into the
sandbox's balance transactions, each is found once, stored, listed, exported as CSV, and the variance gauge on
/metrics says so."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from contracts.settlement import (
    SETTLEMENT_DAILY_SCHEDULE_ID,
    SETTLEMENT_WEEKLY_SCHEDULE_ID,
    SETTLEMENT_WORKFLOW,
    SettlementInput,
    SettlementResult,
)
from paysaga.schedules import ensure_schedules
from tests.integration.helpers import customer_with_method, pay, wait_status
from tests.integration.test_connect import new_account, split_payment, wait_for
from tests.recording import record_history
from tests.stack import Stack

pytestmark = pytest.mark.integration


async def paid(http: httpx.AsyncClient, amount: str, token: str = "pm_card_visa") -> dict:
    cid, pm = await customer_with_method(http, token)
    r = await pay(http, cid, pm, amount)
    assert r.status_code == 201, r.text
    return await wait_status(http, r.json()["id"], {"completed"})


async def paid_in(http: httpx.AsyncClient, amount: str, currency: str) -> dict:
    cid, pm = await customer_with_method(http)
    r = await pay(http, cid, pm, amount, currency)
    assert r.status_code == 201, r.text
    return await wait_status(http, r.json()["id"], {"completed"})


async def report(stack: Stack, tenant_id: str, start: datetime, end: datetime, in_flight: timedelta,
                 case: str | None = None) -> SettlementResult:
    """What `paysaga reconcile settlement --from --to` runs (services.settlement_reports.run_now), for one tenant."""
    inp = SettlementInput(kind="manual", start=start, end=end, tenant_id=tenant_id,
                          in_flight_hours=in_flight.total_seconds() / 3600, margin_hours=1.0, generated_by="test")
    handle = await stack.client.start_workflow(
        SETTLEMENT_WORKFLOW, inp, id=f"settlement-manual-{uuid.uuid4().hex[:10]}",
        task_queue=stack.settings.task_queue, result_type=SettlementResult)
    result = await handle.result()
    if case:
        await record_history(handle, case, kind="settlement")
    assert result.failed == [] and len(result.reports) == 1
    return result


async def gauge(http: httpx.AsyncClient, tenant_id: str) -> float | None:
    text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("paysaga_settlement_variance_ratio{") and f'tenant_id="{tenant_id}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_a_clean_week_reconciles_to_zero_and_each_injected_kind_is_found_once(
        stack: Stack, tenant: tuple[str, str]) -> None:
    tenant_id, db = tenant[0], stack.admin_pool
    async with stack.http(tenant[1]) as http:
        # Settled in USD: a charge in EUR or GBP is converted by the provider, at its rate.
        assert (await http.put("/v1/tenant/settings", json={"settlement_currency": "USD"})).status_code == 200
        charges = [await paid(http, amount) for amount in ("10.00", "20.00", "30.00", "40.00", "55.55")]
        abroad = [await paid_in(http, amount, currency) for amount, currency in (("80.00", "EUR"), ("19.99", "GBP"))]
        r = await http.post(f"/v1/payments/{abroad[0]['id']}/refunds", json={"amount": "30.00"},
                            headers={"Idempotency-Key": str(uuid.uuid4())})
        assert r.status_code == 201, r.text
        await wait_for(http, f"/v1/refunds/{r.json()['id']}", lambda b: b["status"] == "succeeded")
        account = await new_account(http)
        await split_payment(http, account["id"], "25.00", "2.50")
        r = await http.post(f"/v1/payments/{charges[0]['id']}/refunds", json={"amount": "4.00"},
                            headers={"Idempotency-Key": str(uuid.uuid4())})
        assert r.status_code == 201, r.text
        await wait_for(http, f"/v1/refunds/{r.json()['id']}", lambda b: b["status"] == "succeeded")
        disputed = await paid(http, "12.00", "pm_card_createDispute")
        listed = await wait_for(http, f"/v1/payments/{disputed['id']}/disputes", lambda b: bool(b["data"]))
        await http.post(f"/v1/disputes/{listed['data'][0]['id']}/accept")
        await wait_for(http, f"/v1/disputes/{listed['data'][0]['id']}", lambda b: b["status"] == "accepted")
        await asyncio.sleep(3)  # the last payment comes after a gap: only it is in flight at the window's end
        late = await paid(http, "7.00")
        posted = await db.fetchval(
            "SELECT posted_at FROM paysaga.journal_entries WHERE source_id = $1 AND event = 'payment.completed'",
            late["id"])
        # A week's window ending just after the last payment, which alone is within the in-flight time of its end.
        end, in_flight = posted + timedelta(seconds=1), timedelta(seconds=2)
        start = end - timedelta(days=7)

        clean = (await report(stack, tenant_id, start, end, in_flight, "clean")).reports[0]
        assert not clean.exceeds and clean.currencies and all(
            c.unexplained_micros == 0 and c.variance_ppm == 0 and c.discrepancies == {} for c in clean.currencies)
        body = (await http.get(f"/v1/reconciliation/reports/{clean.report_id}")).json()
        assert body["discrepancy_list"] == [] and body["matched"] == body["records"] > 0
        assert body["currencies"][0]["variance_ratio"] == "0.000000000000"
        assert await gauge(http, tenant_id) == 0.0

        # One of each kind, in the sandbox's balance transactions (what the provider's file is written from).
        bts = await db.fetch(
            "SELECT * FROM sandbox.balance_transactions WHERE tenant_id = $1 AND reporting_category = 'charge' "
            "ORDER BY seq", uuid.UUID(tenant_id))
        by_intent = {bt["payment_intent_id"]: bt for bt in bts}
        intent = {p["id"]: (await http.get(f"/v1/payments/{p['id']}")).json()["provider_intent_id"]
                  for p in [*charges, late]}
        ghost = by_intent[intent[charges[4]["id"]]]
        await db.execute(
            """INSERT INTO sandbox.balance_transactions (balance_transaction_id, tenant_id, account_id, type,
                   reporting_category, source_id, currency, amount_minor, fee_minor, net_minor, exchange_rate,
                   customer_facing_amount_minor, customer_facing_currency, charge_id, payment_intent_id,
                   description, created_at, available_on)
               SELECT 'txn_sbx_ghost', tenant_id, account_id, type, reporting_category, 'ch_sbx_ghost', currency,
                      amount_minor, fee_minor, net_minor, exchange_rate, customer_facing_amount_minor,
                      customer_facing_currency, 'ch_sbx_ghost', 'pi_sbx_ghost', description, created_at, available_on
                 FROM sandbox.balance_transactions WHERE balance_transaction_id = $1""",
            ghost["balance_transaction_id"])  # missing_internal: the provider settled a charge we never made
        await db.execute("DELETE FROM sandbox.balance_transactions WHERE balance_transaction_id = $1",
                         by_intent[intent[charges[1]["id"]]]["balance_transaction_id"])  # missing_at_provider
        await db.execute("UPDATE sandbox.balance_transactions SET amount_minor = amount_minor + 1, "
                         "net_minor = net_minor + 1, customer_facing_amount_minor = customer_facing_amount_minor + 1 "
                         "WHERE balance_transaction_id = $1",
                         by_intent[intent[charges[2]["id"]]]["balance_transaction_id"])  # amount
        await db.execute("UPDATE sandbox.balance_transactions SET fee_minor = fee_minor + 7, net_minor = net_minor - 7 "
                         "WHERE balance_transaction_id = $1",
                         by_intent[intent[charges[3]["id"]]]["balance_transaction_id"])  # fee
        await db.execute("UPDATE sandbox.balance_transactions SET customer_facing_currency = 'EUR' "
                         "WHERE balance_transaction_id = $1",
                         by_intent[intent[charges[4]["id"]]]["balance_transaction_id"])  # currency
        await db.execute("DELETE FROM sandbox.balance_transactions WHERE balance_transaction_id = $1",
                         by_intent[intent[late["id"]]]["balance_transaction_id"])  # timing: not settled yet

        dirty = (await report(stack, tenant_id, start, end, in_flight)).reports[0]
        (usd,) = dirty.currencies
        assert usd.discrepancies == {"missing_internal": 1, "missing_at_provider": 1, "amount": 1, "fee": 1,
                                     "currency": 1, "timing": 1}
        assert dirty.exceeds and usd.unexplained_micros > 0 and usd.variance_ppm > 100

        listed = (await http.get("/v1/reconciliation/reports", params={"kind": "manual"})).json()
        assert [r["id"] for r in listed["data"]] == [dirty.report_id, clean.report_id]
        body = (await http.get(f"/v1/reconciliation/reports/{dirty.report_id}")).json()
        found = {d["kind"]: d for d in body["discrepancy_list"]}
        assert found["timing"]["explained"] is True and found["amount"]["explained"] is False
        assert found["missing_internal"]["lines"][0]["balance_transaction_id"] == "txn_sbx_ghost"
        assert found["missing_at_provider"]["records"][0]["record_id"] == charges[1]["id"]
        exported = await http.get(f"/v1/reconciliation/reports/{dirty.report_id}/discrepancies.csv")
        assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert sorted(r["kind"] for r in rows) == sorted(found)
        assert (await gauge(http, tenant_id) or 0) > 0.0001  # above the alert's 0.01 %
        assert (await http.get("/v1/reconciliation/reports/srr_missing")).status_code == 404


async def test_the_daily_and_weekly_reports_are_scheduled(stack: Stack) -> None:
    await ensure_schedules(stack.client, stack.settings)
    for schedule_id in (SETTLEMENT_DAILY_SCHEDULE_ID, SETTLEMENT_WEEKLY_SCHEDULE_ID):
        handle = stack.client.get_schedule_handle(schedule_id)
        try:
            described = await handle.describe()
            assert described.schedule.action.workflow == SETTLEMENT_WORKFLOW
        finally:
            await handle.delete()


async def test_the_cli_reports_a_window_and_exits_1_above_the_objective(stack: Stack, tenant: tuple[str, str]) -> None:
    from tests.integration.test_payouts import cli

    async with stack.http(tenant[1]) as http:
        first = await paid(http, "9.00")
        intent = (await http.get(f"/v1/payments/{first['id']}")).json()["provider_intent_id"]
    today = datetime.now(UTC).date()
    window = ["reconcile", "settlement", "--from", f"{today}", "--to", f"{today + timedelta(days=2)}",
              "--tenant", tenant[0]]
    code, out = await cli(stack, *window)
    assert code == 0 and "variance 0 ppm" in out, out
    await stack.admin_pool.execute(
        "UPDATE sandbox.balance_transactions SET fee_minor = fee_minor + 1, net_minor = net_minor - 1 "
        "WHERE payment_intent_id = $1", intent)
    code, out = await cli(stack, *window)
    assert code == 1 and "EXCEEDS 0.01 %" in out and "fee 1" in out, out
