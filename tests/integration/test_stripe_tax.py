"""StripeTaxProvider against Stripe's documented shapes: the official SDK, pointed with `api_base` at a local
fake that answers with fixture bodies (tests/stripe_tax_fake.py), and the real PostgreSQL for the record.

Checked: the parameters sent (form-encoded as the SDK sends them), the idempotency keys, and the mapping of the
answers (jurisdictions and their levels, rates, taxability reasons, minor units → micro-units), errors, and
that the recorded commit makes a retried commit skip Stripe altogether.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import asyncpg
import pytest

from activities.providers.base import ProviderUnavailable
from activities.tax import build_tax_provider
from activities.tax.stripe_tax import StripeTaxProvider, line_quotes, to_quote
from contracts.tax import Address, TaxId, TaxLineInput, TaxQuoteRequest, TaxReversalRequest
from domain.tax import REVERSE_CHARGE_NOTE, TaxError
from paysaga.db import create_pool
from tests.stack import Stack
from tests.stripe_tax_fake import (
    CALCULATION_LINE_ITEMS,
    CALCULATIONS,
    COMMIT,
    REVERSAL,
    FakeStripeTax,
    fixture,
    running_fake_stripe_tax,
)

pytestmark = pytest.mark.integration

TAX_DATE = date(2026, 3, 1)


@pytest.fixture
async def app_pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(stack.db.app_url, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeStripeTax]:
    async with running_fake_stripe_tax() as f:
        yield f


@pytest.fixture
async def provider(app_pool: asyncpg.Pool, fake: FakeStripeTax) -> AsyncIterator[StripeTaxProvider]:
    p = StripeTaxProvider(app_pool, api_key="sk_test_paysaga_fake", api_base=fake.url)
    yield p
    await p.aclose()


def request(tenant_id: str, customer: Address, *, currency: str = "EUR", lines: tuple[int, int] = (99_990_000,
            33_330_000), tax_ids: list[TaxId] | None = None, exempt: str = "none") -> TaxQuoteRequest:
    return TaxQuoteRequest(
        tenant_id=tenant_id, reference=f"inv_{uuid.uuid4().hex[:8]}", currency=currency, tax_date=TAX_DATE,
        seller=Address(country="DE"), customer=customer, customer_tax_ids=tax_ids or [],
        customer_exempt=exempt,  # type: ignore[arg-type]
        lines=[TaxLineInput(line_id="seats", amount_micros=lines[0]),
               TaxLineInput(line_id="usage", amount_micros=lines[1], tax_code="txcd_10103000")],
    )


PARIS = Address(country="FR", city="Paris", postal_code="75002", line1="12 rue de la Paix")


async def test_an_eu_b2c_quote_sends_what_the_api_reference_asks(stack: Stack, provider: StripeTaxProvider,
                                                                 fake: FakeStripeTax) -> None:
    tid, _ = await stack.new_tenant()
    fake.answer(CALCULATIONS, "calculation_fr_b2c")
    quote = await provider.quote(request(tid, PARIS, tax_ids=[TaxId(type="eu_vat", value="FR123"),
                                                              TaxId(type="ch_vat", value="CHE-123.456.788 MWST")]))
    (sent,) = fake.requests(CALCULATIONS)
    assert sent.params == {
        "currency": "eur",
        "customer_details[address][country]": "FR", "customer_details[address][city]": "Paris",
        "customer_details[address][postal_code]": "75002", "customer_details[address][line1]": "12 rue de la Paix",
        "customer_details[address_source]": "billing", "customer_details[taxability_override]": "none",
        # the malformed FR number is not sent (Stripe would take it as given); other kinds pass through
        "customer_details[tax_ids][0][type]": "ch_vat", "customer_details[tax_ids][0][value]": "CHE-123.456.788 MWST",
        "line_items[0][amount]": "9999", "line_items[0][reference]": "seats",
        "line_items[0][tax_code]": "txcd_10000000", "line_items[0][tax_behavior]": "exclusive",
        "line_items[1][amount]": "3333", "line_items[1][reference]": "usage",
        "line_items[1][tax_code]": "txcd_10103000", "line_items[1][tax_behavior]": "exclusive",
        "tax_date": str(int(datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp())),
        "expand[0]": "line_items.data.tax_breakdown",
    }
    assert (quote.quote_id, quote.provider, quote.tenant_id, quote.currency) == \
        ("taxcalc_1RfrB2cCalc0001", "stripe", tid, "EUR")
    assert [(x.line_id, x.jurisdiction, x.jurisdiction_name, x.jurisdiction_level, x.rate_ppm, x.amount_micros,
             x.taxable_micros, x.tax_micros, x.taxability_reason, x.tax_type) for x in quote.lines] == [
        ("seats", "FR", "France", "country", 200_000, 99_990_000, 99_990_000, 20_000_000, "standard_rated", "vat"),
        ("usage", "FR", "France", "country", 200_000, 33_330_000, 33_330_000, 6_670_000, "standard_rated", "vat"),
    ]
    assert quote.tax_micros == 26_670_000
    assert quote.notes == ["VAT number FR123 is not valid: VAT charged"]


async def test_a_us_quote_has_an_entry_per_jurisdiction_and_pages_line_items(
        stack: Stack, provider: StripeTaxProvider, fake: FakeStripeTax) -> None:
    tid, _ = await stack.new_tenant()
    fake.answer(CALCULATIONS, "calculation_us_ca")
    fake.answer(CALCULATION_LINE_ITEMS, "calculation_us_ca_line_items_page_2")
    la = Address(country="US", state="CA", city="Los Angeles", postal_code="90012")
    quote = await provider.quote(request(tid, la, currency="USD", lines=(100_000_000, 50_000_000)))
    (page,) = fake.requests(CALCULATION_LINE_ITEMS)
    assert page.path == "/v1/tax/calculations/taxcalc_1RusCaCalc0001/line_items"
    assert page.params == {"limit": "100", "starting_after": "tax_li_UsSeats0001",
                           "expand[0]": "data.tax_breakdown"}
    assert [(x.line_id, x.jurisdiction, x.jurisdiction_name, x.jurisdiction_level, x.rate_ppm, x.tax_micros,
             x.taxability_reason, x.tax_type) for x in quote.lines] == [
        ("seats", "US-CA", "California", "state", 60_000, 6_000_000, "standard_rated", "sales_tax"),
        ("seats", "US-CA", "Los Angeles County", "county", 2_500, 250_000, "standard_rated", "sales_tax"),
        ("seats", "US-CA", "Los Angeles County District Taxes", "district", 32_500, 3_250_000, "standard_rated",
         "sales_tax"),
        ("usage", "US-CA", "California", "state", 0, 0, "product_exempt", "none"),
    ]
    assert quote.tax_micros == 9_500_000 and quote.notes == []
    assert all(x.amount_micros == 100_000_000 for x in quote.lines if x.line_id == "seats")


async def test_a_business_vat_number_is_sent_and_the_reverse_charge_noted(
        stack: Stack, provider: StripeTaxProvider, fake: FakeStripeTax) -> None:
    tid, _ = await stack.new_tenant()
    fake.answer(CALCULATIONS, "calculation_de_reverse_charge", "calculation_de_reverse_charge")
    berlin = Address(country="DE", city="Berlin", postal_code="10117")
    quote = await provider.quote(request(tid, berlin, tax_ids=[TaxId(type="eu_vat", value="de 136 695 976")]))
    sent = fake.requests(CALCULATIONS)[0].params
    assert (sent["customer_details[tax_ids][0][type]"], sent["customer_details[tax_ids][0][value]"]) == \
        ("eu_vat", "DE136695976")
    assert {x.taxability_reason for x in quote.lines} == {"reverse_charge"} and quote.tax_micros == 0
    assert quote.notes == [REVERSE_CHARGE_NOTE]
    await provider.quote(request(tid, berlin, exempt="reverse"))
    assert fake.requests(CALCULATIONS)[1].params["customer_details[taxability_override]"] == "reverse_charge"


async def test_amounts_stripe_cannot_be_told_exactly_are_refused_before_any_call(
        stack: Stack, provider: StripeTaxProvider, fake: FakeStripeTax) -> None:
    tid, _ = await stack.new_tenant()
    with pytest.raises(TaxError, match="not a whole number of minor units"):
        await provider.quote(request(tid, PARIS, lines=(99_990_001, 0)))
    assert fake.seen == []


async def test_commit_and_reverse_send_stripe_what_the_ledger_planned(
        stack: Stack, provider: StripeTaxProvider, fake: FakeStripeTax) -> None:
    tid, _ = await stack.new_tenant()
    fake.answer(CALCULATIONS, "calculation_fr_b2c")
    fake.answer(COMMIT, "transaction_fr_b2c")
    fake.answer(REVERSAL, "reversal_fr_b2c_partial", "reversal_fr_b2c_full")
    quote = await provider.quote(request(tid, PARIS))
    txn = await provider.commit(quote)
    (sent,) = fake.requests(COMMIT)
    assert sent.idempotency_key == f"tax-commit:{tid}:{quote.reference}"
    assert sent.params == {"calculation": "taxcalc_1RfrB2cCalc0001", "reference": f"{tid}:{quote.reference}",
                           "metadata[tenant_id]": tid, "metadata[reference]": quote.reference,
                           "expand[0]": "line_items"}
    assert (txn.transaction_id, txn.provider, txn.tax_micros) == ("tax_1RfrB2cTxn00001", "stripe", 26_670_000)
    assert await provider.commit(quote) == txn
    assert len(fake.requests(COMMIT)) == 1  # recorded: Stripe is not asked again

    credit = await provider.reverse(TaxReversalRequest(tenant_id=tid, original_reference=quote.reference,
                                                       reference="cn_1", amount_micros=10_000_000))
    (partial,) = fake.requests(REVERSAL)
    assert partial.idempotency_key == f"tax-reverse:{tid}:cn_1"
    assert partial.params == {
        "original_transaction": "tax_1RfrB2cTxn00001", "reference": f"{tid}:cn_1", "mode": "partial",
        "metadata[tenant_id]": tid, "metadata[reference]": "cn_1",
        "line_items[0][original_line_item]": "tax_li_FrTxnSeats01", "line_items[0][reference]": "seats",
        "line_items[0][amount]": "-750", "line_items[0][amount_tax]": "-150",
        "line_items[1][original_line_item]": "tax_li_FrTxnUsage01", "line_items[1][reference]": "usage",
        "line_items[1][amount]": "-250", "line_items[1][amount_tax]": "-50",
    }
    assert (credit.reversal_id, credit.amount_micros, credit.tax_micros) == \
        ("tax_1RfrB2cRev00001", 10_000_000, 2_000_000)
    void = await provider.reverse(TaxReversalRequest(tenant_id=tid, original_reference=quote.reference,
                                                     reference="void"))
    rest = fake.requests(REVERSAL)[1].params
    assert rest["mode"] == "partial"  # not the first reversal: what is left, line by line
    assert (rest["line_items[0][amount]"], rest["line_items[0][amount_tax]"]) == ("-9249", "-1850")
    assert (rest["line_items[1][amount]"], rest["line_items[1][amount_tax]"]) == ("-3083", "-617")
    assert credit.tax_micros + void.tax_micros == quote.tax_micros
    assert await provider.reverse(TaxReversalRequest(tenant_id=tid, original_reference=quote.reference,
                                                     reference="void")) == void
    assert len(fake.requests(REVERSAL)) == 2


async def test_a_first_reversal_of_everything_is_a_full_one(stack: Stack, provider: StripeTaxProvider,
                                                            fake: FakeStripeTax) -> None:
    tid, _ = await stack.new_tenant()
    fake.answer(CALCULATIONS, "calculation_fr_b2c")
    fake.answer(COMMIT, "transaction_fr_b2c")
    fake.answer(REVERSAL, "reversal_fr_b2c_full")
    quote = await provider.quote(request(tid, PARIS))
    await provider.commit(quote)
    void = await provider.reverse(TaxReversalRequest(tenant_id=tid, original_reference=quote.reference,
                                                     reference="void"))
    (sent,) = fake.requests(REVERSAL)
    assert sent.params["mode"] == "full" and not any(k.startswith("line_items") for k in sent.params)
    assert void.tax_micros == quote.tax_micros and void.amount_micros == 133_320_000


async def test_stripe_errors_follow_the_payment_adapters_policy(stack: Stack, provider: StripeTaxProvider,
                                                                fake: FakeStripeTax) -> None:
    tid, _ = await stack.new_tenant()
    fake.answer(CALCULATIONS, (400, "error_tax_date_out_of_range"), "calculation_fr_b2c")
    with pytest.raises(ValueError, match="31 days"):
        await provider.quote(request(tid, PARIS))
    quote = await provider.quote(request(tid, PARIS))
    fake.answer(COMMIT, (500, "error_api"), "transaction_fr_b2c")
    with pytest.raises(ProviderUnavailable):
        await provider.commit(quote)
    txn = await provider.commit(quote)  # the activity's retry: the same key, now answered
    keys = [s.idempotency_key for s in fake.requests(COMMIT)]
    assert keys == [f"tax-commit:{tid}:{quote.reference}"] * 2 and txn.transaction_id == "tax_1RfrB2cTxn00001"


def test_a_breakdown_that_does_not_add_up_is_refused() -> None:
    item = fixture("calculation_fr_b2c")["line_items"]["data"][0]
    item["amount_tax"] += 1
    with pytest.raises(TaxError, match="does not add up"):
        line_quotes(item, "EUR", "FR")
    calculation = fixture("calculation_fr_b2c")
    calculation["tax_amount_exclusive"] += 1
    req = request("t", PARIS)
    with pytest.raises(TaxError, match="do not add up"):
        to_quote(req, calculation, calculation["line_items"]["data"], ())


def test_reasons_stripe_adds_later_map_to_the_nearest() -> None:
    item = fixture("calculation_fr_b2c")["line_items"]["data"][0]
    item["tax_breakdown"][0]["taxability_reason"] = "portion_reduced_rated"
    assert line_quotes(item, "EUR", "FR")[0].taxability_reason == "reduced_rated"
    item["tax_breakdown"][0]["taxability_reason"] = "a_reason_from_next_year"
    assert line_quotes(item, "EUR", "FR")[0].taxability_reason == "standard_rated"


async def test_the_setting_chooses_stripe(stack: Stack, app_pool: asyncpg.Pool) -> None:
    chosen = build_tax_provider(stack.settings.model_copy(update={"tax_provider": "stripe"}), app_pool)
    assert isinstance(chosen, StripeTaxProvider) and chosen.name == "stripe"
    await chosen.aclose()
