"""The audit trail on the real stack: a row per payment-method access and per money-moving action, with actor,
tenant, correlation id; append-only even for the owner; readable by `finance` only; reading is audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from services.tenants import new_api_key
from tests.integration.helpers import customer_with_method, pay
from tests.stack import Stack

pytestmark = pytest.mark.integration


@asynccontextmanager
async def as_owner(stack: Stack, tenant_id: str) -> AsyncIterator[asyncpg.Connection]:
    """An owner transaction that sees the tenant's rows even where the owner is not a superuser (FORCE RLS)."""
    async with stack.admin_pool.acquire() as conn, conn.transaction():  # type: ignore[attr-defined]
        await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant_id)
        yield conn


async def key_id_of(stack: Stack, tenant_id: str) -> str:
    async with as_owner(stack, tenant_id) as conn:
        return await conn.fetchval("SELECT key_id FROM paysaga.api_keys WHERE tenant_id = $1 ORDER BY created_at "
                                   "LIMIT 1", tenant_id)


async def add_key(stack: Stack, tenant_id: str, roles: list[str]) -> tuple[str, str]:
    """A second API key for an existing tenant: (key_id, secret)."""
    key_id, secret, key_hash = new_api_key()
    async with as_owner(stack, tenant_id) as conn:
        await conn.execute("INSERT INTO paysaga.api_keys (key_id, tenant_id, key_hash, roles) VALUES ($1, $2, $3, $4)",
                           key_id, tenant_id, key_hash, roles)
    return key_id, secret


async def audit_rows(stack: Stack, tenant_id: str) -> list[dict[str, Any]]:
    async with as_owner(stack, tenant_id) as conn:
        rows = await conn.fetch("SELECT * FROM paysaga.audit_log WHERE tenant_id = $1 ORDER BY audit_id", tenant_id)
    return [dict(r) for r in rows]


async def test_payment_method_accesses_are_audited(stack: Stack, tenant: tuple[str, str]) -> None:
    tenant_id, key = tenant
    key_id = await key_id_of(stack, tenant_id)
    async with stack.http(key) as http:
        cid = (await http.post("/v1/customers", json={})).json()["id"]
        rid = {"X-Request-Id": "req-attach-1"}
        pm = (await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": "pm_card_visa"},
                              headers=rid)).json()["id"]
        await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": "tok_visa"})  # duplicate
        await http.get(f"/v1/customers/{cid}/payment_methods")
        await http.get(f"/v1/payment_methods/{pm}")
        await http.post(f"/v1/payment_methods/{pm}/detach")
        await http.post(f"/v1/payment_methods/{pm}/detach")
        await http.get("/v1/payment_methods/pm_nope")  # 404: no access to any data, no row
    rows = await audit_rows(stack, tenant_id)
    assert [(r["action"], r["resource_type"], r["resource_id"]) for r in rows] == [
        ("payment_method.attach", "payment_method", pm),
        ("payment_method.attach", "payment_method", pm),
        ("payment_method.list", "customer", cid),
        ("payment_method.read", "payment_method", pm),
        ("payment_method.detach", "payment_method", pm),
        ("payment_method.detach", "payment_method", pm),
    ]
    assert all(r["actor"] == key_id and str(r["tenant_id"]) == tenant_id and r["at"] is not None for r in rows)
    assert rows[0]["request_id"] == rows[0]["correlation_id"] == "req-attach-1"
    assert all(r["request_id"].startswith("req_") and r["correlation_id"] == r["request_id"] for r in rows[1:])
    assert len({r["request_id"] for r in rows}) == len(rows)
    assert [r["details"].get("duplicate") for r in rows[:2]] == [False, True]
    assert rows[2]["details"]["payment_method_ids"] == [pm]
    assert [r["details"]["already_detached"] for r in rows[4:]] == [False, True]
    assert all(r["details"]["customer_id"] == cid for r in rows if r["resource_type"] == "payment_method")


async def test_payment_create_and_cancel_are_audited_with_the_workflow_id(
    stack: Stack, tenant: tuple[str, str]
) -> None:
    tenant_id, key = tenant
    key_id = await key_id_of(stack, tenant_id)
    async with stack.http(key) as http:
        cid, pm = await customer_with_method(http, "pm_card_threeDSecure2Required")
        payment = (await pay(http, cid, pm, "42.00", "EUR", key="order-audit-1")).json()
        assert (await pay(http, cid, pm, "42.00", "EUR", key="order-audit-1")).status_code == 201  # a replay
        r = await http.post(f"/v1/payments/{payment['id']}/cancel", headers={"Idempotency-Key": "cancel-1"})
        assert r.json()["status"] == "canceled"
    rows = [r for r in await audit_rows(stack, tenant_id) if r["action"].startswith("payment.")]
    assert [(r["action"], r["resource_type"], r["resource_id"]) for r in rows] == [
        ("payment.create", "payment", payment["id"]), ("payment.cancel", "payment", payment["id"])]
    create, cancel = rows
    assert payment["workflow_id"] == f"payment/{tenant_id}/{payment['id']}"
    assert create["correlation_id"] == cancel["correlation_id"] == payment["workflow_id"]
    assert create["actor"] == cancel["actor"] == key_id
    assert create["details"] == {"amount_micros": 42_000_000, "currency": "EUR", "idempotency_key": "order-audit-1"}
    assert cancel["details"] == {"cancel_request_id": "cancel-1", "status": "canceled"}


async def test_the_audit_log_is_append_only_even_for_the_owner(stack: Stack, tenant: tuple[str, str]) -> None:
    tenant_id, key = tenant
    async with stack.http(key) as http:
        await customer_with_method(http)
    audit_id = (await audit_rows(stack, tenant_id))[0]["audit_id"]
    for sql in ("UPDATE paysaga.audit_log SET actor = 'someone else' WHERE audit_id = $1",
                "DELETE FROM paysaga.audit_log WHERE audit_id = $1"):
        with pytest.raises(asyncpg.CheckViolationError, match="append-only"):
            async with as_owner(stack, tenant_id) as conn:
                await conn.execute(sql, audit_id)
    with pytest.raises(asyncpg.CheckViolationError, match="append-only"):
        async with as_owner(stack, tenant_id) as conn:
            await conn.execute("TRUNCATE paysaga.audit_log")
    # The service's role has no UPDATE or DELETE grant in the first place.
    app = await asyncpg.connect(stack.db.app_url)
    try:
        for sql in ("UPDATE paysaga.audit_log SET actor = 'x'", "DELETE FROM paysaga.audit_log"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute(sql)
    finally:
        await app.close()
    assert (await audit_rows(stack, tenant_id))[0]["actor"] != "someone else"


async def test_rls_is_forced_on_the_audit_log(stack: Stack) -> None:
    row = await stack.admin_pool.fetchrow(  # type: ignore[attr-defined]
        """SELECT c.relrowsecurity, c.relforcerowsecurity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'paysaga' AND c.relname = 'audit_log'""")
    assert (row["relrowsecurity"], row["relforcerowsecurity"]) == (True, True)


async def test_reading_the_audit_log_needs_finance(stack: Stack) -> None:
    tenant_id, payments_key = await stack.new_tenant(["payments"])
    async with stack.http(payments_key) as http:
        r = await http.get("/v1/audit")
        assert r.status_code == 403 and r.json()["type"].endswith("/forbidden")
        assert r.headers["content-type"] == "application/problem+json"
        await customer_with_method(http)
    _, finance_key = await add_key(stack, tenant_id, ["finance"])
    async with stack.http(finance_key) as http:
        r = await http.get("/v1/audit")
        assert r.status_code == 200 and [e["action"] for e in r.json()["data"]] == ["payment_method.attach"]
    _, admin_key = await add_key(stack, tenant_id, ["admin"])
    async with stack.http(admin_key) as http:
        assert (await http.get("/v1/audit")).status_code == 200


async def test_audit_reads_are_audited_and_paginated_newest_first(stack: Stack, tenant: tuple[str, str]) -> None:
    tenant_id, key = tenant  # payments + admin
    key_id = await key_id_of(stack, tenant_id)
    async with stack.http(key) as http:
        cid, pm = await customer_with_method(http)
        for _ in range(3):
            await http.get(f"/v1/payment_methods/{pm}")
        first = (await http.get("/v1/audit", params={"limit": 2})).json()
        assert [e["action"] for e in first["data"]] == ["payment_method.read"] * 2 and first["has_more"]
        event = first["data"][0]
        assert event["object"] == "audit_event" and event["actor"] == key_id and event["tenant_id"] == tenant_id
        assert event["resource_id"] == pm and event["at"]
        rest = (await http.get("/v1/audit", params={"limit": 10, "starting_after": first["next_cursor"]})).json()
        # The first read is recorded now, after the page it returned, so it is not in that page.
        assert [e["action"] for e in rest["data"]] == ["payment_method.read", "payment_method.attach"]
        assert not rest["has_more"] and rest["next_cursor"] is None

        reads = (await http.get("/v1/audit", params={"action": "audit.read"})).json()["data"]
        assert [e["actor"] for e in reads] == [key_id, key_id]
        assert reads[0]["details"]["filters"] == {"starting_after": first["next_cursor"]}
        assert reads[1]["details"] == {"filters": {}, "returned": 2}
        by_resource = (await http.get("/v1/audit", params={"resource_id": cid})).json()["data"]
        assert by_resource == []  # attach/read rows name the method; the customer is in details
        assert (await http.get("/v1/audit", params={"starting_after": 999_999_999})).status_code == 400
    # Another tenant sees none of it.
    _, other_key = await stack.new_tenant()
    async with stack.http(other_key) as other:
        assert (await other.get("/v1/audit")).json()["data"] == []
        assert (await other.get("/v1/audit", params={"starting_after": event["id"]})).status_code == 400
