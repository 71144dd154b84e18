"""Payment methods as entities over HTTP on the real stack: attach (described by the provider), duplicates by
fingerprint, list, read, detach, expiry, tenant isolation, and payments refusing a detached method."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import pytest_asyncio

from activities.providers.sandbox import card_fingerprint, describe_test_card
from activities.providers.stripe_provider import StripeProvider
from tests.integration.helpers import customer_with_method, pay
from tests.integration.test_localstripe_interop import API_KEY, localstripe_url  # noqa: F401 (fixture)
from tests.stack import Stack

pytestmark = pytest.mark.integration

FIELDS = {"id", "object", "customer_id", "provider", "provider_token", "brand", "last4", "exp_month", "exp_year",
          "expired", "fingerprint", "country", "detached_at", "created_at"}


async def new_customer(http: httpx.AsyncClient) -> str:
    r = await http.post("/v1/customers", json={"email": "pm@example.com"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def test_attach_describes_the_card_and_get_reads_it(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid = await new_customer(http)
        r = await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": "pm_card_mastercard"})
        assert r.status_code == 201, r.text
        pm = r.json()
        assert set(pm) == FIELDS | {"duplicate"} and pm["duplicate"] is False
        assert pm["id"].startswith("pm_") and pm["object"] == "payment_method" and pm["customer_id"] == cid
        assert (pm["provider"], pm["provider_token"], pm["brand"], pm["last4"]) == (
            "sandbox", "pm_card_mastercard", "mastercard", "4444")
        assert (pm["exp_month"], pm["exp_year"], pm["expired"], pm["country"]) == (12, 2040, False, "US")
        assert pm["fingerprint"] == card_fingerprint(describe_test_card("pm_card_mastercard"))
        assert pm["detached_at"] is None
        got = await http.get(f"/v1/payment_methods/{pm['id']}")
        assert got.status_code == 200 and got.json() == {k: v for k, v in pm.items() if k != "duplicate"}
        assert (await http.get("/v1/payment_methods/pm_nope")).status_code == 404
        unknown = await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": "pm_card_nonsense"})
        assert unknown.status_code == 422 and unknown.json()["type"].endswith("/unknown-payment-method")
        missing = await http.post("/v1/customers/cus_nope/payment_methods", json={"token": "pm_card_visa"})
        assert missing.status_code == 404 and missing.json()["type"].endswith("/customer-not-found")


async def test_same_card_twice_returns_the_existing_method(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid = await new_customer(http)
        first = await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": "pm_card_visa"})
        assert first.status_code == 201
        # tok_visa is another token of the same test card (4242): same fingerprint → the existing method, 200.
        again = await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": "tok_visa"})
        assert again.status_code == 200, again.text
        assert again.json()["duplicate"] is True and again.json()["id"] == first.json()["id"]
        assert again.json()["provider_token"] == "pm_card_visa"  # the kept token
        other = await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": "pm_card_visa_debit"})
        assert other.status_code == 201  # another visa, another number: not a duplicate
        # Another customer of the same tenant may hold the same card.
        cid2 = await new_customer(http)
        assert (await http.post(f"/v1/customers/{cid2}/payment_methods",
                                json={"token": "pm_card_visa"})).status_code == 201
        listed = (await http.get(f"/v1/customers/{cid}/payment_methods")).json()
        assert [m["id"] for m in listed["data"]] == [other.json()["id"], first.json()["id"]]
        # After a detach, the same card can be attached again, as a new method.
        await http.post(f"/v1/payment_methods/{first.json()['id']}/detach")
        fresh = await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": "tok_visa"})
        assert fresh.status_code == 201 and fresh.json()["id"] != first.json()["id"]


async def test_concurrent_attaches_of_one_card_create_one_method(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid = await new_customer(http)
        responses = await asyncio.gather(*(
            http.post(f"/v1/customers/{cid}/payment_methods", json={"token": t})
            for t in ["pm_card_visa", "tok_visa"] * 4))
        assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
        assert len({r.json()["id"] for r in responses}) == 1


async def test_list_and_detach(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, visa = await customer_with_method(http)
        amex = (await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": "pm_card_amex"})).json()["id"]
        r = await http.get(f"/v1/customers/{cid}/payment_methods")
        assert r.status_code == 200 and r.json()["object"] == "list" and r.json()["has_more"] is False
        assert [m["id"] for m in r.json()["data"]] == [amex, visa]

        detached = await http.post(f"/v1/payment_methods/{visa}/detach")
        assert detached.status_code == 200 and detached.json()["detached_at"] is not None
        again = await http.post(f"/v1/payment_methods/{visa}/detach")  # idempotent
        assert again.status_code == 200 and again.json() == detached.json()
        assert (await http.post("/v1/payment_methods/pm_nope/detach")).status_code == 404

        active = (await http.get(f"/v1/customers/{cid}/payment_methods")).json()["data"]
        assert [m["id"] for m in active] == [amex]
        everything = (await http.get(f"/v1/customers/{cid}/payment_methods",
                                     params={"include_detached": "true"})).json()["data"]
        assert [m["id"] for m in everything] == [amex, visa]
        assert (await http.get(f"/v1/payment_methods/{visa}")).json()["detached_at"] == detached.json()["detached_at"]
        assert (await http.get("/v1/customers/cus_nope/payment_methods")).status_code == 404


async def test_a_detached_method_is_refused_for_payments(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http, "pm_card_chargeDeclined")  # settles at once
        assert (await pay(http, cid, pm)).status_code == 201
        await http.post(f"/v1/payment_methods/{pm}/detach")
        r = await pay(http, cid, pm)
        assert r.status_code == 422 and r.json()["type"].endswith("/payment-method-detached"), r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert len((await http.get("/v1/payments")).json()["data"]) == 1


async def test_detached_rows_are_frozen_in_the_database(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        _, pm = await customer_with_method(http)
        await http.post(f"/v1/payment_methods/{pm}/detach")
    with pytest.raises(asyncpg.CheckViolationError):
        await stack.admin_pool.execute(
            "UPDATE paysaga.payment_methods SET detached_at = NULL WHERE payment_method_id = $1", pm)


async def test_expired_is_computed_against_today(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        _, pm = await customer_with_method(http)
        assert (await http.get(f"/v1/payment_methods/{pm}")).json()["expired"] is False
        # The provider's card updater would change the expiry; here the owner plays it.
        await stack.admin_pool.execute(
            "UPDATE paysaga.payment_methods SET exp_month = 1, exp_year = 2020 WHERE payment_method_id = $1", pm)
        body = (await http.get(f"/v1/payment_methods/{pm}")).json()
        assert (body["exp_month"], body["exp_year"], body["expired"]) == (1, 2020, True)


async def test_tenant_b_cannot_see_or_detach_tenant_a_methods(stack: Stack, tenant: tuple[str, str]) -> None:
    _, other_key = await stack.new_tenant()
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http)
    async with stack.http(other_key) as other:
        assert (await other.get(f"/v1/payment_methods/{pm}")).status_code == 404
        assert (await other.post(f"/v1/payment_methods/{pm}/detach")).status_code == 404
        assert (await other.get(f"/v1/customers/{cid}/payment_methods")).status_code == 404
        assert (await other.post(f"/v1/customers/{cid}/payment_methods",
                                 json={"token": "pm_card_visa"})).status_code == 404
    async with stack.http(tenant[1]) as http:
        assert (await http.get(f"/v1/payment_methods/{pm}")).json()["detached_at"] is None


async def test_payment_method_endpoints_need_the_payments_role(stack: Stack, tenant: tuple[str, str]) -> None:
    _, finance_key = await stack.new_tenant(["finance"])
    async with stack.http(finance_key) as http:
        r = await http.post("/v1/payment_methods/pm_x/detach")
        assert r.status_code == 403 and r.json()["type"].endswith("/forbidden")
        assert (await http.get("/v1/payment_methods/pm_x")).status_code == 403


# --- the Stripe adapter's describe, against localstripe ------------------------------------------------------
@pytest_asyncio.fixture(scope="module")
async def stripe(localstripe_url: str) -> AsyncIterator[StripeProvider]:  # noqa: F811
    p = StripeProvider(API_KEY, localstripe_url, timeout_s=10)
    yield p
    await p.aclose()


async def test_stripe_describes_a_payment_method(stripe: StripeProvider) -> None:
    card = await stripe.describe_payment_method("pm_card_visa")
    assert (card.brand, card.last4, card.exp_month, card.exp_year) == ("visa", "4242", 12, 2030)
    assert card.fingerprint and card.country
    # localstripe makes a new PaymentMethod per retrieval of a test id; the fingerprint is the card number's.
    assert (await stripe.describe_payment_method("pm_card_visa")).fingerprint == card.fingerprint
    with pytest.raises(ValueError):
        await stripe.describe_payment_method("pm_does_not_exist")


async def test_customer_and_payment_method_changes_announce_themselves_in_the_outbox(
    stack: Stack, tenant: tuple[str, str]
) -> None:
    async with stack.http(tenant[1]) as http:
        cid = (await http.post("/v1/customers", json={"country": "FR"})).json()["id"]
        pm = (await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": "pm_card_visa"})).json()
        await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": "tok_visa"})  # duplicate: no event
        await http.post(f"/v1/payment_methods/{pm['id']}/detach")
        await http.post(f"/v1/payment_methods/{pm['id']}/detach")  # idempotent: no second event
    rows = await stack.admin_pool.fetch(
        "SELECT event_type, payload FROM paysaga.outbox WHERE tenant_id = $1 ORDER BY outbox_id",
        uuid.UUID(tenant[0]))
    assert [r["event_type"] for r in rows] == [
        "billing.customer.created.v1", "billing.payment_method.attached.v1", "billing.payment_method.detached.v1"]
    assert all("provider_token" not in r["payload"].get("payment_method", {}) for r in rows)
