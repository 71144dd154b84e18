"""How an invoice and a credit note are shown: the API's answers, the outbox messages' payloads, and the
`billing.invoice.generated.v1` event (its JSON Schema is `schemas/billing.invoice.generated.v1.json`).

Amounts appear twice, as a decimal string in the major unit ("12.34") for people and as integer micro-units
(`…_micros`) for programs; never as a JSON number with a fraction.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from domain.invoice import CreditNote, Invoice, InvoiceLine, LineTax
from domain.money import Money


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _money(prefix: str, money: Money) -> dict[str, Any]:
    return {prefix: money.to_decimal_string(), f"{prefix}_micros": money.micros}


def rate_percent(rate_ppm: int) -> str:
    """190000 → "19", 72500 → "7.25": the rate as people write it, exactly."""
    whole, rest = divmod(rate_ppm, 10_000)
    return f"{whole}.{rest:04d}".rstrip("0").rstrip(".") if rest else str(whole)


def tax_json(tax: LineTax, currency: str) -> dict[str, Any]:
    return {"jurisdiction": tax.jurisdiction, "jurisdiction_name": tax.jurisdiction_name,
            "rate": rate_percent(tax.rate_ppm), "rate_ppm": tax.rate_ppm,
            **_money("taxable_amount", Money(tax.taxable_micros, currency)),
            **_money("amount", Money(tax.tax_micros, currency)),
            "taxability_reason": tax.taxability_reason, "tax_type": tax.tax_type}


def line_json(line: InvoiceLine, row: Mapping[str, Any] | None = None) -> dict[str, Any]:
    currency = line.amount.currency
    return {"id": line.line_id, "description": line.description, "quantity": line.quantity,
            "unit_amount": line.unit_amount, **_money("amount", line.amount), **_money("tax", line.tax),
            "period_start": _iso(line.period_start), "period_end": _iso(line.period_end),
            "tax_code": line.tax_code, "taxes": [tax_json(t, currency) for t in line.taxes]}


def invoice_json(invoice: Invoice, row: Mapping[str, Any]) -> dict[str, Any]:
    """The invoice as the API answers it: every amount the rules derive, and the actions its state allows."""
    assert invoice.amount_paid is not None
    credited = invoice.credited_before_payment + invoice.credited_after_payment
    quote = row.get("tax_quote") or {}
    return {
        "id": invoice.invoice_id, "object": "invoice", "number": invoice.number, "status": invoice.status.value,
        "customer_id": invoice.customer_id, "currency": invoice.currency,
        "collection_method": invoice.collection_method, "days_until_due": invoice.days_until_due,
        "due_date": _iso(invoice.due_date), "description": row.get("description"), "series": row.get("series"),
        "period_start": _iso(row.get("period_start")), "period_end": _iso(row.get("period_end")),
        "subscription_id": row.get("subscription_id"),
        "lines": [line_json(line) for line in invoice.lines],
        **_money("subtotal", invoice.subtotal), **_money("tax", invoice.tax), **_money("total", invoice.total),
        **_money("amount_due", invoice.amount_due), **_money("amount_paid", invoice.amount_paid),
        **_money("amount_remaining", invoice.amount_remaining), **_money("amount_credited", credited),
        **_money("credit_applied", invoice.credit_applied or Money.zero(invoice.currency)),
        "credit_notes": [note.credit_note_id for note in invoice.credit_notes],
        "tax_notes": list(quote.get("notes", [])), "paid_out_of_band": bool(row.get("paid_out_of_band")),
        "actions": invoice.actions,
        "pdf": f"/v1/invoices/{invoice.invoice_id}/pdf" if invoice.status.finalized else None,
        "workflow_id": row.get("workflow_id"), "metadata": row.get("metadata") or {},
        "finalized_at": _iso(row.get("finalized_at")), "paid_at": _iso(row.get("paid_at")),
        "voided_at": _iso(row.get("voided_at")), "void_reason": row.get("void_reason"),
        "marked_uncollectible_at": _iso(row.get("uncollectible_at")),
        "created_at": _iso(row.get("created_at")), "updated_at": _iso(row.get("updated_at")),
    }


def credit_note_json(note: CreditNote, row: Mapping[str, Any], currency: str) -> dict[str, Any]:
    zero = Money.zero(currency)
    settlement = note.settlement
    return {
        "id": note.credit_note_id, "object": "credit_note", "number": row.get("number"),
        "invoice_id": note.invoice_id, "type": "pre_payment" if note.before_payment else "post_payment",
        "reason": note.reason, "memo": note.memo, "currency": currency,
        "lines": [{"line_id": cl.line_id, **_money("amount", cl.amount), **_money("tax", cl.tax),
                   "taxes": [{"jurisdiction": j, **_money("amount", Money(micros, currency))}
                             for j, micros in cl.taxes]} for cl in note.lines],
        **_money("amount", note.amount), **_money("tax", note.tax), **_money("total", note.total),
        **_money("refund_amount", settlement.refund if settlement else zero),
        **_money("credit_amount", settlement.credit if settlement else zero),
        **_money("out_of_band_amount", settlement.out_of_band if settlement else zero),
        "refund_id": row.get("refund_id"),
        "pdf": f"/v1/credit_notes/{note.credit_note_id}/pdf" if row.get("created_at") else None,
        "created_at": _iso(row.get("created_at")),
    }


def generated_event(invoice: Invoice, row: Mapping[str, Any], event_id: str, occurred_at: datetime
                    ) -> dict[str, Any]:
    """`billing.invoice.generated.v1`: what a consumer needs to book or forward a finalized invoice. Integer
    micro-units only (the schema says so), and every line with its tax per jurisdiction."""
    assert invoice.number is not None and invoice.due_date is not None
    return {
        "event_id": event_id, "type": "invoice.generated", "version": 1, "occurred_at": occurred_at.isoformat(),
        "tenant_id": invoice.tenant_id,
        "invoice": {
            "id": invoice.invoice_id, "number": invoice.number, "customer_id": invoice.customer_id,
            "subscription_id": row.get("subscription_id"), "currency": invoice.currency,
            "collection_method": invoice.collection_method, "status": invoice.status.value,
            "issued_at": occurred_at.isoformat(), "due_date": invoice.due_date.isoformat(),
            "period_start": _iso(row.get("period_start")), "period_end": _iso(row.get("period_end")),
            "subtotal_micros": invoice.subtotal.micros, "tax_micros": invoice.tax.micros,
            "total_micros": invoice.total.micros, "amount_due_micros": invoice.amount_due.micros,
            "lines": [{"line_id": line.line_id, "description": line.description, "quantity": line.quantity,
                       "unit_amount": line.unit_amount, "amount_micros": line.amount.micros,
                       "period_start": _iso(line.period_start), "period_end": _iso(line.period_end),
                       "taxes": [{"jurisdiction": t.jurisdiction, "rate_ppm": t.rate_ppm,
                                  "taxable_micros": t.taxable_micros, "tax_micros": t.tax_micros,
                                  "taxability_reason": t.taxability_reason} for t in line.taxes]}
                      for line in invoice.lines],
            "tax_notes": list((row.get("tax_quote") or {}).get("notes", [])),
        },
    }
