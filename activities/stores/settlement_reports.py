"""Settlement reconciliation, in the database: our records of a window (what the ledger booked for payments,
refunds, disputes, transfers and payouts, with the provider ids and the settled amounts and fees recorded with
them), and the reports with their per-currency variance and their discrepancies (each with its records and
lines), written once in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from activities.stores import outbox
from domain.money import Money
from domain.settlement import Discrepancy, InternalRecord, Reconciliation, RecordKind, SettlementLine


@dataclass(frozen=True)
class Record:
    """One of our records and the currency it settles in (the one it is reconciled in)."""

    record: InternalRecord
    settlement_currency: str


def _money(micros: int | None, currency: str | None) -> Money | None:
    return Money(micros, currency) if micros is not None and currency else None


def _bt_parts(row: asyncpg.Record, presentment: str, fallback: str) -> tuple[Money | None, Money | None, str]:
    """(fee, settled, settlement currency) from the balance transaction recorded with a movement."""
    currency = row["bt_currency"]
    if currency is None:
        return None, None, fallback
    fee = Money(row["bt_fee"], currency)
    settled = Money(abs(row["bt_amount"]), currency) if currency != presentment else None
    return fee, settled, currency


_BT = """LEFT JOIN LATERAL (
            SELECT b.currency AS bt_currency, b.amount_micros AS bt_amount, b.fee_micros AS bt_fee
              FROM paysaga.provider_balance_transactions b
             WHERE b.source_type = {source_type} AND b.source_id = {source_id} AND b.event = {event}
             ORDER BY b.created_at LIMIT 1) bt ON true"""


async def records(conn: asyncpg.Connection, start: datetime, end: datetime, default_currency: str | None
                  ) -> list[Record]:
    """Our records created in [start, end), each in the currency it settles in (the provider's balance
    transaction says; without one, the tenant's settlement currency or the movement's own)."""
    out: list[Record] = []
    rows = await conn.fetch(
        f"""SELECT p.payment_id AS id, p.provider_intent_id AS provider_id, p.amount_micros, p.currency,
                   e.posted_at, bt.*
              FROM paysaga.journal_entries e
              JOIN paysaga.payments p ON p.payment_id = e.source_id
              {_BT.format(source_type="'payment'", source_id="p.payment_id", event="'payment.completed'")}
             WHERE e.source_type = 'payment' AND e.event = 'payment.completed' AND p.provider_intent_id IS NOT NULL
               AND e.posted_at >= $1 AND e.posted_at < $2""", start, end)
    rows_refunds = await conn.fetch(
        f"""SELECT r.refund_id AS id, r.provider_refund_id AS provider_id, r.amount_micros, r.currency,
                   e.posted_at, bt.*
              FROM paysaga.journal_entries e
              JOIN paysaga.refunds r ON r.refund_id = e.source_id
              {_BT.format(source_type="'refund'", source_id="r.refund_id", event="'refund.succeeded'")}
             WHERE e.source_type = 'refund' AND e.event = 'refund.succeeded' AND r.provider_refund_id IS NOT NULL
               AND e.posted_at >= $1 AND e.posted_at < $2""", start, end)
    for kind, found in ((RecordKind.PAYMENT, rows), (RecordKind.REFUND, rows_refunds)):
        for r in found:
            fee, settled, currency = _bt_parts(r, r["currency"], default_currency or r["currency"])
            out.append(Record(InternalRecord(kind, r["id"], r["provider_id"], Money(r["amount_micros"], r["currency"]),
                                             r["posted_at"], fee, settled), currency))
    disputes = await conn.fetch(
        f"""SELECT d.dispute_id AS id, d.provider_dispute_id AS provider_id, d.currency, e.event, e.posted_at,
                   CASE WHEN e.event = 'dispute.funds_withdrawn' THEN d.funds_withdrawn_micros
                        ELSE d.funds_reinstated_micros END AS amount_micros, bt.*
              FROM paysaga.journal_entries e
              JOIN paysaga.disputes d ON d.dispute_id = e.source_id
              {_BT.format(source_type="'dispute'", source_id="d.dispute_id", event="e.event")}
             WHERE e.source_type = 'dispute' AND e.event IN ('dispute.funds_withdrawn', 'dispute.funds_reinstated')
               AND e.posted_at >= $1 AND e.posted_at < $2""", start, end)
    for r in disputes:
        fee, settled, currency = _bt_parts(r, r["currency"], default_currency or r["currency"])
        back = r["event"] == "dispute.funds_reinstated"
        out.append(Record(InternalRecord(RecordKind.DISPUTE_REVERSAL if back else RecordKind.DISPUTE,
                                         f"{r['id']}{':reinstated' if back else ''}", r["provider_id"],
                                         Money(r["amount_micros"], r["currency"]), r["posted_at"], fee, settled),
                          currency))
    out += await _payout_records(conn, start, end, default_currency)
    return out


async def _payout_records(conn: asyncpg.Connection, start: datetime, end: datetime, default_currency: str | None
                          ) -> list[Record]:
    out: list[Record] = []
    transfers = await conn.fetch(
        f"""SELECT p.payout_id AS id, p.provider_transfer_id AS provider_id, p.amount_micros, p.currency,
                   e.posted_at, bt.*
              FROM paysaga.journal_entries e
              JOIN paysaga.payouts p ON p.payout_key = e.source_id
              {_BT.format(source_type="'payout'", source_id="p.payout_key", event="'transfer.created'")}
             WHERE e.source_type = 'payout' AND e.event = 'transfer.created'
               AND e.posted_at >= $1 AND e.posted_at < $2""", start, end)
    for r in transfers:
        fee, settled, currency = _bt_parts(r, r["currency"], default_currency or r["currency"])
        out.append(Record(InternalRecord(RecordKind.TRANSFER, r["id"], r["provider_id"],
                                         Money(r["amount_micros"], r["currency"]), r["posted_at"], fee, settled),
                          currency))
    events = await conn.fetch(
        f"""SELECT p.payout_id AS id, p.provider_transfer_id, p.provider_payout_id, p.amount_micros, p.currency,
                   p.destination_amount_micros, p.destination_currency, ev.type, ev.created_at AS posted_at, bt.*
              FROM paysaga.payout_events ev
              JOIN paysaga.payouts p USING (tenant_id, payout_id)
              {_BT.format(source_type="'payout'", source_id="p.payout_key", event="'transfer.reversed'")}
             WHERE ev.type IN ('payout.in_transit', 'payout.failed', 'payout.canceled', 'payout.funds_returned')
               AND ev.created_at >= $1 AND ev.created_at < $2""", start, end)
    for r in events:
        if r["type"] == "payout.funds_returned":  # the transfer came back to the platform's balance
            if r["provider_transfer_id"] is None:
                continue
            fee, settled, currency = _bt_parts(r, r["currency"], default_currency or r["currency"])
            out.append(Record(InternalRecord(RecordKind.ADJUSTMENT, f"{r['id']}:returned", r["provider_transfer_id"],
                                             Money(r["amount_micros"], r["currency"]), r["posted_at"], fee, settled,
                                             category="transfer_reversal"), currency))
            continue
        if r["provider_payout_id"] is None or r["destination_currency"] is None:
            continue
        paid_out = Money(r["destination_amount_micros"], r["destination_currency"])
        if r["type"] == "payout.in_transit":  # left the connected account's balance for its bank
            out.append(Record(InternalRecord(RecordKind.PAYOUT, r["id"], r["provider_payout_id"], paid_out,
                                             r["posted_at"], Money.zero(paid_out.currency)), paid_out.currency))
        else:  # came back to it
            out.append(Record(InternalRecord(RecordKind.ADJUSTMENT, f"{r['id']}:{r['type']}", r["provider_payout_id"],
                                             paid_out, r["posted_at"], Money.zero(paid_out.currency),
                                             category="payout_reversal"), paid_out.currency))
    return out


# --- reports --------------------------------------------------------------------------------------------------
def record_json(r: InternalRecord) -> dict[str, Any]:
    def money(m: Money | None) -> dict[str, Any] | None:
        return {"micros": m.micros, "currency": m.currency, "amount": m.to_decimal_string()} if m else None

    return {"kind": r.kind.value, "record_id": r.record_id, "provider_id": r.provider_id, "amount": money(r.amount),
            "created": r.created.isoformat(), "fee": money(r.fee), "settled": money(r.settled),
            "category": r.category}


def record_from_json(d: dict[str, Any]) -> InternalRecord:
    def money(m: dict[str, Any] | None) -> Money | None:
        return Money(m["micros"], m["currency"]) if m else None

    amount = money(d["amount"])
    assert amount is not None
    return InternalRecord(RecordKind(d["kind"]), d["record_id"], d["provider_id"], amount,
                          datetime.fromisoformat(d["created"]), money(d["fee"]), money(d["settled"]), d["category"])


def line_json(line: SettlementLine) -> dict[str, Any]:
    facing = line.customer_facing_amount
    return {"balance_transaction_id": line.balance_transaction_id, "source_id": line.source_id,
            "reporting_category": line.reporting_category, "currency": line.currency,
            "gross": line.gross.to_decimal_string(), "fee": line.fee.to_decimal_string(),
            "net": line.net.to_decimal_string(), "created": line.created.isoformat(),
            "available_on": line.available_on.isoformat(),
            "customer_facing_amount": facing.to_decimal_string() if facing else None,
            "customer_facing_currency": facing.currency if facing else None,
            "connected_account_id": line.connected_account_id}


async def existing(conn: asyncpg.Connection, kind: str, start: datetime, end: datetime) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM paysaga.settlement_reports WHERE kind = $1 AND window_start = $2 AND window_end = $3",
        kind, start, end)


async def carried_records(conn: asyncpg.Connection, kind: str, start: datetime) -> list[InternalRecord]:
    """The records the previous report of this kind (the one ending where this window starts) found in flight."""
    rows = await conn.fetch(
        """SELECT d.records FROM paysaga.settlement_discrepancies d
             JOIN paysaga.settlement_reports r USING (tenant_id, report_id)
            WHERE r.kind = $1 AND r.window_end = $2 AND d.kind = 'timing'""", kind, start)
    return [record_from_json(x) for row in rows for x in row["records"]]


async def insert_report(conn: asyncpg.Connection, *, tenant_id: str, report_id: str, kind: str, start: datetime,
                        end: datetime, provider: str, source_key: str | None, lines: int, records: int,
                        results: list[Reconciliation], generated_by: str) -> bool:
    """The report, its currencies and its discrepancies, and `billing.settlement.reconciled.v1`; False when a
    scheduled report of this window was already written."""
    matched = sum(len(r.matched) for r in results)
    found = sum(len(r.discrepancies) for r in results)
    exceeds = any(r.exceeds() for r in results)
    fresh = await conn.fetchval(
        """INSERT INTO paysaga.settlement_reports (report_id, tenant_id, kind, window_start, window_end, provider,
               source_key, lines, records, matched, discrepancies, exceeds, generated_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING RETURNING true""",
        report_id, tenant_id, kind, start, end, provider, source_key, lines, records, matched, found, exceeds,
        generated_by)
    if not fresh:
        return False
    seq = 0
    for result in results:
        ratio = result.variance_ratio
        await conn.execute(
            """INSERT INTO paysaga.settlement_report_currencies (tenant_id, report_id, currency, volume_micros,
                   unexplained_micros, variance_numerator, variance_denominator, variance_ppm, matched,
                   discrepancies, in_flight, exceeds)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)""",
            tenant_id, report_id, result.currency, result.volume.micros, result.unexplained.micros,
            ratio.numerator, ratio.denominator, result.variance_ppm, len(result.matched), len(result.discrepancies),
            len(result.in_flight), result.exceeds())
        for d in result.discrepancies:
            seq += 1
            await insert_discrepancy(conn, tenant_id, report_id, seq, result.currency, d)
    await outbox.enqueue(conn, tenant_id, f"evt_settlement_{tenant_id}_{report_id}", "settlement.reconciled", {
        "report_id": report_id, "kind": kind, "window_start": start.isoformat(), "window_end": end.isoformat(),
        "exceeds": exceeds, "currencies": {r.currency: r.variance_ppm for r in results},
        "discrepancies": found})
    return True


async def insert_discrepancy(conn: asyncpg.Connection, tenant_id: str, report_id: str, seq: int, currency: str,
                             d: Discrepancy) -> None:
    await conn.execute(
        """INSERT INTO paysaga.settlement_discrepancies (tenant_id, report_id, seq, currency, kind, key,
               expected_micros, actual_micros, variance_micros, explained, detail, records, lines)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)""",
        tenant_id, report_id, seq, currency, d.kind.value, d.key, d.expected.micros if d.expected else None,
        d.actual.micros if d.actual else None, d.variance.micros, d.explained, d.detail,
        [record_json(r) for r in d.records], [line_json(line) for line in d.lines])


async def fetch_report(conn: asyncpg.Connection, report_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM paysaga.settlement_reports WHERE report_id = $1", report_id)


async def currencies_of(conn: asyncpg.Connection, report_id: str) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        "SELECT * FROM paysaga.settlement_report_currencies WHERE report_id = $1 ORDER BY currency", report_id))


async def discrepancies_of(conn: asyncpg.Connection, report_id: str, kind: str | None = None
                           ) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        """SELECT * FROM paysaga.settlement_discrepancies WHERE report_id = $1 AND ($2::text IS NULL OR kind = $2)
            ORDER BY seq""", report_id, kind))


async def list_reports(conn: asyncpg.Connection, limit: int, starting_after: str | None, kind: str | None
                       ) -> tuple[list[asyncpg.Record], bool]:
    cursor = None
    if starting_after:
        cursor = await conn.fetchrow(
            "SELECT created_at, report_id FROM paysaga.settlement_reports WHERE report_id = $1", starting_after)
        if cursor is None:
            raise LookupError(starting_after)
    rows = await conn.fetch(
        """SELECT * FROM paysaga.settlement_reports
            WHERE ($1::timestamptz IS NULL OR (created_at, report_id) < ($1, $2)) AND ($3::text IS NULL OR kind = $3)
            ORDER BY created_at DESC, report_id DESC LIMIT $4""",
        cursor["created_at"] if cursor else None, cursor["report_id"] if cursor else None, kind, limit + 1)
    return list(rows[:limit]), len(rows) > limit


async def tenant_ids(pool: asyncpg.Pool) -> list[str]:
    return [str(r["tenant_id"]) for r in await pool.fetch("SELECT tenant_id FROM paysaga.tenant_ids()")]


async def latest_variance(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Per tenant and currency, the variance of the latest report (for /metrics)."""
    return list(await pool.fetch("SELECT * FROM paysaga.latest_settlement_variance()"))
