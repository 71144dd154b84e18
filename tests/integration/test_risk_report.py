"""Fraud features, the write-once assessment, and the quarterly bias report against the real PostgreSQL.

The pure quarter helpers are tested here too (no stack needed); the rest uses the session's stack, whose database
is shared by every test of the session — so the report assertions look only at segments made of values no other
test uses (made-up currency codes, countries and brands), never at fleet totals.
"""

from __future__ import annotations

import dataclasses
import random
import string
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.ai_client import BuiltinScorer, gather_features, record_assessment
from activities.risk_report import (
    RiskReportActivities,
    build_bias_report,
    previous_quarter,
    quarter_bounds,
    quarter_of,
    render_table,
    shape_report,
)
from domain.fraud import FraudAssessment, FraudFeatures, FraudReason, score
from paysaga.db import create_pool, tenant_tx
from tests.stack import Stack

UNIT = 1_000_000
integration = pytest.mark.integration


# --- pure helpers -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("quarter", "start", "end"), [
    ("2026Q1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
    ("2026Q2", datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC)),
    ("2026Q3", datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC)),
    ("2026Q4", datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
])
def test_quarter_bounds(quarter: str, start: datetime, end: datetime) -> None:
    assert quarter_bounds(quarter) == (start, end)


@pytest.mark.parametrize("bad", ["2026Q5", "2026Q0", "2026q4", "2026-Q4", " 2026Q4", "2026Q4\n", "26Q4", "Q4",
                                 "", "\uff12\uff10\uff12\uff16Q1", "1969Q4", "9999Q1", None, 2026])
def test_quarter_bounds_refuses_bad_input(bad: Any) -> None:
    with pytest.raises(ValueError):
        quarter_bounds(bad)


@pytest.mark.parametrize(("today", "expected"), [
    (date(2027, 1, 1), "2026Q4"), (date(2026, 3, 31), "2025Q4"), (date(2026, 4, 1), "2026Q1"),
    (date(2026, 9, 30), "2026Q2"), (date(2026, 10, 1), "2026Q3"), (date(2026, 12, 31), "2026Q3"),
])
def test_previous_quarter(today: date, expected: str) -> None:
    assert previous_quarter(today) == expected
    assert quarter_bounds(expected)[1] <= datetime(today.year, today.month, today.day, tzinfo=UTC)


def test_quarter_of() -> None:
    assert quarter_of(date(2026, 11, 21)) == "2026Q4"
    assert quarter_of(datetime(2026, 3, 31, 23, 59, tzinfo=UTC)) == "2026Q1"


def _row(segment_type: str, segment: str, n: int, scored: int, flagged: float) -> dict[str, Any]:
    return {"segment_type": segment_type, "segment": segment, "n": n, "scored": scored, "mean_score": None,
            "p50_score": None, "p90_score": None, "share_flagged": flagged, "share_review": 0.0,
            "share_completed": 0.5, "share_failed": 0.1}


def test_findings_need_enough_sample_and_a_large_enough_disparity() -> None:
    report = shape_report("2026Q4", [
        _row("all", "all", 1000, 1000, 0.10),
        _row("country", "AA", 100, 100, 0.20),  # 2x the fleet: a finding
        _row("country", "BB", 100, 100, 0.11),  # 1.1x: within tolerance
        _row("country", "CC", 5, 5, 0.80),  # large but too small to mean anything
        _row("card_brand", "x", 100, 100, 0.05),  # half the fleet's rate: a finding too
    ])
    assert [(f["segment_type"], f["segment"], f["flag_rate_ratio"]) for f in report["findings"]] == [
        ("country", "AA", 2.0), ("card_brand", "x", 0.5)]
    cc = next(s for s in report["segments"]["country"] if s["segment"] == "CC")
    assert cc["low_sample"] is True and cc["flag_rate_ratio"] == 8.0
    table = render_table(report)
    assert "country=AA: flagged 20.0% (2.00x the fleet rate, 100 scored)" in table
    assert "CC *" in table


def test_an_empty_quarter_is_a_valid_report() -> None:
    report = shape_report("2026Q1", [])
    assert report["overall"]["n"] == 0 and report["findings"] == []
    assert all(v == [] for v in report["segments"].values())
    assert "Findings: none" in render_table(report)


# --- seeding ------------------------------------------------------------------------------------------------------
def code(length: int, prefix: str = "") -> str:
    """A made-up upper-case code no other test uses (currencies and countries only need the shape)."""
    return prefix + "".join(random.choices(string.ascii_uppercase, k=length - len(prefix)))


@pytest.fixture
async def app_pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(stack.db.app_url, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture
async def new_tenant(stack: Stack) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Fresh tenants whose still-open payments are closed afterwards, so no sweeper of open payments (polling,
    reconciliation) in a later test ever picks up this file's hand-made rows."""
    made: list[str] = []

    async def make() -> str:
        tenant_id, _ = await stack.new_tenant()
        made.append(tenant_id)
        return tenant_id

    yield make
    for tenant_id in made:
        await stack.admin_pool.execute(
            """UPDATE paysaga.payments SET status = CASE status WHEN 'processing' THEN 'failed' ELSE 'canceled' END
                WHERE tenant_id = $1 AND status IN ('created', 'pending', 'processing')""", tenant_id)


async def has_card_country(pool: Any) -> bool:
    """Migration 20261121000005 adds payment_methods.country; this feature must work with or without it."""
    return await pool.fetchval(
        """SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'paysaga'
                            AND table_name = 'payment_methods' AND column_name = 'country')""")


async def seed_customer(stack: Stack, tenant_id: str, *, country: str | None, brand: str,
                        card_country: str | None, card_age: timedelta = timedelta(0)) -> tuple[str, str]:
    cid, pm = f"cus_{uuid.uuid4().hex[:8]}", f"pm_{uuid.uuid4().hex[:8]}"
    admin: Any = stack.admin_pool
    async with admin.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO paysaga.customers (customer_id, tenant_id, country) VALUES ($1, $2, $3)",
                           cid, tenant_id, country)
        await conn.execute(
            """INSERT INTO paysaga.payment_methods (payment_method_id, tenant_id, customer_id, provider,
                   provider_token, brand, created_at)
               VALUES ($1, $2, $3, 'sandbox', 'pm_card_visa', $4, now() - $5::interval)""",
            pm, tenant_id, cid, brand, card_age)
        if card_country and await has_card_country(conn):
            await conn.execute("UPDATE paysaga.payment_methods SET country = $2 WHERE payment_method_id = $1",
                               pm, card_country)
    return cid, pm


PATH = {"created": [], "processing": ["processing"], "completed": ["processing", "completed"],
        "failed": ["failed"], "canceled": ["canceled"]}


async def seed_payment(stack: Stack, tenant_id: str, cid: str, pm: str, *, amount: int, currency: str,
                       status: str = "created", fraud: tuple[int, str] | None = None,
                       created_at: datetime | timedelta | None = None) -> str:
    """A payment row driven to `status`; fraud columns and created_at are set while it is still `created`."""
    pid = f"pay_{uuid.uuid4().hex[:10]}"
    admin: Any = stack.admin_pool
    async with admin.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO paysaga.payments (payment_id, tenant_id, customer_id, payment_method_id, amount_micros,
                   currency, provider, workflow_id) VALUES ($1, $2, $3, $4, $5, $6, 'sandbox', $7)""",
            pid, tenant_id, cid, pm, amount, currency, f"payment/{tenant_id}/{pid}")
        if fraud is not None:
            reasons = [{"code": "seeded", "contribution": fraud[0], "explanation": "set by the test"}]
            await conn.execute(
                "UPDATE paysaga.payments SET fraud_score = $2, fraud_reasons = $3, fraud_action = $4 "
                "WHERE payment_id = $1", pid, fraud[0], reasons, fraud[1])
        if created_at is not None:
            at = datetime.now(UTC) + created_at if isinstance(created_at, timedelta) else created_at
            await conn.execute("UPDATE paysaga.payments SET created_at = $2 WHERE payment_id = $1", pid, at)
        for step in PATH[status]:
            await conn.execute("UPDATE paysaga.payments SET status = $2 WHERE payment_id = $1", pid, step)
    return pid


def segment(report: dict[str, Any], segment_type: str, value: str) -> dict[str, Any]:
    matches = [s for s in report["segments"][segment_type] if s["segment"] == value]
    assert len(matches) == 1, (segment_type, value, report["segments"][segment_type])
    return matches[0]


# --- the bias report ------------------------------------------------------------------------------------------------
@integration
async def test_bias_report_segments_two_tenants(stack: Stack, app_pool: asyncpg.Pool, new_tenant: Any) -> None:
    quarter = quarter_of(datetime.now(UTC))
    start, _ = quarter_bounds(quarter)
    with_card_country = await has_card_country(stack.admin_pool)
    a_tenant, b_tenant = await new_tenant(), await new_tenant()
    a = {"currency": code(3, "Q"), "country": code(2, "Q"), "brand": f"brand-{uuid.uuid4().hex[:6]}",
         "card_country": code(2, "X")}
    b = {"currency": code(3, "Z"), "country": code(2, "Z"), "brand": f"brand-{uuid.uuid4().hex[:6]}",
         "card_country": code(2, "Y")}

    cid, pm = await seed_customer(stack, a_tenant, country=a["country"], brand=a["brand"],
                                  card_country=a["card_country"])
    for amount, fraud, status in [(10, (10, "allow"), "completed"), (20, (30, "allow"), "completed"),
                                  (30, (50, "require_3ds"), "failed"), (40, (70, "review"), "completed")]:
        await seed_payment(stack, a_tenant, cid, pm, amount=amount * UNIT, currency=a["currency"], status=status,
                           fraud=fraud)
    # Last quarter: outside the report.
    await seed_payment(stack, a_tenant, cid, pm, amount=UNIT, currency=a["currency"], status="completed",
                       fraud=(99, "review"), created_at=start - timedelta(seconds=1))

    cid, pm = await seed_customer(stack, b_tenant, country=b["country"], brand=b["brand"].upper(),
                                  card_country=b["card_country"])
    for amount, fraud, status in [(10, (20, "allow"), "completed"), (20, (45, "require_3ds"), "failed"),
                                  (30, None, "canceled")]:
        await seed_payment(stack, b_tenant, cid, pm, amount=amount * UNIT, currency=b["currency"], status=status,
                           fraud=fraud)

    report = await build_bias_report(app_pool, quarter)  # as paysaga_app: EXECUTE is all it needs

    expected_a = {"n": 4, "scored": 4, "mean_score": 40.0, "p50_score": 30, "p90_score": 70, "share_flagged": 0.5,
                  "share_review": 0.25, "share_completed": 0.75, "share_failed": 0.25, "low_sample": True}
    expected_b = {"n": 3, "scored": 2, "mean_score": 32.5, "p50_score": 20, "p90_score": 45, "share_flagged": 0.5,
                  "share_review": 0.0, "share_completed": 0.3333, "share_failed": 0.3333, "low_sample": True}
    for values, expected in ((a, expected_a), (b, expected_b)):
        segments = [("currency", values["currency"]), ("country", values["country"]),
                    ("card_brand", values["brand"])]  # brands are compared lower-cased
        if with_card_country:
            segments.append(("card_country", values["card_country"]))
        for segment_type, value in segments:
            got = segment(report, segment_type, value)
            assert {k: got[k] for k in expected} == expected, (segment_type, value)
    overall = report["overall"]
    assert overall["n"] >= 7 and overall["scored"] >= 6
    assert not any(f["segment"] in {a["currency"], b["currency"]} for f in report["findings"])  # low sample

    # Aggregates only: nothing in the body names a tenant, customer, payment or payment method.
    body = str(report)
    for secret in (a_tenant, b_tenant, cid, pm, "pay_"):
        assert secret not in body

    table = render_table(report)
    assert f"Fraud-score bias report {quarter}" in table
    line = next(row for row in table.splitlines() if row.startswith("currency") and a["currency"] in row)
    assert line.split()[2:] == ["*", "4", "4", "40.0", "30", "70", "50.0%", "25.0%", "75.0%", "25.0%",
                                line.split()[-1]]


@integration
async def test_generate_bias_report_is_idempotent(stack: Stack, app_pool: asyncpg.Pool, new_tenant: Any) -> None:
    quarter = quarter_of(datetime.now(UTC))
    tenant = await new_tenant()
    cid, pm = await seed_customer(stack, tenant, country="GB", brand="visa", card_country="GB")
    await seed_payment(stack, tenant, cid, pm, amount=5 * UNIT, currency="GBP", status="completed",
                       fraud=(12, "allow"))
    acts = RiskReportActivities(app_pool)  # paysaga_app: INSERT + UPDATE (generated_at, body) suffice
    first = await ActivityEnvironment().run(acts.generate_bias_report, quarter)
    row1 = await stack.admin_pool.fetchrow(
        "SELECT report_id, generated_at, body FROM paysaga.risk_reports WHERE quarter = $1", quarter)
    second = await ActivityEnvironment().run(acts.generate_bias_report, quarter)
    rows = await stack.admin_pool.fetch(
        "SELECT report_id, generated_at, body FROM paysaga.risk_reports WHERE quarter = $1", quarter)

    assert first == second
    assert len(rows) == 1
    assert rows[0]["report_id"] == row1["report_id"] and rows[0]["generated_at"] >= row1["generated_at"]
    assert rows[0]["body"] == row1["body"] == second
    assert second["quarter"] == quarter and second["overall"]["n"] >= 1


@integration
async def test_generate_bias_report_refuses_a_bad_quarter_without_retrying(app_pool: asyncpg.Pool) -> None:
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(RiskReportActivities(app_pool).generate_bias_report, "2026Q9")
    assert err.value.non_retryable and err.value.type == "InvalidRequest"


@integration
async def test_risk_reports_is_aggregate_only_and_the_app_cannot_delete(stack: Stack, app_pool: asyncpg.Pool) -> None:
    columns = await stack.admin_pool.fetch(
        """SELECT column_name FROM information_schema.columns WHERE table_schema = 'paysaga'
             AND table_name = 'risk_reports' ORDER BY ordinal_position""")
    assert [c["column_name"] for c in columns] == ["report_id", "quarter", "generated_at", "body"]
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_pool.execute("DELETE FROM paysaga.risk_reports")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_pool.execute("UPDATE paysaga.risk_reports SET quarter = '2000Q1'")
    with pytest.raises(asyncpg.CheckViolationError):
        await stack.admin_pool.execute(
            "INSERT INTO paysaga.risk_reports (quarter, body) VALUES ('2026Q5', '{}')")


# --- features and the stored assessment -------------------------------------------------------------------------
@integration
async def test_gather_features_reads_history_velocity_and_card(
        stack: Stack, app_pool: asyncpg.Pool, new_tenant: Any) -> None:
    tenant, other = await new_tenant(), await new_tenant()
    cid, pm = await seed_customer(stack, tenant, country="gb", brand="visa", card_country="US",
                                  card_age=timedelta(hours=2))
    pay = {"stack": stack, "tenant_id": tenant, "cid": cid, "pm": pm}
    ago = lambda **kw: -timedelta(**kw)  # noqa: E731
    await seed_payment(**pay, amount=10 * UNIT, currency="USD", status="completed", created_at=ago(hours=3))
    await seed_payment(**pay, amount=30 * UNIT, currency="USD", status="completed", created_at=ago(minutes=30))
    await seed_payment(**pay, amount=20 * UNIT, currency="USD", status="completed", created_at=ago(days=2))
    await seed_payment(**pay, amount=5 * UNIT, currency="USD", status="failed", created_at=ago(minutes=10))
    await seed_payment(**pay, amount=7 * UNIT, currency="USD", status="canceled", created_at=ago(minutes=5))
    await seed_payment(**pay, amount=99 * UNIT, currency="EUR", status="completed", created_at=ago(minutes=20))
    await seed_payment(**pay, amount=1 * UNIT, currency="USD", status="failed", created_at=ago(days=3))
    someone, their_pm = await seed_customer(stack, tenant, country="GB", brand="visa", card_country="GB")
    await seed_payment(stack, tenant, someone, their_pm, amount=UNIT, currency="USD", status="failed")
    target = await seed_payment(**pay, amount=100 * UNIT, currency="USD")
    await seed_payment(**pay, amount=1 * UNIT, currency="USD", status="completed",
                       created_at=timedelta(minutes=1))  # after the target: not part of its past

    async with tenant_tx(app_pool, tenant) as conn:
        features = await gather_features(conn, target)
    with_card_country = await has_card_country(stack.admin_pool)
    assert features.payment_method_age_seconds is not None
    assert 2 * 3600 - 60 <= features.payment_method_age_seconds <= 2 * 3600 + 60
    assert dataclasses.replace(features, payment_method_age_seconds=None) == FraudFeatures(
        amount_micros=100 * UNIT, currency="USD",
        customer_median_amount_micros=20 * UNIT,  # completed USD: 10, 20, 30 (EUR and the later one excluded)
        customer_completed_count=3,
        payments_last_hour=3,  # 30 min, 10 min (failed), 20 min (EUR); not the canceled one, not the later one
        payments_last_day=4,  # + 3 h
        payment_method_age_seconds=None,
        payment_method_previous_uses=4,  # completed with this card before the target: 3 h, 30 min, 2 d, EUR
        card_country="US" if with_card_country else None,
        customer_country="GB",
        prior_failed_last_day=1,  # the 10-minute-old one; not the 3-day-old one, not another customer's
    )

    # Row-level security: another tenant cannot score this payment.
    with pytest.raises(LookupError):
        async with tenant_tx(app_pool, other) as conn:
            await gather_features(conn, target)

    expected = score(features)
    assert (await BuiltinScorer().score_payment(features)) == expected
    assert {r.code for r in expected.reasons} >= {"amount_above_customer_median", "velocity_last_hour",
                                                  "prior_failed_payments", "payment_method_recently_added"}


@integration
async def test_assessment_is_written_once_while_created(
        stack: Stack, app_pool: asyncpg.Pool, new_tenant: Any) -> None:
    tenant = await new_tenant()
    cid, pm = await seed_customer(stack, tenant, country="GB", brand="visa", card_country="FR")
    pid = await seed_payment(stack, tenant, cid, pm, amount=50 * UNIT, currency="EUR")
    late = await seed_payment(stack, tenant, cid, pm, amount=50 * UNIT, currency="EUR", status="processing")
    first = FraudAssessment(45, (FraudReason("country_mismatch", 15, "x"), FraudReason("new", 30, "y")),
                            "require_3ds")
    retry = FraudAssessment(10, (FraudReason("other", 10, "z"),), "allow")

    async with tenant_tx(app_pool, tenant) as conn:
        assert await record_assessment(conn, pid, first) == first
        assert await record_assessment(conn, pid, retry) == first  # a retry keeps the first answer
        assert await record_assessment(conn, late, first) is None  # no longer created: nothing written
        row = await conn.fetchrow(
            "SELECT fraud_score, fraud_reasons, fraud_action FROM paysaga.payments WHERE payment_id = $1", pid)
    assert (row["fraud_score"], row["fraud_action"]) == (45, "require_3ds")
    assert [r["code"] for r in row["fraud_reasons"]] == ["new", "country_mismatch"]  # largest first

    with pytest.raises(asyncpg.CheckViolationError, match="written once"):
        await stack.admin_pool.execute("UPDATE paysaga.payments SET fraud_score = 1 WHERE payment_id = $1", pid)
    with pytest.raises(asyncpg.CheckViolationError, match="while it is created"):
        await stack.admin_pool.execute(
            "UPDATE paysaga.payments SET fraud_score = 1, fraud_reasons = '[]', fraud_action = 'allow' "
            "WHERE payment_id = $1", late)
    with pytest.raises(asyncpg.CheckViolationError):  # all three or none
        await stack.admin_pool.execute("UPDATE paysaga.payments SET fraud_score = 1 WHERE payment_id = $1",
                                       await seed_payment(stack, tenant, cid, pm, amount=UNIT, currency="EUR"))
    with pytest.raises(asyncpg.CheckViolationError):  # there is no "decline"
        await stack.admin_pool.execute(
            "UPDATE paysaga.payments SET fraud_score = 1, fraud_reasons = '[]', fraud_action = 'decline' "
            "WHERE payment_id = $1", await seed_payment(stack, tenant, cid, pm, amount=UNIT, currency="EUR"))

    # After the transition the stored assessment still reads back, and the row's status change was unaffected.
    await stack.admin_pool.execute("UPDATE paysaga.payments SET status = 'processing' WHERE payment_id = $1", pid)
    async with tenant_tx(app_pool, tenant) as conn:
        assert await record_assessment(conn, pid, retry) == FraudAssessment.from_record(
            45, row["fraud_reasons"], "require_3ds", model="stored")
