"""The ledger on the real database: the invariants hold in PostgreSQL whoever writes, every money movement posts
its entry in the transaction of its state change, once, and the trial balance over HTTP is zero."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from activities.stores import ledger as store
from domain.ledger import AccountCode, Line, cash, entry, payment_completed, reversal, single
from domain.money import Money
from paysaga.db import create_pool, tenant_tx
from tests.integration.helpers import customer_with_method, pay, wait_status
from tests.integration.test_disputes import disputed_payment, submit, wait_dispute
from tests.integration.test_refunds import completed_payment, refund, wait_refund
from tests.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
async def app_pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(stack.db.app_url, max_size=2)
    yield pool
    await pool.close()


async def finance(stack: Stack) -> tuple[str, str]:
    return await stack.new_tenant(["payments", "finance", "admin"])


async def test_the_database_refuses_an_unbalanced_entry(stack: Stack, app_pool: asyncpg.Pool) -> None:
    tenant_id, _ = await finance(stack)
    revenue = single(AccountCode.REVENUE, "EUR")
    async with tenant_tx(app_pool, tenant_id) as conn:
        await store.ensure_accounts(conn, tenant_id, {revenue, cash("sandbox", "EUR")})
    with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
        async with tenant_tx(app_pool, tenant_id) as conn:  # lines one by one: the check waits for the commit
            await conn.execute("INSERT INTO paysaga.journal_entries (tenant_id, entry_id, source_type, source_id, "
                               "event) VALUES ($1, 'je_bad', 't', 's', 'e')", tenant_id)
            await conn.execute("INSERT INTO paysaga.journal_lines VALUES ($1, 'je_bad', 1, 'cash:sandbox:EUR', "
                               "'EUR', 100)", tenant_id)
            await conn.execute("INSERT INTO paysaga.journal_lines VALUES ($1, 'je_bad', 2, 'revenue:EUR', "
                               "'EUR', -99)", tenant_id)
    with pytest.raises(asyncpg.CheckViolationError, match="no lines"):
        async with tenant_tx(app_pool, tenant_id) as conn:
            await conn.execute("INSERT INTO paysaga.journal_entries (tenant_id, entry_id, source_type, source_id, "
                               "event) VALUES ($1, 'je_empty', 't', 's', 'e')", tenant_id)


async def test_a_line_added_later_to_a_posted_entry_is_checked(stack: Stack, app_pool: asyncpg.Pool) -> None:
    tenant_id, _ = await finance(stack)
    async with tenant_tx(app_pool, tenant_id) as conn:
        await store.ensure_accounts(conn, tenant_id, {single(AccountCode.REVENUE, "EUR"), cash("sandbox", "EUR")})
        await conn.execute("INSERT INTO paysaga.journal_entries (tenant_id, entry_id, source_type, source_id, "
                           "event) VALUES ($1, 'je_posted', 't', 's', 'e')", tenant_id)
        await conn.execute("INSERT INTO paysaga.journal_lines VALUES ($1, 'je_posted', 1, 'cash:sandbox:EUR', "
                           "'EUR', 100), ($1, 'je_posted', 2, 'revenue:EUR', 'EUR', -100)", tenant_id)
    # Its lines posted with it were checked once, at that commit; a line added by a later transaction checks the
    # entry again.
    with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
        async with tenant_tx(app_pool, tenant_id) as conn:
            await conn.execute("INSERT INTO paysaga.journal_lines VALUES ($1, 'je_posted', 3, 'revenue:EUR', "
                               "'EUR', -1)", tenant_id)


async def test_a_line_cannot_post_in_another_currency_than_its_account(stack: Stack, app_pool: asyncpg.Pool) -> None:
    tenant_id, _ = await finance(stack)
    async with tenant_tx(app_pool, tenant_id) as conn:
        await store.ensure_accounts(conn, tenant_id, {cash("sandbox", "EUR"), single(AccountCode.REVENUE, "EUR")})
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        async with tenant_tx(app_pool, tenant_id) as conn:
            await conn.execute("INSERT INTO paysaga.journal_entries (tenant_id, entry_id, source_type, source_id, "
                               "event) VALUES ($1, 'je_fx', 't', 's', 'e')", tenant_id)
            await conn.execute("INSERT INTO paysaga.journal_lines VALUES ($1, 'je_fx', 1, 'cash:sandbox:EUR', "
                               "'USD', 100), ($1, 'je_fx', 2, 'revenue:EUR', 'USD', -100)", tenant_id)


async def test_entries_are_append_only_and_post_once(stack: Stack, app_pool: asyncpg.Pool) -> None:
    tenant_id, _ = await finance(stack)
    paid = payment_completed("pay_x", "cus_x", "sandbox", Money(12_340_000, "EUR"))
    async with tenant_tx(app_pool, tenant_id) as conn:
        assert await store.post(conn, tenant_id, paid)
        assert not await store.post(conn, tenant_id, paid)  # a retried step: the same event, posted once
        assert await store.post(conn, tenant_id, reversal(paid, "payment.corrected"))
    async with tenant_tx(app_pool, tenant_id) as conn:
        rows = await store.entries_of(conn, "payment", "pay_x")
        assert len({r["entry_id"] for r in rows}) == 2 and sum(r["amount_micros"] for r in rows) == 0
        balances = {r["account_id"]: r["balance_micros"] for r in await store.accounts_with_balances(conn)}
        assert balances == {"cash:sandbox:EUR": 0, "revenue:EUR": 0}  # corrected by a reversing entry
    for sql in ("UPDATE paysaga.journal_lines SET amount_micros = 1 WHERE tenant_id = $1",
                "DELETE FROM paysaga.journal_entries WHERE tenant_id = $1"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):  # the service may only add
            async with tenant_tx(app_pool, tenant_id) as conn:
                await conn.execute(sql, tenant_id)
        with pytest.raises(asyncpg.CheckViolationError, match="append-only"):  # and not even the owner may change
            await stack.admin_pool.execute(sql, tenant_id)  # type: ignore[attr-defined]
    with pytest.raises(asyncpg.PostgresError):
        await stack.admin_pool.execute("TRUNCATE paysaga.journal_lines")  # type: ignore[attr-defined]


async def test_ledgers_are_tenant_isolated(stack: Stack, app_pool: asyncpg.Pool) -> None:
    (a, _), (b, _) = await finance(stack), await finance(stack)
    async with tenant_tx(app_pool, a) as conn:
        await store.post(conn, a, entry("t", "s", "e", [Line(cash("sandbox", "GBP"), 5),
                                                       Line(single(AccountCode.FEES, "GBP"), -5)]))
    async with tenant_tx(app_pool, b) as conn:
        assert await store.accounts_with_balances(conn) == []
        assert await conn.fetchval("SELECT count(*) FROM paysaga.journal_lines") == 0


async def test_payments_refunds_and_disputes_post_and_the_trial_balance_is_zero(stack: Stack) -> None:
    tenant_id, key = await finance(stack)
    async with stack.http(key) as http:
        paid = await completed_payment(http, "50.00")
        r = await refund(http, paid["id"], "20.00")
        await wait_refund(http, r.json()["id"], {"succeeded"})
        _, dispute = await disputed_payment(http, "30.00")
        assert (await submit(http, dispute["id"], uncategorized_text="winning_evidence")).status_code == 200
        await wait_dispute(http, dispute["id"], {"won"})
        cid, pm = await customer_with_method(http, "pm_card_chargeDeclined")
        declined = await wait_status(http, (await pay(http, cid, pm, "9.99")).json()["id"], {"failed"})

        accounts = {a["id"]: a for a in (await http.get("/v1/ledger/accounts")).json()["data"]}
        trial = (await http.get("/v1/ledger/trial_balance")).json()
        statement = (await http.get("/v1/ledger/accounts/cash:sandbox:USD/entries", params={"limit": 2})).json()
        rest = (await http.get("/v1/ledger/accounts/cash:sandbox:USD/entries",
                               params={"starting_after": statement["next_cursor"]})).json()
        refused = await http.get("/v1/ledger/accounts/nope:USD/entries")

    # cash: +50 -20 (refund) +30 -30 (withdrawn) +30 (reinstated) = 60; the decline posted nothing
    assert accounts["cash:sandbox:USD"]["balance"] == "60.00"
    assert accounts["revenue:USD"]["balance"] == "-80.00" and accounts["refunds:USD"]["balance"] == "20.00"
    assert accounts["chargebacks:USD"]["balance"] == "0.00"
    assert trial["balanced"] and [c["balance_micros"] for c in trial["currencies"]] == [0]
    lines = statement["data"] + rest["data"]
    assert len(lines) == 5 and statement["has_more"] and not rest["has_more"]
    assert {line["event"] for line in lines} == {"payment.completed", "refund.succeeded",
                                                 "dispute.funds_withdrawn", "dispute.funds_reinstated"}
    assert refused.status_code == 404
    async with tenant_tx(stack.admin_pool, tenant_id) as conn:  # type: ignore[arg-type]
        assert await store.entries_of(conn, "payment", declined["id"]) == []
        once = await store.entries_of(conn, "payment", paid["id"])
        assert [(r["account_id"], r["amount_micros"]) for r in once] == [
            ("cash:sandbox:USD", 50_000_000), ("revenue:USD", -50_000_000)]


async def test_finance_reads_the_ledger_and_others_may_not(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:  # payments + admin: admin holds every role
        assert (await http.get("/v1/ledger/accounts")).status_code == 200
    _, payments_only = await stack.new_tenant(["payments"])
    async with stack.http(payments_only) as http:
        r = await http.get("/v1/ledger/trial_balance")
        assert r.status_code == 403 and r.json()["type"].endswith("/forbidden")


async def test_the_cli_trial_balance(stack: Stack) -> None:
    import asyncio
    import os
    import sys

    tenant_id, key = await finance(stack)
    async with stack.http(key) as http:
        await completed_payment(http, "7.00")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "paysaga.cli", "ledger", "trial-balance", "--tenant", tenant_id,
        env={**os.environ, "DATABASE_ADMIN_URL": stack.db.admin_url}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out = (await asyncio.wait_for(proc.communicate(), 60))[0].decode()
    assert proc.returncode == 0, out
    assert "cash:sandbox:USD" in out and "7.00" in out and "-7.00" in out and out.rstrip().endswith("balanced")
    assert str(uuid.UUID(tenant_id)) in out
