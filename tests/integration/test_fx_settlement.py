"""Money across borders on the real stack: a tenant settling in USD takes a payment in EUR; the sandbox converts
at its rate (as Stripe's balance transaction says), the ledger books the fee and the conversion against the ECB
rate quoted for the day, and every currency still balances."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.helpers import customer_with_method, pay, wait_status
from tests.integration.test_connect import balances
from tests.stack import Stack

pytestmark = pytest.mark.integration


async def test_a_payment_in_eur_settles_in_usd_with_its_fee_and_fx_booked(stack: Stack, tenant: tuple[str, str]
                                                                          ) -> None:
    async with stack.http(tenant[1]) as http:
        r = await http.put("/v1/tenant/settings", json={"settlement_currency": "USD"})
        assert r.status_code == 200 and r.json()["settlement_currency"] == "USD", r.text
        cid, pm = await customer_with_method(http)
        body = (await pay(http, cid, pm, "100.00", "EUR")).json()
        payment = await wait_status(http, body["id"], {"completed"})
        now = await balances(http)
        trial = (await http.get("/v1/ledger/trial_balance")).json()
    bt = await stack.admin_pool.fetchrow(
        "SELECT * FROM paysaga.provider_balance_transactions WHERE tenant_id = $1 AND source_id = $2",
        uuid.UUID(tenant[0]), payment["id"])
    assert bt is not None and bt["currency"] == "USD" and bt["exchange_rate"]
    memo = await stack.admin_pool.fetchval(
        "SELECT memo FROM paysaga.journal_entries WHERE tenant_id = $1 AND source_id = $2 AND event = $3",
        uuid.UUID(tenant[0]), payment["id"], "payment.completed.fx")
    # The conversion names its rates, their day and source, and its rounding.
    assert f"EUR/USD {bt['exchange_rate']}" in memo and "half_even to minor units" in memo
    assert bt["balance_transaction_id"] in memo
    assert now["cash:sandbox:EUR"] == 0  # converted: what the customer paid in EUR arrived in USD
    assert now["cash:sandbox:USD"] == bt["amount_micros"] - bt["fee_micros"]
    # Quoted at the ECB reference rate, settled at the sandbox's (1 % below it): the difference is a loss on
    # fx_gain_loss (a debit), so USD balances as well.
    quoted = -now["fx_clearing:USD"]
    assert now["fx_gain_loss:USD"] == quoted - bt["amount_micros"] > 0
    assert abs(now["fx_gain_loss:USD"] - quoted // 100) <= 10_000  # 1 % of the quote, within a cent
    assert "ECB" in memo or "European Central Bank" in memo
    assert trial["balanced"] is True and {c["currency"] for c in trial["currencies"]} >= {"EUR", "USD"}
