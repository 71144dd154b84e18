"""The Stripe adapter's Connect calls against a stub of Stripe's API (localstripe has no Connect): accounts,
transfers with what reached the connected account, payouts on the connected account (the Stripe-Account header),
balances, and balance transactions as the settlement file's rows."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from activities.providers.base import CreateAccount, CreatePayout, CreateTransfer, ProviderUnavailable
from activities.providers.settlement_report import parse_settlement_report
from activities.providers.stripe_provider import StripeProvider

BT_TRANSFER = {"id": "txn_tr", "object": "balance_transaction", "amount": -5000, "fee": 0, "net": -5000,
               "currency": "usd", "type": "transfer", "reporting_category": "transfer", "source": "tr_1",
               "created": 1_764_547_200, "available_on": 1_764_547_200}
BT_ARRIVED = {"id": "txn_py", "object": "balance_transaction", "amount": 4620, "fee": 0, "net": 4620,
              "currency": "eur", "type": "payment", "exchange_rate": 0.924, "created": 1_764_547_200,
              "available_on": 1_764_547_200}
BT_CHARGE = {"id": "txn_ch", "object": "balance_transaction", "amount": 10000, "fee": 320, "net": 9680,
             "currency": "usd", "type": "charge", "reporting_category": "charge", "created": 1_764_547_300,
             "available_on": 1_764_720_000, "description": "order 1",
             "source": {"id": "ch_1", "object": "charge", "amount": 10000, "currency": "usd",
                        "payment_intent": "pi_1", "metadata": {"tenant_id": "t1"}}}
BT_OTHER = {**BT_CHARGE, "id": "txn_other", "source": {**BT_CHARGE["source"], "id": "ch_2",
                                                       "metadata": {"tenant_id": "t2"}}}
BT_PAYOUT = {"id": "txn_po", "object": "balance_transaction", "amount": -4620, "fee": 0, "net": -4620,
             "currency": "eur", "type": "payout", "reporting_category": "payout", "source": "po_1",
             "created": 1_764_547_400, "available_on": 1_764_547_400}


class StripeStub:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.app = FastAPI()
        app = self.app

        async def seen(request: Request) -> dict[str, str]:
            form = dict(parse_qsl((await request.body()).decode()))
            self.requests.append({"method": request.method, "path": request.url.path, "form": form,
                                  "query": dict(request.query_params),
                                  "key": request.headers.get("idempotency-key"),
                                  "account": request.headers.get("stripe-account")})
            return form

        @app.post("/v1/accounts")
        async def create_account(request: Request) -> JSONResponse:
            form = await seen(request)
            return JSONResponse({"id": "acct_1", "object": "account", "country": form["country"],
                                 "default_currency": form["default_currency"], "charges_enabled": False,
                                 "payouts_enabled": False, "details_submitted": False,
                                 "requirements": {"disabled_reason": "requirements.past_due"}})

        @app.post("/v1/transfers")
        async def create_transfer(request: Request) -> JSONResponse:
            form = await seen(request)
            return JSONResponse({"id": "tr_1", "object": "transfer", "amount": int(form["amount"]),
                                 "currency": form["currency"], "destination": form["destination"],
                                 "destination_payment": "py_1", "reversed": False,
                                 "balance_transaction": BT_TRANSFER})

        @app.get("/v1/charges/{charge_id}")
        async def destination_payment(charge_id: str, request: Request) -> JSONResponse:
            await seen(request)
            return JSONResponse({"id": charge_id, "object": "charge", "balance_transaction": BT_ARRIVED})

        @app.post("/v1/payouts")
        async def create_payout(request: Request) -> JSONResponse:
            form = await seen(request)
            if form["amount"] == "13":
                return JSONResponse({"error": {"type": "api_error", "message": "try later"}}, 500)
            return JSONResponse({"id": "po_1", "object": "payout", "amount": int(form["amount"]),
                                 "currency": form["currency"], "status": "pending", "arrival_date": 1_764_720_000})

        @app.get("/v1/balance")
        async def balance(request: Request) -> JSONResponse:
            await seen(request)
            return JSONResponse({"object": "balance", "available": [{"amount": 4620, "currency": "eur"}],
                                 "pending": [{"amount": 100, "currency": "eur"}]})

        @app.get("/v1/balance_transactions")
        async def balance_transactions(request: Request) -> JSONResponse:
            await seen(request)
            if request.headers.get("stripe-account"):
                data = [BT_PAYOUT] if request.query_params.get("type") == "payout" else []
            else:
                data = [BT_CHARGE, BT_OTHER]
            return JSONResponse({"object": "list", "data": data, "has_more": False})


@pytest.fixture
async def stub() -> AsyncIterator[tuple[StripeStub, StripeProvider]]:
    stub = StripeStub()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(stub.app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    provider = StripeProvider("sk_test_stub", api_base=f"http://127.0.0.1:{port}")
    try:
        yield stub, provider
    finally:
        await provider.aclose()
        server.should_exit = True
        await task


async def test_an_account_is_created_once_per_connected_account(stub: tuple[StripeStub, StripeProvider]) -> None:
    s, provider = stub
    account = await provider.create_account(CreateAccount(tenant_id="t1", account_id="acct_ours", country="de",
                                                          default_currency="EUR"))
    assert account.id == "acct_1" and account.default_currency == "EUR" and not account.payouts_enabled
    assert account.disabled_reason == "requirements.past_due"
    sent = s.requests[-1]
    assert sent["key"] == "account:acct_ours" and sent["form"]["type"] == "custom"
    assert sent["form"]["country"] == "DE" and sent["form"]["capabilities[transfers][requested]"] == "true"


async def test_a_transfer_carries_its_key_and_reports_what_reached_the_account(
        stub: tuple[StripeStub, StripeProvider]) -> None:
    s, provider = stub
    result = await provider.create_transfer(CreateTransfer(
        tenant_id="t1", payout_id="po_ours", destination="acct_1", amount_minor=5000, currency="USD",
        idempotency_key="transfer:acct_ours:2026-12-07:USD"))
    assert (result.id, result.amount_minor, result.currency) == ("tr_1", 5000, "USD")
    assert (result.destination_amount_minor, result.destination_currency) == (4620, "EUR")
    assert result.balance_transaction is not None and result.balance_transaction.net_minor == -5000
    create, charge = s.requests[-2], s.requests[-1]
    assert create["key"] == "transfer:acct_ours:2026-12-07:USD" and create["form"]["destination"] == "acct_1"
    assert charge["path"] == "/v1/charges/py_1" and charge["account"] == "acct_1"  # read on the connected account


async def test_a_payout_is_made_on_the_connected_account(stub: tuple[StripeStub, StripeProvider]) -> None:
    s, provider = stub
    payout = await provider.create_payout(CreatePayout(tenant_id="t1", payout_id="po_ours", account="acct_1",
                                                       amount_minor=4620, currency="EUR",
                                                       idempotency_key="payout:acct_ours:2026-12-07:EUR"))
    assert (payout.id, payout.status, payout.account, payout.currency) == ("po_1", "pending", "acct_1", "EUR")
    sent = s.requests[-1]
    assert sent["account"] == "acct_1" and sent["key"] == "payout:acct_ours:2026-12-07:EUR"
    assert sent["form"]["metadata[payout_id]"] == "po_ours"
    with pytest.raises(ProviderUnavailable):  # a 5xx is retried by the activity, with the same key
        await provider.create_payout(CreatePayout(tenant_id="t1", payout_id="po_x", account="acct_1",
                                                  amount_minor=13, currency="EUR", idempotency_key="payout:x"))
    balance = await provider.retrieve_balance("acct_1")
    assert balance.available == {"EUR": 4620} and balance.pending == {"EUR": 100}
    assert s.requests[-1]["account"] == "acct_1"


async def test_the_settlement_file_has_the_tenants_lines_and_its_accounts_payouts(
        stub: tuple[StripeStub, StripeProvider]) -> None:
    from datetime import UTC, datetime

    _, provider = stub
    text = await provider.settlement_report("t1", datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC),
                                            ["acct_1"])
    lines = parse_settlement_report(text)
    assert [line.balance_transaction_id for line in lines] == ["txn_ch", "txn_po"]  # not the other tenant's
    charge, payout = lines
    assert charge.payment_intent_id == "pi_1" and charge.charge_id == "ch_1" and str(charge.fee) == "3.20 USD"
    assert payout.connected_account_id == "acct_1" and payout.reporting_category == "payout"
