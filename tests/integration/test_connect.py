"""Connected accounts over HTTP: create and onboard a seller, split charges (platform fee + the seller's share) in
the ledger, and refunds and lost disputes taking the share back in proportion."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.helpers import customer_with_method, pay, wait_status
from tests.stack import Stack

pytestmark = pytest.mark.integration


async def new_account(http: httpx.AsyncClient, currency: str = "USD", **extra: Any) -> dict[str, Any]:
    body = {"country": "US", "settlement_currency": currency, "display_name": "Ada's Pottery",
            "payout_method": {"token": "ba_1NqSbxPottery", "last4": "6789"}, **extra}
    r = await http.post("/v1/connected_accounts", json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert r.status_code == 201, r.text
    return r.json()


async def balances(http: httpx.AsyncClient) -> dict[str, int]:
    r = await http.get("/v1/ledger/accounts")
    assert r.status_code == 200, r.text
    return {a["id"]: a["balance_micros"] for a in r.json()["data"]}


async def split_payment(http: httpx.AsyncClient, account_id: str, amount: str, fee: str,
                        token: str = "pm_card_visa") -> dict[str, Any]:
    cid, pm = await customer_with_method(http, token)
    r = await pay(http, cid, pm, amount, destination=account_id, application_fee=fee)
    assert r.status_code == 201, r.text
    assert r.json()["destination"] == account_id and r.json()["application_fee"] == fee
    return await wait_status(http, r.json()["id"], {"completed"})


async def wait_for(http: httpx.AsyncClient, path: str, done: Any, timeout: float = 30) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            body = (await http.get(path)).json()
            if done(body):
                return body
            await asyncio.sleep(0.1)


async def test_connected_account_lifecycle(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        key = str(uuid.uuid4())
        body = {"country": "GB", "settlement_currency": "GBP", "payout_method": {"token": "ba_1NqSbxAbcdef123"},
                "payout_schedule": {"interval": "weekly", "weekday": "friday", "delay_days": 2, "minimum": "25.00"}}
        first = await http.post("/v1/connected_accounts", json=body, headers={"Idempotency-Key": key})
        again = await http.post("/v1/connected_accounts", json=body, headers={"Idempotency-Key": key})
        assert first.status_code == again.status_code == 201, first.text
        assert again.headers["Idempotent-Replayed"] == "true" and again.json()["id"] == first.json()["id"]
        account = first.json()
        assert account["id"].startswith("acct_") and account["settlement_currency"] == "GBP"
        assert account["onboarding_status"] in {"pending", "restricted", "enabled"}
        assert account["payout_schedule"]["weekday"] == "friday" and account["payout_schedule"]["minimum"] == "25.00"

        clear = await http.post("/v1/connected_accounts", json={**body, "payout_method": {"token": "12345678901"}},
                                headers={"Idempotency-Key": str(uuid.uuid4())})
        assert clear.status_code == 422 and clear.headers["content-type"].startswith("application/problem+json")

        r = await http.post(f"/v1/connected_accounts/{account['id']}", json={"onboarding_status": "enabled"})
        assert r.status_code == 200, r.text
        assert r.json()["onboarding_status"] == "enabled" and r.json()["settlement_currency"] == "GBP"
        listed = (await http.get("/v1/connected_accounts", params={"onboarding_status": "enabled"})).json()
        assert [a["id"] for a in listed["data"]] == [account["id"]]
        assert (await http.get("/v1/connected_accounts/acct_missing")).status_code == 404
    async with stack.http((await stack.new_tenant())[1]) as other:
        assert (await other.get(f"/v1/connected_accounts/{account['id']}")).status_code == 404


async def test_split_payment_and_proportional_refunds(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        account = await new_account(http)
        seller, fees = f"seller_payable:{account['id']}:USD", "platform_fees:USD"
        cid, pm = await customer_with_method(http)
        no_dest = await pay(http, cid, pm, "10.00", application_fee="1.00")
        assert no_dest.status_code == 422, no_dest.text
        too_big = await pay(http, cid, pm, "10.00", destination=account["id"], application_fee="10.01")
        assert too_big.status_code == 422
        unknown = await pay(http, cid, pm, "10.00", destination="acct_missing", application_fee="1.00")
        assert unknown.status_code == 422 and unknown.json()["type"].endswith("/unknown-connected-account")

        payment = await split_payment(http, account["id"], "10.00", "1.50")
        after = await balances(http)
        assert after[seller] == -8_500_000 and after[fees] == -1_500_000  # credits: owed to the seller, earned

        for amount in ("3.33", None):  # a partial refund, then the rest
            r = await http.post(f"/v1/payments/{payment['id']}/refunds",
                                json={"reason": "requested_by_customer", **({"amount": amount} if amount else {})},
                                headers={"Idempotency-Key": str(uuid.uuid4())})
            assert r.status_code == 201, r.text
            await wait_for(http, f"/v1/refunds/{r.json()['id']}", lambda b: b["status"] == "succeeded")
            now = await balances(http)
            if amount:
                # 3.33 of 10.00 takes back 33.3 % of both, in whole cents: 0.50 of the fee, 2.83 of the share.
                assert now[seller] + now[fees] == -(10_000_000 - 3_330_000)
                assert now[seller] == -8_500_000 + 2_830_000 and now[fees] == -1_500_000 + 500_000
        assert now[seller] == 0 and now[fees] == 0  # a full refund returns both to zero
        trial = (await http.get("/v1/ledger/trial_balance")).json()
        assert trial["balanced"] is True


async def test_lost_dispute_claws_back_the_sellers_share(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        account = await new_account(http)
        seller, fees = f"seller_payable:{account['id']}:USD", "platform_fees:USD"
        payment = await split_payment(http, account["id"], "20.00", "2.00", token="pm_card_createDispute")
        listed = await wait_for(http, f"/v1/payments/{payment['id']}/disputes", lambda b: bool(b["data"]))
        dispute = listed["data"][0]
        r = await http.post(f"/v1/disputes/{dispute['id']}/evidence", json={"uncategorized_text": "losing_evidence"})
        assert r.status_code == 200, r.text
        await wait_for(http, f"/v1/disputes/{dispute['id']}", lambda b: b["status"] == "lost")
        now = await balances(http)
        assert now[seller] == 0 and now[fees] == 0
        assert (await http.get("/v1/ledger/trial_balance")).json()["balanced"] is True


def account_event(provider_account_id: str, tenant_id: str, account_id: str, **fields: Any) -> dict[str, Any]:
    import time

    return {"id": f"evt_test_{uuid.uuid4().hex[:16]}", "object": "event", "type": "account.updated",
            "created": int(time.time()),
            "data": {"object": {"id": provider_account_id, "object": "account", "charges_enabled": False,
                                "payouts_enabled": False, "details_submitted": False,
                                "requirements": {"disabled_reason": None},
                                "metadata": {"tenant_id": tenant_id, "account_id": account_id}, **fields}}}


async def test_account_updated_webhooks_move_onboarding(stack: Stack, tenant: tuple[str, str]) -> None:
    from tests.integration.webhook_helpers import post_event

    async with stack.http(tenant[1]) as http:
        account = await new_account(http)
        provider_id = account["provider_account_id"]
        assert provider_id and account["onboarding_status"] == "pending"
        steps = [({"details_submitted": True}, "restricted"),
                 ({"details_submitted": True, "payouts_enabled": True, "charges_enabled": True}, "enabled"),
                 ({"requirements": {"disabled_reason": "rejected.fraud"}}, "rejected")]
        for fields, expected in steps:
            event = account_event(provider_id, tenant[0], account["id"], **fields)
            for _ in range(2):  # delivered twice: applied once
                r = await post_event(stack, event)
                assert r.status_code == 200, r.text
            body = (await http.get(f"/v1/connected_accounts/{account['id']}")).json()
            assert body["onboarding_status"] == expected, (fields, body)
        cid, pm = await customer_with_method(http)
        refused = await pay(http, cid, pm, "5.00", destination=account["id"], application_fee="0.50")
        assert refused.status_code == 422 and refused.json()["type"].endswith("/connected-account-rejected")
