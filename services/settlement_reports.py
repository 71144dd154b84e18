"""Settlement reconciliation reports: read them (with their discrepancies, also as CSV), run one now, and the
variance each tenant's latest report has per currency (the Prometheus gauge)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any

import asyncpg
from temporalio.client import Client

from activities.stores import settlement_reports as store
from contracts.auth import Principal
from contracts.settlement import SETTLEMENT_WORKFLOW, SettlementInput, SettlementResult
from domain.money import Money
from paysaga.db import tenant_tx
from paysaga.settings import Settings
from services.context import AppContext
from services.errors import BadRequest, not_found

CSV_COLUMNS = ("report_id", "seq", "currency", "kind", "key", "expected", "actual", "variance", "explained",
               "detail", "record_ids", "provider_ids", "balance_transaction_ids")


def ratio_text(numerator: Any, denominator: Any) -> str:
    """An exact ratio as a decimal of 12 places (the exact value is kept as numerator and denominator)."""
    with localcontext() as ctx:
        ctx.prec = 60
        return f"{(Decimal(numerator) / Decimal(denominator)).quantize(Decimal('1e-12')):f}"


def _money(micros: int | None, currency: str) -> str | None:
    return Money(micros, currency).to_decimal_string() if micros is not None else None


def currency_json(row: Any) -> dict[str, Any]:
    c = row["currency"]
    return {"currency": c, "volume": Money(row["volume_micros"], c).to_decimal_string(),
            "unexplained": Money(row["unexplained_micros"], c).to_decimal_string(),
            "variance_ratio": ratio_text(row["variance_numerator"], row["variance_denominator"]),
            "variance_ppm": row["variance_ppm"], "matched": row["matched"], "discrepancies": row["discrepancies"],
            "in_flight": row["in_flight"], "exceeds": row["exceeds"]}


def discrepancy_json(row: Any) -> dict[str, Any]:
    c = row["currency"]
    return {"seq": row["seq"], "currency": c, "kind": row["kind"], "key": row["key"],
            "expected": _money(row["expected_micros"], c), "actual": _money(row["actual_micros"], c),
            "variance": Money(row["variance_micros"], c).to_decimal_string(), "explained": row["explained"],
            "detail": row["detail"], "records": row["records"], "lines": row["lines"]}


async def report_json(conn: asyncpg.Connection, row: Any, *, with_discrepancies: bool = False) -> dict[str, Any]:
    body = {"id": row["report_id"], "object": "settlement_report", "kind": row["kind"],
            "window_start": row["window_start"].isoformat(), "window_end": row["window_end"].isoformat(),
            "provider": row["provider"], "source_key": row["source_key"], "lines": row["lines"],
            "records": row["records"], "matched": row["matched"], "discrepancies": row["discrepancies"],
            "exceeds": row["exceeds"],
            "currencies": [currency_json(c) for c in await store.currencies_of(conn, row["report_id"])],
            "generated_by": row["generated_by"], "created_at": row["created_at"].isoformat()}
    if with_discrepancies:
        body["discrepancy_list"] = [discrepancy_json(d) for d in await store.discrepancies_of(conn, row["report_id"])]
    return body


async def list_reports(ctx: AppContext, who: Principal, limit: int, starting_after: str | None, kind: str | None
                       ) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        try:
            rows, more = await store.list_reports(conn, limit, starting_after, kind)
        except LookupError:
            raise BadRequest("invalid-cursor", "Invalid cursor", f"No report {starting_after}.") from None
        data = [await report_json(conn, r) for r in rows]
    return {"object": "list", "data": data, "has_more": more, "next_cursor": data[-1]["id"] if more else None}


async def get_report(ctx: AppContext, who: Principal, report_id: str) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        row = await store.fetch_report(conn, report_id)
        if row is None:
            raise not_found("settlement_report", report_id)
        return await report_json(conn, row, with_discrepancies=True)


async def discrepancies_csv(ctx: AppContext, who: Principal, report_id: str) -> str:
    """One row per discrepancy, with the ids of the records and balance transactions behind it."""
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        if await store.fetch_report(conn, report_id) is None:
            raise not_found("settlement_report", report_id)
        rows = await store.discrepancies_of(conn, report_id)
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        d = discrepancy_json(row)
        writer.writerow({
            "report_id": report_id, "seq": d["seq"], "currency": d["currency"], "kind": d["kind"], "key": d["key"],
            "expected": d["expected"] or "", "actual": d["actual"] or "", "variance": d["variance"],
            "explained": "true" if d["explained"] else "false", "detail": d["detail"],
            "record_ids": " ".join(r["record_id"] for r in d["records"]),
            "provider_ids": " ".join(r["provider_id"] for r in d["records"]),
            "balance_transaction_ids": " ".join(line["balance_transaction_id"] for line in d["lines"])})
    return out.getvalue()


async def run_now(client: Client, settings: Settings, tenant_id: str | None, start: datetime, end: datetime,
                  generated_by: str = "cli") -> SettlementResult:
    """A report of [start, end) now (every tenant when `tenant_id` is None), stored as a manual report."""
    inp = SettlementInput(kind="manual", start=start, end=end, tenant_id=tenant_id,
                          in_flight_hours=settings.settlement_in_flight_hours,
                          margin_hours=settings.settlement_margin_hours, generated_by=generated_by)
    result: SettlementResult = await client.execute_workflow(
        SETTLEMENT_WORKFLOW, inp, id=f"settlement-manual-{uuid.uuid4().hex[:10]}", task_queue=settings.task_queue,
        result_type=SettlementResult)
    return result


async def variance_by_tenant(ctx: AppContext) -> list[tuple[str, str, float]]:
    """(tenant, currency, variance ratio) of each tenant's latest report: what the gauge shows."""
    return [(str(r["tenant_id"]), r["currency"], float(Decimal(r["variance_numerator"])
                                                        / Decimal(r["variance_denominator"])))
            for r in await store.latest_variance(ctx.pool)]
