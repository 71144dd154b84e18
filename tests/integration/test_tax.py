"""The built-in tax provider on the real PostgreSQL: commit and reverse are idempotent by reference (also when
retried concurrently), reversals never exceed the committed tax and sum to it exactly, the new tables are
isolated per tenant, and the seller's profile and registrations feed a quote."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import pytest

from activities.stores import tax as tax_store
from activities.tax import TaxConflict, build_tax_provider
from activities.tax.builtin import BuiltinTaxProvider
from activities.tax.seller import load_seller
from contracts.tax import (
    Address,
    SellerProfile,
    TaxId,
    TaxLineInput,
    TaxQuote,
    TaxQuoteRequest,
    TaxRegistration,
    TaxReversalLineInput,
    TaxReversalRequest,
)
from domain.tax import TaxError
from paysaga.db import create_pool, tenant_tx
from tests.stack import Stack

pytestmark = pytest.mark.integration

TAX_TABLES = ["tenant_profiles", "tax_registrations", "tax_transactions", "tax_reversals"]
DE_OSS = TaxRegistration(country="DE", type="eu_oss_union", active_from=date(2020, 1, 1))


@pytest.fixture
async def app_pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(stack.db.app_url, max_size=6)
    yield pool
    await pool.close()


@pytest.fixture
async def provider(app_pool: asyncpg.Pool) -> AsyncIterator[BuiltinTaxProvider]:
    p = BuiltinTaxProvider(app_pool)
    yield p
    await p.aclose()


def request(tenant_id: str, reference: str | None = None, **overrides: object) -> TaxQuoteRequest:
    fields: dict[str, object] = dict(
        tenant_id=tenant_id, reference=reference or f"inv_{uuid.uuid4().hex[:8]}", currency="EUR",
        tax_date=date(2026, 3, 1), seller=Address(country="DE"), registrations=[DE_OSS],
        customer=Address(country="FR"),
        lines=[TaxLineInput(line_id="seats", amount_micros=99_990_000),  # 99.99 EUR: 20 % is 19.998 → 20.00
               TaxLineInput(line_id="usage", amount_micros=33_330_000)],  # 33.33 EUR: 6.666 → 6.67
    )
    fields.update(overrides)
    return TaxQuoteRequest.model_validate(fields)


async def committed(provider: BuiltinTaxProvider, tenant_id: str) -> TaxQuote:
    quote = await provider.quote(request(tenant_id))
    await provider.commit(quote)
    return quote


async def test_a_quote_is_deterministic_and_reconciles(stack: Stack, provider: BuiltinTaxProvider) -> None:
    tid, _ = await stack.new_tenant()
    req = request(tid, "inv_same")
    first, again = await provider.quote(req), await provider.quote(req)
    assert first == again and first.quote_id.startswith("taxq_")
    assert [line.tax_micros for line in first.lines] == [20_000_000, 6_670_000]
    assert first.tax_micros == 26_670_000 and first.provider == "builtin" and first.tenant_id == tid


async def test_commit_is_idempotent_by_reference(stack: Stack, provider: BuiltinTaxProvider,
                                                 app_pool: asyncpg.Pool) -> None:
    tid, _ = await stack.new_tenant()
    quote = await provider.quote(request(tid))
    results = await asyncio.gather(*(provider.commit(quote) for _ in range(5)))  # a retried activity, in a race
    assert len({r.transaction_id for r in results}) == 1
    assert results[0].tax_micros == quote.tax_micros and results[0].lines == quote.lines
    assert await provider.commit(quote) == results[0]
    async with tenant_tx(app_pool, tid) as conn:
        assert await conn.fetchval("SELECT count(*) FROM paysaga.tax_transactions WHERE reference = $1",
                                   quote.reference) == 1
    other = await provider.quote(request(tid, quote.reference, customer=Address(country="IT")))
    with pytest.raises(TaxConflict, match="already committed"):
        await provider.commit(other)


async def test_credit_notes_then_a_void_reverse_exactly_the_committed_tax(stack: Stack,
                                                                         provider: BuiltinTaxProvider) -> None:
    tid, _ = await stack.new_tenant()
    quote = await committed(provider, tid)
    ref = quote.reference
    # 10.00 EUR of the whole invoice: spread 7.50/2.50 over 99.99/33.33, tax 1.50 + 0.50.
    part = await provider.reverse(TaxReversalRequest(tenant_id=tid, original_reference=ref, reference="cn_1",
                                                     amount_micros=10_000_000))
    assert part.amount_micros == 10_000_000 == sum(line.amount_micros for line in part.lines)
    assert [(line.line_id, line.amount_micros, line.tax_micros) for line in part.lines] == \
        [("seats", 7_500_000, 1_500_000), ("usage", 2_500_000, 500_000)]
    again = await provider.reverse(TaxReversalRequest(tenant_id=tid, original_reference=ref, reference="cn_1",
                                                      amount_micros=10_000_000))
    assert again == part  # idempotent by its reference: nothing reversed twice
    line = await provider.reverse(TaxReversalRequest(
        tenant_id=tid, original_reference=ref, reference="cn_2",
        lines=[TaxReversalLineInput(line_id="usage", amount_micros=10_000_000)]))
    assert [(x.line_id, x.tax_micros) for x in line.lines] == [("usage", 2_000_000)]
    void = await provider.reverse(TaxReversalRequest(tenant_id=tid, original_reference=ref, reference="void"))
    assert part.tax_micros + line.tax_micros + void.tax_micros == quote.tax_micros
    assert part.amount_micros + line.amount_micros + void.amount_micros == 133_320_000
    with pytest.raises(TaxError, match="fully reversed"):
        await provider.reverse(TaxReversalRequest(tenant_id=tid, original_reference=ref, reference="void_2"))
    with pytest.raises(TaxConflict, match="already reverses"):
        await provider.reverse(TaxReversalRequest(tenant_id=tid, original_reference="inv_other", reference="cn_1"))
    with pytest.raises(TaxError, match="no committed tax transaction"):
        await provider.reverse(TaxReversalRequest(tenant_id=tid, original_reference="inv_none", reference="cn_9"))


async def test_concurrent_credit_notes_queue_and_never_over_reverse(stack: Stack,
                                                                  provider: BuiltinTaxProvider) -> None:
    tid, _ = await stack.new_tenant()
    quote = await committed(provider, tid)
    credits = [TaxReversalRequest(tenant_id=tid, original_reference=quote.reference, reference=f"cn_{i}",
                                  amount_micros=33_330_000) for i in range(5)]  # 5 x 33.33 > 133.32 committed
    outcomes = await asyncio.gather(*(provider.reverse(c) for c in credits), return_exceptions=True)
    done = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(done) == 4 and len(refused) == 1 and isinstance(refused[0], TaxError)
    assert sum(r.amount_micros for r in done) == 133_320_000
    assert sum(r.tax_micros for r in done) == quote.tax_micros


async def test_the_database_refuses_an_over_reversal_whoever_writes_it(stack: Stack, provider: BuiltinTaxProvider,
                                                                        app_pool: asyncpg.Pool) -> None:
    tid, _ = await stack.new_tenant()
    quote = await committed(provider, tid)
    sql = """INSERT INTO paysaga.tax_reversals (tenant_id, reference, reversal_id, original_reference, provider,
                 amount_micros, tax_micros, credits, lines) VALUES ($1, $2, $2, $3, 'builtin', $4, $5, $6, '[]')"""
    with pytest.raises(asyncpg.CheckViolationError, match=r"exceeds the \d+ micros left"):
        async with tenant_tx(app_pool, tid) as conn:
            await conn.execute(sql, tid, "cn_x", quote.reference, 1_000_000, quote.tax_micros + 10_000,
                               {"seats": 1_000_000})
    with pytest.raises(asyncpg.CheckViolationError, match="credit of line seats exceeds"):
        async with tenant_tx(app_pool, tid) as conn:
            await conn.execute(sql, tid, "cn_y", quote.reference, 100_000_000, 0, {"seats": 100_000_000})
    for statement in ("UPDATE paysaga.tax_transactions SET tax_micros = 0", "DELETE FROM paysaga.tax_transactions"):
        with pytest.raises(asyncpg.CheckViolationError, match="append-only"):
            async with stack.admin_pool.acquire() as conn:  # not even the owner
                await conn.execute(statement + " WHERE reference = $1", quote.reference)


async def test_tax_tables_are_isolated_per_tenant(stack: Stack, provider: BuiltinTaxProvider,
                                                  app_pool: asyncpg.Pool) -> None:
    a, _ = await stack.new_tenant()
    b, _ = await stack.new_tenant()
    quote = await committed(provider, a)
    await provider.reverse(TaxReversalRequest(tenant_id=a, original_reference=quote.reference, reference="void"))
    async with tenant_tx(app_pool, a) as conn:
        await tax_store.upsert_profile(conn, a, SellerProfile(legal_name="A GmbH", address=Address(country="DE")))
        await tax_store.add_registration(conn, "treg_1", a, DE_OSS)
        for table in TAX_TABLES:
            assert await conn.fetchval(f"SELECT count(*) FROM paysaga.{table}") == 1, table
    async with tenant_tx(app_pool, b) as conn:
        for table in TAX_TABLES:
            assert await conn.fetchval(f"SELECT count(*) FROM paysaga.{table} WHERE tenant_id = $1", a) == 0, table
        assert await tax_store.fetch_transaction(conn, quote.reference) is None
        assert await conn.execute("UPDATE paysaga.tax_registrations SET type = 'x'") == "UPDATE 0"
    async with app_pool.acquire() as conn:  # no tenant set: nothing at all
        for table in TAX_TABLES:
            assert await conn.fetchval(f"SELECT count(*) FROM paysaga.{table}") == 0, table
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # WITH CHECK: no writing another tenant's rows
        async with tenant_tx(app_pool, b) as conn:
            await tax_store.add_registration(conn, "treg_2", a, DE_OSS)
    with pytest.raises(TaxError, match="no committed tax transaction"):  # B cannot reverse A's invoice
        await provider.reverse(TaxReversalRequest(tenant_id=b, original_reference=quote.reference, reference="v"))
    flags = await stack.admin_pool.fetch(
        """SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class
            WHERE relnamespace = 'paysaga'::regnamespace AND relname = ANY($1::text[])""", TAX_TABLES)
    assert {r["relname"]: (r["relrowsecurity"], r["relforcerowsecurity"]) for r in flags} == \
        dict.fromkeys(TAX_TABLES, (True, True))


async def test_the_seller_profile_and_registrations_feed_a_quote(stack: Stack, provider: BuiltinTaxProvider,
                                                                 app_pool: asyncpg.Pool) -> None:
    tid, _ = await stack.new_tenant()
    profile = SellerProfile(legal_name="Acme Inc.", address=Address(country="US", state="CA", city="Oakland"),
                            tax_ids=[TaxId(type="us_ein", value="12-3456789")])
    async with tenant_tx(app_pool, tid) as conn:
        await tax_store.upsert_profile(conn, tid, profile)
        await tax_store.add_registration(conn, "treg_ca", tid, TaxRegistration(
            country="US", state="CA", type="us_state_sales_tax", active_from=date(2024, 1, 1)))
        await tax_store.add_registration(conn, "treg_ny", tid, TaxRegistration(
            country="US", state="NY", active_from=date(2024, 1, 1)))
        assert await tax_store.end_registration(conn, "treg_ny", date(2025, 1, 1))
        assert not await tax_store.end_registration(conn, "treg_ny", date(2025, 6, 1))  # ended already
    seller = await load_seller(app_pool, tid)
    assert seller.profile == profile and [r.state for r in seller.registrations] == ["CA", "NY"]
    assert profile.address is not None

    async def tax_in(state: str) -> tuple[str, int]:
        q = await provider.quote(request(tid, currency="USD", seller=profile.address,
                                         registrations=seller.registrations,
                                         customer=Address(country="US", state=state)))
        return q.lines[0].taxability_reason, q.tax_micros

    assert await tax_in("CA") == ("standard_rated", 7_250_000 + 2_420_000)  # 7.25 % of 99.99 and of 33.33
    assert await tax_in("NY") == ("not_collecting", 0)  # the NY registration ended before the tax date


async def test_the_builtin_engine_is_the_default(stack: Stack, app_pool: asyncpg.Pool) -> None:
    assert stack.settings.tax_provider == "builtin"
    assert isinstance(build_tax_provider(stack.settings, app_pool), BuiltinTaxProvider)


class FakeVies:
    """An online VAT-number check: answers from a table, and records what it was asked."""

    def __init__(self, answers: dict[str, bool | None]) -> None:
        self.answers, self.asked = answers, []

    async def check(self, country: str, number: str) -> bool | None:
        self.asked.append((country, number))
        answer = self.answers.get(f"{country}{number}", True)
        if answer is None and number.startswith("0"):
            raise TimeoutError("VIES did not answer")
        return answer


async def test_an_online_check_decides_when_configured(stack: Stack, app_pool: asyncpg.Pool) -> None:
    tid, _ = await stack.new_tenant()
    vies = FakeVies({"FR40303265045": False, "GR094014201": None})
    provider = BuiltinTaxProvider(app_pool, vat_checker=vies)

    async def quote(country: str, number: str) -> TaxQuote:
        return await provider.quote(request(tid, customer=Address(country=country),
                                            customer_tax_ids=[TaxId(type="eu_vat", value=number)]))

    unregistered = await quote("FR", "FR40303265045")
    assert unregistered.lines[0].taxability_reason == "standard_rated"
    assert unregistered.notes == ["VAT number FR40303265045 is not registered in VIES: VAT charged"]
    unavailable = await quote("GR", "EL094014201")  # VIES down: the offline check stands
    assert unavailable.lines[0].taxability_reason == "reverse_charge"
    malformed = await quote("IT", "IT123")  # never sent to VIES
    assert malformed.notes == ["VAT number IT123 is not valid: VAT charged"]
    assert vies.asked == [("FR", "40303265045"), ("GR", "094014201")]
    offline = await BuiltinTaxProvider(app_pool).quote(request(tid, customer=Address(country="FR"), customer_tax_ids=[
        TaxId(type="eu_vat", value="FR40303265045")]))
    assert offline.lines[0].taxability_reason == "reverse_charge"  # off by default: format and check digits
