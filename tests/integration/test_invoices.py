"""Invoices on the real stack over HTTP: a draft's lines, finalization (gapless numbers under concurrency, tax,
the ledger, `billing.invoice.generated.v1` against its JSON Schema), collection by card, the PDF read back,
credit notes before and after payment, out-of-band payment, write-off and recovery, and void by finance only —
with the trial balance at zero throughout."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from pypdf import PdfReader

from services import tenants
from tests.stack import Stack

pytestmark = pytest.mark.integration
SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "billing.invoice.generated.v1.json").read_text())
SELLER = {"legal_name": "Acme Cloud GmbH", "address": {"country": "DE", "city": "Berlin", "postal_code": "10115",
                                                        "line1": "Unter den Linden 1"},
          "tax_ids": [{"type": "eu_vat", "value": "DE136695976"}]}


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def seller(http: httpx.AsyncClient, *registrations: dict[str, Any]) -> None:
    r = await http.put("/v1/tenant/profile", json=SELLER)
    assert r.status_code == 200, r.text
    for registration in ({"country": "DE", "active_from": "2020-01-01"}, *registrations):
        r = await http.post("/v1/tax/registrations", json=registration)
        assert r.status_code == 201, r.text


async def customer(http: httpx.AsyncClient, address: dict[str, Any], *, token: str | None = "pm_card_de",
                   tax_ids: list[dict[str, str]] | None = None, locale: str | None = None) -> str:
    body: dict[str, Any] = {"email": "buyer@example.com", "name": "Erika Mustermann", "address": address}
    if tax_ids:
        body["tax_ids"] = tax_ids
    if locale:
        body["preferred_locale"] = locale
    r = await http.post("/v1/customers", json=body)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    if token:
        r = await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": token})
        assert r.status_code == 201, r.text
        r = await http.post(f"/v1/customers/{cid}", json={"default_payment_method_id": r.json()["id"]})
        assert r.status_code == 200, r.text
    return cid


async def draft(http: httpx.AsyncClient, cid: str, lines: list[dict[str, Any]], currency: str = "EUR",
                **extra: Any) -> dict[str, Any]:
    r = await http.post("/v1/invoices", json={"customer_id": cid, "currency": currency, "lines": lines, **extra},
                        headers=key())
    assert r.status_code == 201, r.text
    return r.json()


async def finalized(http: httpx.AsyncClient, invoice_id: str) -> dict[str, Any]:
    r = await http.post(f"/v1/invoices/{invoice_id}/finalize")
    assert r.status_code == 200, r.text
    return r.json()


async def wait_invoice(http: httpx.AsyncClient, invoice_id: str, check: Any, timeout: float = 30) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            body = (await http.get(f"/v1/invoices/{invoice_id}")).json()
            if check(body):
                return body
            await asyncio.sleep(0.1)


async def trial_balance_is_zero(http: httpx.AsyncClient) -> dict[str, int]:
    r = await http.get("/v1/ledger/trial_balance")
    assert r.status_code == 200, r.text
    assert r.json()["balanced"], r.json()
    accounts = (await http.get("/v1/ledger/accounts")).json()["data"]
    return {a["id"]: a["balance_micros"] for a in accounts}


async def test_an_invoice_from_draft_to_paid_with_its_pdf_event_and_ledger(stack: Stack) -> None:
    _, api_key = await stack.new_tenant(["payments", "finance"])
    async with stack.http(api_key) as http:
        await seller(http)
        cid = await customer(http, {"country": "DE", "city": "München", "postal_code": "80331",
                                    "line1": "Marienplatz 8"}, locale="de_DE")
        inv = await draft(http, cid, [{"description": "Pro plan, seats", "quantity": "3", "unit_amount": "19.99",
                                       "period_start": "2026-12-01", "period_end": "2026-12-31"}])
        assert inv["status"] == "draft" and inv["number"] is None and inv["total"] == "59.97"
        assert "finalize" in inv["actions"] and "void" not in inv["actions"]
        r = await http.post(f"/v1/invoices/{inv['id']}/lines", json={"lines": [
            {"description": "Onboarding", "unit_amount": "100"}, {"description": "Typo", "unit_amount": "1"}]})
        assert r.status_code == 200 and r.json()["subtotal"] == "160.97"
        typo = r.json()["lines"][-1]["id"]
        r = await http.delete(f"/v1/invoices/{inv['id']}/lines/{typo}")
        assert r.status_code == 200 and r.json()["subtotal"] == "159.97"

        opened = await finalized(http, inv["id"])
        assert opened["number"] == "INV-000001" and opened["status"] in ("open", "paid")
        assert opened["tax"] == "30.39"  # 11.39 + 19.00: 19 % per line, half-even to the cent
        assert opened["total"] == "190.36" and opened["lines"][0]["taxes"][0]["rate"] == "19"
        assert opened["lines"][0]["taxes"][0]["taxability_reason"] == "standard_rated"
        r = await http.post(f"/v1/invoices/{inv['id']}/lines", json={"lines": [{"description": "x",
                                                                                "unit_amount": "1"}]})
        assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"

        paid = await wait_invoice(http, inv["id"], lambda b: b["status"] == "paid")
        assert paid["amount_paid"] == "190.36" and paid["amount_remaining"] == "0.00"
        assert paid["actions"] == ["create_credit_note"]

        r = await http.get(f"/v1/invoices/{inv['id']}/pdf")
        assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
        text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(r.content)).pages)
        for expected in ("INV-000001", "Acme Cloud GmbH", "Erika Mustermann", "190,36", "30,39", "19"):
            assert expected in text, expected
        again = await http.get(f"/v1/invoices/{inv['id']}/pdf")
        assert again.content == r.content

        balances = await trial_balance_is_zero(http)
        assert balances[f"receivable:{cid}:EUR"] == 0
        assert balances["revenue:EUR"] == -159_970_000 and balances["tax_payable:DE:EUR"] == -30_390_000
        assert balances["cash:sandbox:EUR"] == 190_360_000

    async with stack.admin_pool.acquire() as conn:  # type: ignore[attr-defined]
        pdf_key = await conn.fetchval("SELECT pdf_key FROM paysaga.invoices WHERE invoice_id = $1", inv["id"])
        events = [r["type"] for r in await conn.fetch(
            "SELECT type FROM paysaga.invoice_events WHERE invoice_id = $1 ORDER BY seq", inv["id"])]
        generated = await conn.fetch(
            "SELECT payload FROM paysaga.outbox WHERE event_type = 'billing.invoice.generated.v1' "
            "AND payload->'invoice'->>'id' = $1", inv["id"])
        committed = await conn.fetchval("SELECT tax_micros FROM paysaga.tax_transactions WHERE reference = $1",
                                        inv["id"])
    assert (Path(stack.settings.object_store_root) / pdf_key).is_file()
    assert events == ["invoice.created", "invoice.lines_added", "invoice.line_removed", "invoice.finalized",
                      "invoice.paid"]
    assert len(generated) == 1 and committed == 30_390_000
    jsonschema.validate(json.loads(generated[0]["payload"]) if isinstance(generated[0]["payload"], str)
                        else generated[0]["payload"], SCHEMA, format_checker=jsonschema.FormatChecker())


async def test_every_generated_event_matches_its_schema(stack: Stack) -> None:
    """One invoice per tax situation (reverse charge, US nexus and none, an invalid VAT number), and then every
    generated event of the session validated against the published schema."""
    _, api_key = await stack.new_tenant(["payments", "finance"])
    async with stack.http(api_key) as http:
        await seller(http, {"country": "US", "state": "CA", "active_from": "2020-01-01"},
                     {"country": "DE", "type": "eu_oss_union", "active_from": "2021-07-01"})  # EU consumers
        buyers = [await customer(http, {"country": "FR"}, tax_ids=[{"type": "eu_vat", "value": "FR40303265045"}]),
                  await customer(http, {"country": "US", "state": "CA", "postal_code": "94103"}),
                  await customer(http, {"country": "US", "state": "NY"}),
                  await customer(http, {"country": "IE"}, tax_ids=[{"type": "eu_vat", "value": "IE123"}])]
        reasons = []
        for cid in buyers:
            inv = await draft(http, cid, [{"description": "Service", "unit_amount": "100.00"}],
                              currency="USD" if cid in buyers[1:3] else "EUR", collection_method="send_invoice",
                              days_until_due=14)
            done = await finalized(http, inv["id"])
            reasons.append((done["lines"][0]["taxes"][0]["taxability_reason"], done["tax"], done["tax_notes"]))
    assert reasons[0][0] == "reverse_charge" and reasons[0][1] == "0.00" and any("everse" in n for n in reasons[0][2])
    assert reasons[1][:2] == ("standard_rated", "7.25")
    assert reasons[2][:2] == ("not_collecting", "0.00")
    assert reasons[3][0] == "standard_rated" and reasons[3][1] == "23.00"  # an invalid VAT number: charged as B2C
    assert any("IE123" in n for n in reasons[3][2])
    async with stack.admin_pool.acquire() as conn:  # type: ignore[attr-defined]
        payloads = [r["payload"] for r in await conn.fetch(
            "SELECT payload FROM paysaga.outbox WHERE event_type = 'billing.invoice.generated.v1'")]
    assert len(payloads) >= 4
    for payload in payloads:
        jsonschema.validate(payload if isinstance(payload, dict) else json.loads(payload), SCHEMA,
                            format_checker=jsonschema.FormatChecker())


async def test_concurrent_finalizations_take_gapless_numbers(stack: Stack) -> None:
    _, api_key = await stack.new_tenant(["payments", "finance"])
    async with stack.http(api_key) as http:
        await seller(http)
        cid = await customer(http, {"country": "DE"}, token=None)
        drafts = [await draft(http, cid, [{"description": f"Item {n}", "unit_amount": "10"}], series="CONC",
                              collection_method="send_invoice", days_until_due=30) for n in range(8)]
        answers = await asyncio.gather(*(http.post(f"/v1/invoices/{d['id']}/finalize") for d in drafts))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    numbers = sorted(a.json()["number"] for a in answers)
    assert numbers == [f"CONC-{n:06d}" for n in range(1, 9)]


async def test_void_is_for_finance_only_and_reverses_ledger_and_tax(stack: Stack) -> None:
    tenant_id, finance_key = await stack.new_tenant(["payments", "finance"])
    *_, payments_key = await tenants.create_key(stack.db.admin_url, tenant_id, ["payments"])  # the same tenant
    async with stack.http(finance_key) as http, stack.http(payments_key) as clerk:
        await seller(http)
        cid = await customer(http, {"country": "DE"}, token=None)
        inv = await draft(http, cid, [{"description": "Consulting", "quantity": "2", "unit_amount": "50"}],
                          collection_method="send_invoice", days_until_due=30)
        opened = await finalized(http, inv["id"])
        assert opened["total"] == "119.00" and opened["due_date"] is not None
        r = await clerk.post(f"/v1/invoices/{inv['id']}/void", json={"reason": "duplicate"})
        assert r.status_code == 403 and r.json()["type"].endswith("/forbidden")
        r = await http.post(f"/v1/invoices/{inv['id']}/void", json={"reason": "issued twice"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "void" and r.json()["void_reason"] == "issued twice"
        assert r.json()["actions"] == []
        r = await http.post(f"/v1/invoices/{inv['id']}/void", json={"reason": "again"})
        assert r.status_code == 409
        balances = await trial_balance_is_zero(http)
        assert balances[f"receivable:{cid}:EUR"] == 0 and balances["revenue:EUR"] == 0
        assert balances["tax_payable:DE:EUR"] == 0
    async with asyncio.timeout(20):
        while True:
            async with stack.admin_pool.acquire() as conn:  # type: ignore[attr-defined]
                reversed_tax = await conn.fetchval(
                    "SELECT tax_micros FROM paysaga.tax_reversals WHERE reference = $1", f"{inv['id']}_void")
            if reversed_tax is not None:
                break
            await asyncio.sleep(0.1)
    assert reversed_tax == 19_000_000


async def test_credit_notes_before_and_after_payment(stack: Stack) -> None:
    _, api_key = await stack.new_tenant(["payments", "finance"])
    async with stack.http(api_key) as http:
        await seller(http)
        cid = await customer(http, {"country": "DE"})
        # Before payment: it reduces what is due.
        inv = await draft(http, cid, [{"description": "A", "unit_amount": "100"},
                                      {"description": "B", "unit_amount": "50"}],
                          collection_method="send_invoice", days_until_due=30)
        opened = await finalized(http, inv["id"])
        body = {"reason": "order_change", "lines": [{"line_id": opened["lines"][1]["id"], "amount": "50.00"}]}
        preview = await http.post(f"/v1/invoices/{inv['id']}/credit_notes/preview", json=body)
        assert preview.status_code == 200 and preview.json()["total"] == "59.50"
        r = await http.post(f"/v1/invoices/{inv['id']}/credit_notes", json=body, headers=key())
        assert r.status_code == 201, r.text
        note = r.json()
        assert note["type"] == "pre_payment" and note["total"] == preview.json()["total"]
        assert note["number"] == f"{opened['number']}-CN01"
        after = (await http.get(f"/v1/invoices/{inv['id']}")).json()
        assert after["amount_remaining"] == "119.00" and after["amount_credited"] == "59.50"
        r = await http.post(f"/v1/invoices/{inv['id']}/pay", json={}, headers=key())
        assert r.status_code == 202, r.text
        paid = await wait_invoice(http, inv["id"], lambda b: b["status"] == "paid")
        assert paid["amount_paid"] == "119.00"

        # After payment: refund + credit + out of band = the note's total.
        r = await http.post(f"/v1/invoices/{inv['id']}/credit_notes", headers=key(), json={
            "reason": "product_unsatisfactory", "amount": "20.00", "refund_amount": "20.00"})
        assert r.status_code == 422 and r.json()["type"].endswith("/credit-note-unbalanced")
        r = await http.post(f"/v1/invoices/{inv['id']}/credit_notes", headers=key(), json={
            "reason": "product_unsatisfactory", "amount": "20.00", "refund_amount": "15.00",
            "credit_amount": "8.80"})
        assert r.status_code == 201, r.text
        note = r.json()
        assert note["type"] == "post_payment" and note["total"] == "23.80" and note["refund_id"]
        refund = note["refund_id"]
        async with asyncio.timeout(30):
            while (await http.get(f"/v1/refunds/{refund}")).json().get("status") != "succeeded":
                await asyncio.sleep(0.2)
        listed = (await http.get(f"/v1/invoices/{inv['id']}/credit_notes")).json()["data"]
        assert [n["number"] for n in listed] == [f"{opened['number']}-CN01", f"{opened['number']}-CN02"]
        r = await http.get(f"/v1/credit_notes/{note['id']}/pdf")
        assert r.status_code == 200 and "Credit note" in PdfReader(io.BytesIO(r.content)).pages[0].extract_text()
        balances = await trial_balance_is_zero(http)
    assert balances[f"receivable:{cid}:EUR"] == 0
    assert balances[f"customer_credit:{cid}:EUR"] == -8_800_000
    assert balances["refunds:EUR"] == 0  # the credit note's refund part went out through the refund
    assert balances["revenue:EUR"] == -(150_000_000 - 50_000_000 - 20_000_000)


async def test_out_of_band_write_off_and_recovery(stack: Stack) -> None:
    _, api_key = await stack.new_tenant(["payments", "finance"])
    async with stack.http(api_key) as http:
        await seller(http)
        cid = await customer(http, {"country": "DE"}, token=None)
        first = await draft(http, cid, [{"description": "Wire", "unit_amount": "10"}],
                            collection_method="send_invoice", days_until_due=10)
        await finalized(http, first["id"])
        r = await http.post(f"/v1/invoices/{first['id']}/mark_paid_out_of_band", json={"memo": "SEPA 42"})
        assert r.status_code == 200 and r.json()["status"] == "paid" and r.json()["paid_out_of_band"]

        second = await draft(http, cid, [{"description": "Bad debt", "unit_amount": "20"}],
                             collection_method="send_invoice", days_until_due=10)
        await finalized(http, second["id"])
        r = await http.post(f"/v1/invoices/{second['id']}/mark_uncollectible", json={})
        assert r.status_code == 200 and r.json()["status"] == "uncollectible"
        assert r.json()["actions"] == ["pay", "mark_paid_out_of_band", "void", "create_credit_note"]
        mid = await trial_balance_is_zero(http)
        assert mid["bad_debt:EUR"] == 23_800_000 and mid[f"receivable:{cid}:EUR"] == 0
        r = await http.post(f"/v1/invoices/{second['id']}/mark_paid_out_of_band", json={})
        assert r.status_code == 200 and r.json()["status"] == "paid"
        end = await trial_balance_is_zero(http)
    assert end["bad_debt:EUR"] == 0 and end["cash:out_of_band:EUR"] == 11_900_000 + 23_800_000


async def test_refusals_are_problems_and_change_nothing(stack: Stack) -> None:
    _, api_key = await stack.new_tenant(["payments", "finance"])
    async with stack.http(api_key) as http:
        cid = await customer(http, {"country": "DE"}, token=None)
        inv = await draft(http, cid, [{"description": "A", "unit_amount": "1"}])
        r = await http.post(f"/v1/invoices/{inv['id']}/finalize")  # no seller profile yet
        assert r.status_code == 409 and r.json()["type"].endswith("/seller-profile-required")
        assert (await http.get(f"/v1/invoices/{inv['id']}")).json()["status"] == "draft"
        for body in ({"customer_id": cid, "currency": "EUR", "lines": [{"description": "x", "unit_amount": "1e3"}]},
                     {"customer_id": cid, "currency": "XXX"},
                     {"customer_id": cid, "currency": "EUR", "days_until_due": 3},
                     {"customer_id": "cus_nobody", "currency": "EUR"}):
            r = await http.post("/v1/invoices", json=body, headers=key())
            assert r.status_code == 422, (body, r.text)
        r = await http.post("/v1/invoices", json={"customer_id": cid, "currency": "EUR"})
        assert r.status_code == 400 and r.json()["type"].endswith("/idempotency-key-required")
        r = await http.get(f"/v1/invoices/{inv['id']}/pdf")
        assert r.status_code == 409
        listed = (await http.get("/v1/invoices", params={"customer_id": cid, "status": "draft"})).json()
        assert [i["id"] for i in listed["data"]] == [inv["id"]]
