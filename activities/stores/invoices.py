"""Persistence of the Invoice aggregate: its row, lines and credit notes, its lifecycle events and outbox messages,
always in the caller's one transaction. Loading gives back the domain aggregate, so every rule runs on it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg
import structlog

from activities.stores import ledger, outbox, subscriptions
from contracts.invoice_views import invoice_json
from domain import invoice_postings as postings
from domain.invoice import (
    CreditLine,
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceRefused,
    InvoiceStatus,
    LineTax,
    Settlement,
)
from domain.ledger import JournalEntry
from domain.money import Money

log = structlog.get_logger("paysaga.billing")


@dataclass(frozen=True)
class Loaded:
    """An invoice as the domain sees it, with the row it came from (what the rules do not need: snapshots, the
    PDF's key, timestamps, metadata)."""

    invoice: Invoice
    row: asyncpg.Record


def _taxes(value: list[dict[str, Any]]) -> tuple[LineTax, ...]:
    return tuple(LineTax(t["jurisdiction"], t["jurisdiction_name"], t["rate_ppm"], t["taxable_micros"],
                         t["tax_micros"], t["taxability_reason"], t.get("tax_type", "vat")) for t in value)


def taxes_json(taxes: tuple[LineTax, ...]) -> list[dict[str, Any]]:
    return [{"jurisdiction": t.jurisdiction, "jurisdiction_name": t.jurisdiction_name, "rate_ppm": t.rate_ppm,
             "taxable_micros": t.taxable_micros, "tax_micros": t.tax_micros,
             "taxability_reason": t.taxability_reason, "tax_type": t.tax_type} for t in taxes]


def _line(row: asyncpg.Record, currency: str) -> InvoiceLine:
    return InvoiceLine(row["line_id"], row["description"], row["quantity"], row["unit_amount"],
                       Money(row["amount_micros"], currency), row["period_start"], row["period_end"],
                       row["tax_code"], _taxes(row["taxes"]))


def _credit_note(row: asyncpg.Record, currency: str) -> CreditNote:
    lines = tuple(CreditLine(cl["line_id"], Money(cl["amount_micros"], currency),
                             tuple((j, micros) for j, micros in cl["taxes"])) for cl in row["lines"])
    settlement = None
    if row["type"] == "post_payment":
        settlement = Settlement(Money(row["refund_micros"], currency), Money(row["credit_micros"], currency),
                                Money(row["out_of_band_micros"], currency))
    return CreditNote(row["credit_note_id"], row["invoice_id"], row["reason"], lines, row["type"] == "pre_payment",
                      settlement, row["memo"])


def credit_lines_json(note: CreditNote) -> list[dict[str, Any]]:
    return [{"line_id": cl.line_id, "amount_micros": cl.amount.micros, "tax_micros": cl.tax.micros,
             "taxes": [[j, micros] for j, micros in cl.taxes]} for cl in note.lines]


async def load(conn: asyncpg.Connection, invoice_id: str, *, lock: bool = False) -> Loaded | None:
    """The invoice with its lines and credit notes; `lock` holds its row until the transaction ends (every change
    of an invoice takes it, so changes of one invoice queue)."""
    row = await conn.fetchrow(
        f"SELECT * FROM paysaga.invoices WHERE invoice_id = $1{' FOR NO KEY UPDATE' if lock else ''}", invoice_id)
    if row is None:
        return None
    return (await load_many(conn, [row]))[0]


async def load_many(conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> list[Loaded]:
    """Aggregates for invoice rows already read: two queries whatever their number."""
    ids = [r["invoice_id"] for r in rows]
    lines: dict[str, list[asyncpg.Record]] = {i: [] for i in ids}
    notes: dict[str, list[asyncpg.Record]] = {i: [] for i in ids}
    for line in await conn.fetch("SELECT * FROM paysaga.invoice_lines WHERE invoice_id = ANY($1) "
                                 "ORDER BY invoice_id, position", ids):
        lines[line["invoice_id"]].append(line)
    for note in await conn.fetch("SELECT * FROM paysaga.credit_notes WHERE invoice_id = ANY($1) "
                                 "ORDER BY invoice_id, created_at, credit_note_id", ids):
        notes[note["invoice_id"]].append(note)
    out = []
    for row in rows:
        currency = row["currency"]
        invoice = Invoice(
            invoice_id=row["invoice_id"], tenant_id=str(row["tenant_id"]), customer_id=row["customer_id"],
            currency=currency, status=InvoiceStatus(row["status"]),
            lines=tuple(_line(r, currency) for r in lines[row["invoice_id"]]),
            collection_method=row["collection_method"], days_until_due=row["days_until_due"],
            due_date=row["due_date"], number=row["number"], amount_paid=Money(row["amount_paid_micros"], currency),
            credit_notes=tuple(_credit_note(r, currency) for r in notes[row["invoice_id"]]),
            credit_applied=Money(row["credit_applied_micros"], currency),
        )
        out.append(Loaded(invoice, row))
    return out


async def insert_draft(conn: asyncpg.Connection, *, tenant_id: str, invoice_id: str, customer_id: str,
                       currency: str, collection_method: str, days_until_due: int | None, due_date: date | None,
                       description: str | None, series: str, period_start: date | None, period_end: date | None,
                       metadata: dict[str, Any], idempotency_key: str | None, workflow_id: str,
                       subscription_id: str | None = None) -> bool:
    """False when the invoice already exists (a retried create)."""
    return bool(await conn.fetchval(
        """INSERT INTO paysaga.invoices (invoice_id, tenant_id, customer_id, currency, collection_method,
               days_until_due, due_date, description, series, period_start, period_end, metadata, idempotency_key,
               workflow_id, subscription_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
           ON CONFLICT DO NOTHING RETURNING true""",
        invoice_id, tenant_id, customer_id, currency, collection_method, days_until_due, due_date, description,
        series, period_start, period_end, metadata, idempotency_key, workflow_id, subscription_id))


async def insert_lines(conn: asyncpg.Connection, tenant_id: str, invoice_id: str, lines: list[InvoiceLine],
                       *, first_position: int, price_ids: dict[str, str] | None = None,
                       prorations: frozenset[str] = frozenset()) -> None:
    await conn.executemany(
        """INSERT INTO paysaga.invoice_lines (tenant_id, invoice_id, line_id, position, description, quantity,
               unit_amount, amount_micros, period_start, period_end, tax_code, price_id, proration)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)""",
        [(tenant_id, invoice_id, line.line_id, first_position + n, line.description, line.quantity,
          line.unit_amount, line.amount.micros, line.period_start, line.period_end, line.tax_code,
          (price_ids or {}).get(line.line_id), line.line_id in prorations) for n, line in enumerate(lines)])


async def delete_line(conn: asyncpg.Connection, invoice_id: str, line_id: str) -> bool:
    return (await conn.execute("DELETE FROM paysaga.invoice_lines WHERE invoice_id = $1 AND line_id = $2",
                               invoice_id, line_id)) != "DELETE 0"


async def next_position(conn: asyncpg.Connection, invoice_id: str) -> int:
    return int(await conn.fetchval(
        "SELECT coalesce(max(position), 0) + 1 FROM paysaga.invoice_lines WHERE invoice_id = $1", invoice_id))


async def take_number(conn: asyncpg.Connection, tenant_id: str, series: str) -> str:
    """The series' next number. The row stays locked until the transaction ends: concurrent finalizations queue
    here, and one that rolls back gives its number back, so numbers have no gaps."""
    n = await conn.fetchval(
        """INSERT INTO paysaga.invoice_sequences (tenant_id, series, last_number) VALUES ($1, $2, 1)
           ON CONFLICT (tenant_id, series) DO UPDATE SET last_number = invoice_sequences.last_number + 1
           RETURNING last_number""", tenant_id, series)
    return f"{series}-{n:06d}"


async def write_line_taxes(conn: asyncpg.Connection, invoice: Invoice) -> None:
    """While the row is still a draft (the lines' guard allows no change after)."""
    await conn.executemany(
        "UPDATE paysaga.invoice_lines SET taxes = $3 WHERE invoice_id = $1 AND line_id = $2",
        [(invoice.invoice_id, line.line_id, taxes_json(line.taxes)) for line in invoice.lines])


NOW = object()  # a column value meaning the database's now(), the transaction's one clock


async def update(conn: asyncpg.Connection, before: Loaded, after: Invoice, columns: dict[str, Any]) -> asyncpg.Record:
    """Write the aggregate's new status and amount paid (and `columns`; `NOW` for the transaction's time), guarded
    by the status it was loaded in, and move its event sequence on by one."""
    assert after.amount_paid is not None
    sets = {"status": after.status.value, "amount_paid_micros": after.amount_paid.micros,
            "event_seq": before.row["event_seq"] + 1, "updated_at": NOW, **columns}
    values = [v for v in sets.values() if v is not NOW]
    assignments, n = [], 3
    for name, value in sets.items():
        if value is NOW:
            assignments.append(f"{name} = now()")
        else:
            assignments.append(f"{name} = ${n}")
            n += 1
    row = await conn.fetchrow(
        f"UPDATE paysaga.invoices SET {', '.join(assignments)} WHERE invoice_id = $1 AND status = $2 RETURNING *",
        after.invoice_id, before.invoice.status.value, *values)
    if row is None:  # unreachable under the row lock; kept as the status guard
        raise RuntimeError(f"invoice {after.invoice_id} changed concurrently")
    return row


async def save_change(conn: asyncpg.Connection, before: Loaded, after: Invoice, event_type: str, actor: str,
                      correlation_id: str, *, columns: dict[str, Any] | None = None,
                      entries: list[JournalEntry | None] | None = None,
                      metadata: dict[str, Any] | None = None) -> Loaded:
    """One state change of an invoice: its row, its lifecycle event and outbox message, its journal entries."""
    row = await update(conn, before, after, columns or {})
    changed = Loaded(after, row)
    await record_event(conn, row, event_type, before.invoice.status.value, actor, correlation_id,
                       invoice_json(after, row), metadata)
    for entry in entries or []:
        if entry is not None:
            await ledger.post(conn, after.tenant_id, entry)
    if after.status is InvoiceStatus.PAID and before.invoice.status is not InvoiceStatus.PAID and (
            row["subscription_id"] is not None):
        # However it was paid (card, out of band, a credit note, nothing left at finalization), the subscription
        # hears it in the same transaction.
        await subscriptions.on_invoice_paid(conn, after.invoice_id, row["subscription_id"], correlation_id)
    return changed


async def first_charge_failed(conn: asyncpg.Connection, invoice_id: str, payment_id: str,
                              failure_code: str | None, correlation_id: str) -> None:
    """A payment of the invoice failed (in the payment's transaction): if it was the invoice's first charge and
    the invoice is a subscription's, the subscription records it (and may be handed to dunning)."""
    row = await conn.fetchrow(
        """SELECT subscription_id, status, (SELECT count(*) FROM paysaga.payments p WHERE p.invoice_id = i.invoice_id)
                  AS charges FROM paysaga.invoices i WHERE invoice_id = $1""", invoice_id)
    if row is None or row["subscription_id"] is None or row["charges"] != 1 or row["status"] != "open":
        return
    await subscriptions.on_first_charge_failed(conn, invoice_id, row["subscription_id"], payment_id, failure_code,
                                               correlation_id)


async def settle_by_payment(conn: asyncpg.Connection, invoice_id: str, payment_id: str, amount: Money,
                            correlation_id: str) -> Loaded | None:
    """A payment of the invoice completed (in the payment's transaction): the invoice is paid. A payment that no
    longer matches (the invoice was voided or paid otherwise meanwhile) leaves it as it is: the money is in the
    ledger as the customer's (a negative receivable), for finance to refund."""
    loaded = await load(conn, invoice_id, lock=True)
    if loaded is None:
        return None
    invoice = loaded.invoice
    try:
        paid = invoice.pay(amount)
    except InvoiceRefused as refused:
        log.warning("invoice.payment_unapplied", invoice_id=invoice_id, payment_id=payment_id,
                    status=invoice.status.value, reason=refused.code)
        return None
    return await save_change(conn, loaded, paid, "invoice.paid", "workflow", correlation_id,
                             columns={"paid_at": NOW}, entries=[postings.recovered(invoice)],
                             metadata={"payment_id": payment_id})


def transition_id(invoice_id: str, seq: int) -> str:
    return hashlib.sha256(f"invoice:{invoice_id}:{seq}".encode()).hexdigest()


async def record_event(conn: asyncpg.Connection, row: asyncpg.Record, event_type: str, old_status: str | None,
                       actor: str, correlation_id: str, payload: dict[str, Any],
                       metadata: dict[str, Any] | None = None) -> None:
    """The lifecycle event at the row's event_seq and its outbox message `billing.<event_type>.v1`."""
    event_id = transition_id(row["invoice_id"], row["event_seq"])
    await conn.execute(
        """INSERT INTO paysaga.invoice_events (transition_id, tenant_id, invoice_id, seq, type, old_status,
               new_status, metadata, actor, correlation_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        event_id, row["tenant_id"], row["invoice_id"], row["event_seq"], event_type, old_status, row["status"],
        metadata or {}, actor, correlation_id)
    await outbox.enqueue(conn, str(row["tenant_id"]), event_id, event_type, {
        "old_status": old_status, "new_status": row["status"], "correlation_id": correlation_id,
        "invoice": payload})


async def events(conn: asyncpg.Connection, invoice_id: str) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM paysaga.invoice_events WHERE invoice_id = $1 ORDER BY seq", invoice_id)


async def insert_credit_note(conn: asyncpg.Connection, tenant_id: str, note: CreditNote, number: str,
                             refund_id: str | None, idempotency_key: str | None) -> asyncpg.Record:
    settlement = note.settlement
    return await conn.fetchrow(
        """INSERT INTO paysaga.credit_notes (credit_note_id, tenant_id, invoice_id, number, type, reason, memo,
               amount_micros, tax_micros, refund_micros, credit_micros, out_of_band_micros, lines, refund_id,
               idempotency_key)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING *""",
        note.credit_note_id, tenant_id, note.invoice_id, number, "pre_payment" if note.before_payment else
        "post_payment", note.reason, note.memo, note.amount.micros, note.tax.micros,
        settlement.refund.micros if settlement else 0, settlement.credit.micros if settlement else 0,
        settlement.out_of_band.micros if settlement else 0, credit_lines_json(note), refund_id, idempotency_key)


async def credit_note_rows(conn: asyncpg.Connection, invoice_id: str) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM paysaga.credit_notes WHERE invoice_id = $1 ORDER BY created_at, "
                            "credit_note_id", invoice_id)


async def credit_note_row(conn: asyncpg.Connection, credit_note_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM paysaga.credit_notes WHERE credit_note_id = $1", credit_note_id)


async def list_page(conn: asyncpg.Connection, limit: int, starting_after: str | None, *,
                    customer_id: str | None = None, status: str | None = None, period_from: date | None = None,
                    period_to: date | None = None) -> tuple[list[Loaded], bool]:
    """Newest first, keyset-paginated; the period filters keep invoices whose period overlaps [from, to].
    LookupError if the cursor names no invoice."""
    cursor = None
    if starting_after:
        cursor = await conn.fetchrow("SELECT created_at, invoice_id FROM paysaga.invoices WHERE invoice_id = $1",
                                     starting_after)
        if cursor is None:
            raise LookupError(starting_after)
    rows = await conn.fetch(
        """SELECT * FROM paysaga.invoices
            WHERE ($1::timestamptz IS NULL OR (created_at, invoice_id) < ($1, $2))
              AND ($3::text IS NULL OR customer_id = $3) AND ($4::text IS NULL OR status = $4)
              AND ($5::date IS NULL OR coalesce(period_end, period_start, created_at::date) >= $5)
              AND ($6::date IS NULL OR coalesce(period_start, period_end, created_at::date) <= $6)
            ORDER BY created_at DESC, invoice_id DESC LIMIT $7""",
        cursor["created_at"] if cursor else None, cursor["invoice_id"] if cursor else None, customer_id, status,
        period_from, period_to, limit + 1)
    return await load_many(conn, list(rows[:limit])), len(rows) > limit


async def collection_attempts(conn: asyncpg.Connection, invoice_id: str) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM paysaga.payments WHERE invoice_id = $1", invoice_id))


async def live_payment(conn: asyncpg.Connection, invoice_id: str) -> asyncpg.Record | None:
    """The payment collecting the invoice now, or the one that did."""
    return await conn.fetchrow(
        """SELECT payment_id, status, provider FROM paysaga.payments
            WHERE invoice_id = $1 AND status IN ('created', 'pending', 'processing', 'completed')""", invoice_id)


async def set_pdf_key(conn: asyncpg.Connection, invoice_id: str, key: str) -> None:
    await conn.execute("UPDATE paysaga.invoices SET pdf_key = $2 WHERE invoice_id = $1 AND pdf_key IS NULL",
                       invoice_id, key)
