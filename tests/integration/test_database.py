"""The database's own guarantees, against the real PostgreSQL: row-level security, the transition trigger,
append-only lifecycle events, and row + event + outbox written together."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from activities.providers.sandbox.network import network_pool
from activities.stores import payments as payment_store
from domain.payment import Transition as T
from domain.payment import TransitionCommand
from paysaga.db import analyze_grown_tables, create_pool, tenant_tx
from tests.integration.seeding import seed_payment
from tests.stack import Stack

pytestmark = pytest.mark.integration

TENANT_TABLES = ["tenants", "api_keys", "customers", "payment_methods", "payments", "payment_events", "outbox",
                 "inbox", "idempotency_keys"]


@pytest.fixture
async def app_pool(stack: Stack) -> asyncpg.Pool:
    pool = await create_pool(stack.db.app_url, max_size=2)
    yield pool
    await pool.close()


async def test_app_role_is_neither_owner_nor_superuser(app_pool: asyncpg.Pool) -> None:
    role = await app_pool.fetchrow("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
    assert role["rolsuper"] is False and role["rolbypassrls"] is False
    owners = await app_pool.fetch(
        "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'paysaga' AND tableowner = current_user")
    assert owners == []


async def test_rls_is_forced_on_every_tenant_table(stack: Stack) -> None:
    """Every table of the paysaga schema that has a tenant_id — including ones added later — is covered."""
    rows = await stack.admin_pool.fetch(
        """SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'paysaga' AND c.relkind = 'r'
             AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id')""")
    tables = {r["relname"]: (r["relrowsecurity"], r["relforcerowsecurity"]) for r in rows}
    assert set(TENANT_TABLES) <= set(tables)
    assert {"refunds", "refund_events", "dead_letters", "audit_log"} <= set(tables)
    for table, flags in tables.items():
        assert flags == (True, True), table


async def test_tenant_a_never_sees_or_writes_tenant_b(stack: Stack, app_pool: asyncpg.Pool) -> None:
    a, _ = await stack.new_tenant()
    b, _ = await stack.new_tenant()
    pid = await seed_payment(app_pool, a)
    async with tenant_tx(app_pool, a) as conn:
        assert await conn.fetchval("SELECT count(*) FROM paysaga.payments WHERE payment_id = $1", pid) == 1
        assert await conn.fetchval("SELECT count(*) FROM paysaga.payment_events WHERE payment_id = $1", pid) == 1
    async with tenant_tx(app_pool, b) as conn:
        for table in TENANT_TABLES:
            leaked = await conn.fetchval(f"SELECT count(*) FROM paysaga.{table} WHERE tenant_id = $1", a)
            assert leaked == 0, table
        assert await conn.execute("UPDATE paysaga.payments SET description = 'x' WHERE payment_id = $1", pid) \
            == "UPDATE 0"
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # WITH CHECK: cannot write rows for another tenant
        async with tenant_tx(app_pool, b) as conn:
            await conn.execute("INSERT INTO paysaga.customers (customer_id, tenant_id) VALUES ('cus_x', $1)", a)


async def test_no_tenant_set_means_zero_rows(stack: Stack, app_pool: asyncpg.Pool) -> None:
    a, _ = await stack.new_tenant()
    await seed_payment(app_pool, a)
    async with app_pool.acquire() as conn:
        for table in TENANT_TABLES:
            assert await conn.fetchval(f"SELECT count(*) FROM paysaga.{table}") == 0, table


async def test_a_pooled_connection_keeps_no_tenant_after_its_transaction(stack: Stack) -> None:
    """The pool skips asyncpg's session reset on release: a tenant's transaction must leave nothing behind for
    the next checkout of the same connection (one connection, so it is the same one)."""
    a, _ = await stack.new_tenant()
    pool = await create_pool(stack.db.app_url, min_size=1, max_size=1)
    try:
        pid = await seed_payment(pool, a)
        async with tenant_tx(pool, a) as conn:
            assert await conn.fetchval("SELECT count(*) FROM paysaga.payments WHERE payment_id = $1", pid) == 1
        with pytest.raises(RuntimeError):
            async with tenant_tx(pool, a) as conn:
                await conn.execute("SELECT 1")
                raise RuntimeError("the transaction fails")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT current_setting('app.tenant_id', true)") in (None, "")
            assert await conn.fetchval("SELECT count(*) FROM paysaga.payments WHERE payment_id = $1", pid) == 0
            assert await conn.fetchval("SELECT pg_current_xact_id_if_assigned()") is None
    finally:
        await pool.close()


async def test_a_failed_transaction_keeps_none_of_its_writes(stack: Stack, app_pool: asyncpg.Pool) -> None:
    """Both the error raised by a statement and one raised by the caller roll the whole transaction back."""
    tid, _ = await stack.new_tenant()
    for failure in ("statement", "caller"):
        customer = f"cus_{uuid.uuid4().hex[:12]}"
        with pytest.raises((asyncpg.PostgresError, RuntimeError)):
            async with tenant_tx(app_pool, tid) as conn:
                await conn.execute("INSERT INTO paysaga.customers (customer_id, tenant_id) VALUES ($1, $2)",
                                   customer, tid)
                if failure == "statement":
                    await conn.execute("SELECT 1 / 0")
                raise RuntimeError("the caller gives up")
        async with tenant_tx(app_pool, tid) as conn:
            assert await conn.fetchval("SELECT count(*) FROM paysaga.customers WHERE customer_id = $1",
                                       customer) == 0, failure


async def test_the_tenant_setting_is_exactly_the_id_whatever_its_spelling(stack: Stack,
                                                                         app_pool: asyncpg.Pool) -> None:
    """A canonical UUID, an upper-case one and a string that is no UUID at all (which must not reach the SQL
    text) each end up as the transaction's setting, verbatim."""
    tid, _ = await stack.new_tenant()
    for spelling in (tid, tid.upper(), "x'); DROP TABLE paysaga.payments; --"):
        async with tenant_tx(app_pool, spelling) as conn:
            assert await conn.fetchval("SELECT current_setting('app.tenant_id')") == spelling
    async with tenant_tx(app_pool, tid) as conn:
        assert await conn.fetchval("SELECT count(*) FROM paysaga.tenants") == 1


async def test_trigger_rejects_invalid_transition_and_terminal_change(stack: Stack, app_pool: asyncpg.Pool) -> None:
    tid, _ = await stack.new_tenant()
    pid = await seed_payment(app_pool, tid)
    with pytest.raises(asyncpg.CheckViolationError, match="invalid payment transition created -> completed"):
        async with tenant_tx(app_pool, tid) as conn:
            await conn.execute("UPDATE paysaga.payments SET status = 'completed' WHERE payment_id = $1", pid)
    async with tenant_tx(app_pool, tid) as conn:
        await conn.execute("UPDATE paysaga.payments SET status = 'processing' WHERE payment_id = $1", pid)
        await conn.execute("UPDATE paysaga.payments SET status = 'completed' WHERE payment_id = $1", pid)
    for change in ("status = 'failed'", "description = 'edited'", "failure_code = 'x'"):
        with pytest.raises(asyncpg.CheckViolationError, match="terminal"):
            async with tenant_tx(app_pool, tid) as conn:
                await conn.execute(f"UPDATE paysaga.payments SET {change} WHERE payment_id = $1", pid)
    with pytest.raises(asyncpg.PostgresError):
        async with tenant_tx(app_pool, tid) as conn:
            await conn.execute("DELETE FROM paysaga.payments WHERE payment_id = $1", pid)


async def test_a_write_skips_processing_only_with_both_transitions_recorded(stack: Stack,
                                                                             app_pool: asyncpg.Pool) -> None:
    tid, _ = await stack.new_tenant()
    pid = await seed_payment(app_pool, tid)
    with pytest.raises(asyncpg.CheckViolationError, match="invalid payment transition created -> completed"):
        async with tenant_tx(app_pool, tid) as conn:  # one transition's worth of events: refused
            await conn.execute("UPDATE paysaga.payments SET status = 'completed', event_seq = event_seq + 1 "
                               "WHERE payment_id = $1", pid)
    async with tenant_tx(app_pool, tid) as conn:  # created → processing → completed, two events in one write
        await conn.execute("UPDATE paysaga.payments SET status = 'completed', event_seq = event_seq + 2 "
                           "WHERE payment_id = $1", pid)
        assert await conn.fetchval("SELECT status FROM paysaga.payments WHERE payment_id = $1", pid) == "completed"


async def test_amount_is_immutable(stack: Stack, app_pool: asyncpg.Pool) -> None:
    tid, _ = await stack.new_tenant()
    pid = await seed_payment(app_pool, tid)
    with pytest.raises(asyncpg.CheckViolationError, match="immutable"):
        async with tenant_tx(app_pool, tid) as conn:
            await conn.execute("UPDATE paysaga.payments SET amount_micros = 1 WHERE payment_id = $1", pid)


async def test_payment_events_are_append_only_even_for_the_owner(stack: Stack, app_pool: asyncpg.Pool) -> None:
    tid, _ = await stack.new_tenant()
    pid = await seed_payment(app_pool, tid)
    async with stack.admin_pool.acquire() as conn:
        for sql in ("UPDATE paysaga.payment_events SET actor = 'x' WHERE payment_id = $1",
                    "DELETE FROM paysaga.payment_events WHERE payment_id = $1"):
            with pytest.raises(asyncpg.CheckViolationError, match="append-only"):
                await conn.execute(sql, pid)


async def test_transition_writes_row_event_and_outbox_together(stack: Stack, app_pool: asyncpg.Pool) -> None:
    tid, _ = await stack.new_tenant()
    pid = await seed_payment(app_pool, tid)
    async with tenant_tx(app_pool, tid) as conn:
        view, changed = await payment_store.apply_transition(
            conn, pid, TransitionCommand(T.MARK_PROCESSING, provider_intent_id="pi_1"), {}, "test", "corr-1")
        assert changed and view.status == "processing"
        again, changed = await payment_store.apply_transition(  # a retried activity: no second event
            conn, pid, TransitionCommand(T.MARK_PROCESSING, provider_intent_id="pi_1"), {}, "test", "corr-1")
        assert not changed and again.status == "processing"
    with pytest.raises(asyncpg.CheckViolationError):  # a failing transaction leaves none of the three behind
        async with tenant_tx(app_pool, tid) as conn:
            await payment_store.apply_transition(conn, pid, TransitionCommand(T.MARK_COMPLETED), {}, "test", "corr-1")
            await conn.execute("UPDATE paysaga.payments SET status = 'pending' WHERE payment_id = $1", pid)
    async with tenant_tx(app_pool, tid) as conn:
        events = await conn.fetch(
            "SELECT transition_id, seq, new_status FROM paysaga.payment_events WHERE payment_id = $1 ORDER BY seq",
            pid)
        outbox = await conn.fetch("SELECT event_id FROM paysaga.outbox WHERE payload->'payment'->>'id' = $1", pid)
        status = await conn.fetchval("SELECT status FROM paysaga.payments WHERE payment_id = $1", pid)
    assert [e["new_status"] for e in events] == ["created", "processing"] and status == "processing"
    assert sorted(e["transition_id"] for e in events) == sorted(o["event_id"] for o in outbox)


async def test_a_payment_being_changed_does_not_hold_up_rows_that_reference_it(
        stack: Stack, app_pool: asyncpg.Pool) -> None:
    """A transition in progress locks the payment against other writers only: a row that merely references the
    payment (its foreign-key check) is written meanwhile, instead of queueing behind the transition."""
    tid, _ = await stack.new_tenant()
    pid = await seed_payment(app_pool, tid)
    async with tenant_tx(app_pool, tid) as holder:
        await payment_store.apply_transition(
            holder, pid, TransitionCommand(T.MARK_PROCESSING, provider_intent_id="pi_1"), {}, "test", "corr-1")
        referencing = tenant_tx(app_pool, tid)
        with pytest.raises(_Rollback):
            async with referencing as conn:
                await conn.execute("SET LOCAL lock_timeout = '2s'")
                await conn.execute(
                    """INSERT INTO paysaga.payment_events (transition_id, tenant_id, payment_id, seq, type,
                           new_status, metadata, actor, correlation_id)
                       VALUES ('te_probe', $1, $2, 99, 'payment.probe', 'created', '{}', 'test', 'probe')""",
                    tid, pid)
                raise _Rollback
        with pytest.raises(asyncpg.LockNotAvailableError):  # another writer of the payment does wait
            async with tenant_tx(app_pool, tid) as conn:
                await conn.execute("SET LOCAL lock_timeout = '200ms'")
                await conn.execute("UPDATE paysaga.payments SET description = 'x' WHERE payment_id = $1", pid)


class _Rollback(Exception):
    pass


async def test_only_a_pool_asked_to_commits_before_the_wal_flush(stack: Stack) -> None:
    durable = await create_pool(stack.db.app_url, max_size=1)
    quick = await create_pool(stack.db.app_url, max_size=1, durable_commits=False)
    network = await network_pool(stack.settings)
    try:
        assert await durable.fetchval("SHOW synchronous_commit") == "on"
        assert await quick.fetchval("SHOW synchronous_commit") == "off"
        assert await network.fetchval("SHOW synchronous_commit") == "off"  # the sandbox network's bookkeeping
    finally:
        for pool in (durable, quick, network):
            await pool.close()


async def test_tables_that_outgrew_their_statistics_get_fresh_ones(stack: Stack, app_pool: asyncpg.Pool) -> None:
    """The service role may ask for it (it owns no table), and only tables that grew past their statistics are
    analyzed: asked again at once, the same table is not."""
    tid, _ = await stack.new_tenant()
    async with stack.admin_pool.acquire() as conn:  # type: ignore[attr-defined]
        known = await conn.fetchval("SELECT reltuples FROM pg_class WHERE oid = 'paysaga.inbox'::regclass")
        await conn.execute(
            """INSERT INTO paysaga.inbox (tenant_id, source, event_id, event_type)
               SELECT $1, 'stats-probe', 'evt_' || g, 'probe' FROM generate_series(1, $2) g""",
            uuid.UUID(tid), int(max(known, 1000)) + 100)
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await conn.execute("SELECT 1")  # the flush happens when the session next goes idle
    deadline = asyncio.get_running_loop().time() + 10
    while "paysaga.inbox" not in (analyzed := await analyze_grown_tables(app_pool)):
        assert asyncio.get_running_loop().time() < deadline, analyzed
        await asyncio.sleep(0.2)
    assert "paysaga.inbox" not in await analyze_grown_tables(app_pool)
    # ... from a small sample: the row counts are what a grown table's plans need; autovacuum brings the rest.
    config = await stack.admin_pool.fetchval(  # type: ignore[attr-defined]
        "SELECT proconfig FROM pg_proc WHERE oid = 'paysaga.analyze_grown_tables(bigint)'::regprocedure")
    assert "default_statistics_target=10" in config


async def test_rerun_of_several_committed_transitions_is_a_no_op(stack: Stack, app_pool: asyncpg.Pool) -> None:
    """A workflow task that ran two transitions and then failed re-runs both: neither may write again, and the
    first must not fail against the row the second left behind."""
    tid, _ = await stack.new_tenant()
    pid = await seed_payment(app_pool, tid)
    steps = [(TransitionCommand(T.MARK_PROCESSING, provider_intent_id="pi_1"), 1),
             (TransitionCommand(T.MARK_COMPLETED), 2)]
    async with tenant_tx(app_pool, tid) as conn:
        for command, seen in steps:
            _, changed = await payment_store.apply_transition(conn, pid, command, {}, "t", "c", seen)
            assert changed
        for command, seen in steps:  # the re-run
            view, changed = await payment_store.apply_transition(conn, pid, command, {}, "t", "c", seen)
            assert not changed and view.status == "completed" and view.event_seq == 3


async def test_a_savepoint_inside_a_tenant_transaction_undoes_only_its_part(stack: Stack,
                                                                           app_pool: asyncpg.Pool) -> None:
    """Inside `tenant_tx`, partial undo is a SAVEPOINT statement (asyncpg's nested `transaction()` is refused in
    a transaction it did not start, which is how the canonical-UUID path begins)."""
    tid, _ = await stack.new_tenant()
    kept, undone = f"cus_{uuid.uuid4().hex[:12]}", f"cus_{uuid.uuid4().hex[:12]}"
    insert = "INSERT INTO paysaga.customers (customer_id, tenant_id) VALUES ($1, $2)"
    async with tenant_tx(app_pool, tid) as conn:
        with pytest.raises(asyncpg.InterfaceError):
            async with conn.transaction():
                pass
        await conn.execute(insert, kept, tid)
        await conn.execute("SAVEPOINT part")
        await conn.execute(insert, undone, tid)
        await conn.execute("ROLLBACK TO SAVEPOINT part")
    async with tenant_tx(app_pool, tid) as conn:
        found = await conn.fetch("SELECT customer_id FROM paysaga.customers WHERE customer_id = ANY($1::text[])",
                                 [kept, undone])
    assert [r["customer_id"] for r in found] == [kept]


async def test_a_finalized_invoices_lines_change_only_in_the_transaction_that_wrote_it(
        stack: Stack, app_pool: asyncpg.Pool) -> None:
    """An invoice may be born finalized with its lines in one transaction; after that (or for an invoice
    finalized later, or inside a savepoint) its lines are frozen."""
    tid, _ = await stack.new_tenant()
    cid, suffix = f"cus_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    invoice = """INSERT INTO paysaga.invoices (invoice_id, tenant_id, customer_id, currency, status, number,
                     finalized_at, workflow_id)
                 VALUES ($1, $2, $3, 'EUR', $4, $5, CASE WHEN $4 <> 'draft' THEN now() END, 'invoice/' || $1)"""
    line = """INSERT INTO paysaga.invoice_lines (tenant_id, invoice_id, line_id, position, description, quantity,
                  unit_amount, amount_micros) VALUES ($1, $2, $3, $4, 'Seat', '1', '8.00', 8000000)"""
    async with tenant_tx(app_pool, tid) as conn:
        await conn.execute("INSERT INTO paysaga.customers (customer_id, tenant_id) VALUES ($1, $2)", cid, tid)
        await conn.execute(invoice, f"in_born_{suffix}", tid, cid, "open", f"T-{suffix}-1")
        await conn.execute(line, tid, f"in_born_{suffix}", "l1", 1)  # born finalized, with its lines
        await conn.execute(invoice, f"in_draft_{suffix}", tid, cid, "draft", None)
    for sql, args in ((line, (tid, f"in_born_{suffix}", "l2", 2)),  # a later transaction
                      ("DELETE FROM paysaga.invoice_lines WHERE invoice_id = $1", (f"in_born_{suffix}",))):
        with pytest.raises(asyncpg.CheckViolationError, match="its lines cannot change"):
            async with tenant_tx(app_pool, tid) as conn:
                await conn.execute(sql, *args)
    with pytest.raises(asyncpg.CheckViolationError, match="its lines cannot change"):
        async with tenant_tx(app_pool, tid) as conn:  # finalized in this transaction, but not born in it
            await conn.execute("UPDATE paysaga.invoices SET status = 'open', number = $2, finalized_at = now() "
                               "WHERE invoice_id = $1", f"in_draft_{suffix}", f"T-{suffix}-2")
            await conn.execute(line, tid, f"in_draft_{suffix}", "l1", 1)
    with pytest.raises(asyncpg.CheckViolationError, match="its lines cannot change"):
        async with tenant_tx(app_pool, tid) as conn:  # inside a savepoint the guard fails closed
            await conn.execute("SAVEPOINT s")
            await conn.execute(invoice, f"in_sp_{suffix}", tid, cid, "open", f"T-{suffix}-3")
            await conn.execute(line, tid, f"in_sp_{suffix}", "l1", 1)
    async with tenant_tx(app_pool, tid) as conn:
        lines = await conn.fetchval("SELECT count(*) FROM paysaga.invoice_lines WHERE invoice_id = $1",
                                    f"in_born_{suffix}")
    assert lines == 1
