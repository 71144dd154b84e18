"""Settlement reconciliation of one tenant and window: the provider's settlement file against our records.

    the provider's file of [start - margin, end + margin) (the sandbox writes it from its balance transactions;
    Stripe's is made of its balance transactions, activities/providers) → stored as read, in object storage →
    parsed (activities/providers/settlement_report.py) → our records of the same span, and the records the
    previous report of this kind found in flight → what the window reconciles (domain/settlement.select_window:
    a pair split by the window's edge belongs where the record is) → per settlement currency,
    domain/settlement.reconcile → the report with its discrepancies, in one transaction.

A missing record made in another currency is valued at the ECB rate of the window's end (at most ten years old:
an estimate of what is missing, not a conversion to book).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

import asyncpg
import structlog
from temporalio import activity

from activities.fx import ecb_rates
from activities.fx.base import RateUnavailable
from activities.providers.settlement_report import parse_settlement_report
from activities.storage.base import ObjectStore
from activities.stores import connected_accounts as accounts
from activities.stores import settlement_reports as store
from contracts.settlement import CurrencySummary, ReportSummary, SettlementInput, TenantReconcile
from domain.fx import FxRate
from domain.settlement import Reconciliation, SettlementWindow, reconcile, select_window
from paysaga.db import tenant_tx
from paysaga.settings import Settings

log = structlog.get_logger("paysaga.settlement")
VALUATION_MAX_AGE_DAYS = 3650


def report_id_for(kind: str, window: SettlementWindow) -> str:
    """A scheduled report of a window has one id; a manual one gets a fresh id from its caller."""
    return f"srr_{kind}_{window.start:%Y%m%dT%H%M%S}_{window.end:%Y%m%dT%H%M%S}"


class SettlementActivities:
    def __init__(self, pool: asyncpg.Pool, provider: Any, objects: ObjectStore | None, settings: Settings) -> None:
        self._pool = pool
        self._provider = provider
        self._objects = objects
        self._valuation = ecb_rates(settings.fx_rates_file, VALUATION_MAX_AGE_DAYS)

    @activity.defn
    async def settlement_tenants(self, inp: SettlementInput) -> list[str]:
        if inp.tenant_id is not None:
            return [inp.tenant_id]
        return [t for t in await store.tenant_ids(self._pool) if inp.after_tenant is None or t > inp.after_tenant]

    @activity.defn
    async def reconcile_tenant(self, req: TenantReconcile) -> ReportSummary:
        window = SettlementWindow(req.start, req.end)
        report_id = req.report_id or report_id_for(req.kind, window)
        margin = timedelta(hours=req.margin_hours)
        async with tenant_tx(self._pool, req.tenant_id) as conn:
            if req.kind != "manual" and (done := await store.existing(conn, req.kind, req.start, req.end)):
                return await self._summary(conn, done, existed=True)
            settings = await accounts.settings_of(conn)
            ours = await store.records(conn, req.start - margin, req.end + margin, settings.settlement_currency)
            carried = await store.carried_records(conn, req.kind, req.start) if req.kind != "manual" else []
            connected = await accounts.provider_ids(conn)
        text = await self._provider.settlement_report(req.tenant_id, req.start - margin, req.end + margin, connected)
        source_key = await self._keep(req.tenant_id, report_id, text)
        lines_all = parse_settlement_report(text)
        currency_of = {r.record.record_id: r.settlement_currency for r in ours}
        records, lines = select_window([r.record for r in ours], lines_all, window, carried)
        by_currency: dict[str, tuple[list[Any], list[Any]]] = defaultdict(lambda: ([], []))
        for record in records:
            by_currency[currency_of.get(record.record_id, record.settled.currency if record.settled
                                        else record.amount.currency)][0].append(record)
        for line in lines:
            by_currency[line.currency][1].append(line)
        results: list[Reconciliation] = []
        for currency, (rs, ls) in sorted(by_currency.items()):
            results.append(reconcile(rs, ls, currency=currency, window=window,
                                     in_flight=timedelta(hours=req.in_flight_hours),
                                     rates=self._rates(rs, currency, window)))
        async with tenant_tx(self._pool, req.tenant_id) as conn:
            await store.insert_report(conn, tenant_id=req.tenant_id, report_id=report_id, kind=req.kind,
                                      start=req.start, end=req.end, provider=self._provider.name,
                                      source_key=source_key, lines=len(lines), records=len(records),
                                      results=results, generated_by=req.generated_by)
            row = await store.fetch_report(conn, report_id)
            assert row is not None
            summary = await self._summary(conn, row)
        log.info("billing.settlement.reconciled", tenant_id=req.tenant_id, report_id=report_id, kind=req.kind,
                 exceeds=summary.exceeds, **{c.currency: c.variance_ppm for c in summary.currencies})
        return summary

    def _rates(self, records: list[Any], currency: str, window: SettlementWindow) -> dict[str, FxRate]:
        rates: dict[str, FxRate] = {}
        for presentment in sorted({r.amount.currency for r in records} - {currency}):
            try:
                rates[presentment] = self._valuation.rate(presentment, currency, window.end.date())
            except RateUnavailable as exc:
                log.warning("billing.settlement.no_valuation_rate", currency=presentment, error=str(exc))
        return rates

    async def _keep(self, tenant_id: str, report_id: str, text: str) -> str | None:
        """The provider's file as it was read, beside the report (what an auditor would ask for)."""
        if self._objects is None:
            return None
        key = f"settlement-reports/{tenant_id}/{report_id}.csv"
        await self._objects.put(key, text.encode(), "text/csv")
        return key

    async def _summary(self, conn: asyncpg.Connection, row: asyncpg.Record, existed: bool = False) -> ReportSummary:
        currencies = []
        for c in await store.currencies_of(conn, row["report_id"]):
            kinds: dict[str, int] = defaultdict(int)
            for d in await store.discrepancies_of(conn, row["report_id"]):
                if d["currency"] == c["currency"]:
                    kinds[d["kind"]] += 1
            currencies.append(CurrencySummary(currency=c["currency"], volume_micros=c["volume_micros"],
                                              unexplained_micros=c["unexplained_micros"],
                                              variance_ppm=c["variance_ppm"], exceeds=c["exceeds"],
                                              discrepancies=dict(kinds)))
        return ReportSummary(report_id=row["report_id"], tenant_id=str(row["tenant_id"]), kind=row["kind"],
                             start=row["window_start"], end=row["window_end"], exceeds=row["exceeds"],
                             currencies=currencies, existed=existed)
