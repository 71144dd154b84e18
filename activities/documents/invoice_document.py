"""An invoice or credit note as it is printed, built from what finalizing froze: the seller and the buyer as they
were billed, the lines and their tax, the tax quote's notes. Nothing here reads the customer or the tenant as
they are now, so a document rendered again later is the document that was issued."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from activities.stores.invoices import Loaded
from contracts.documents import DocumentLine, InvoiceDocument, Party, TaxSummary
from contracts.tax import Address, TaxId
from domain.invoice import CreditNote, Invoice, InvoiceLine

PAY_BY_CARD = "Charged to the payment method on file; nothing to do."


def party(snapshot: Mapping[str, Any] | None, fallback: str) -> Party:
    snapshot = snapshot or {}
    address = snapshot.get("address")
    return Party(name=snapshot.get("name") or fallback,
                 address=Address.model_validate(address) if address else None, email=snapshot.get("email"),
                 tax_ids=[TaxId.model_validate(t) for t in snapshot.get("tax_ids", [])])


def _rate(line: InvoiceLine) -> int | None:
    """The line's rate when it has one (several US jurisdictions: their sum)."""
    rated = [t.rate_ppm for t in line.taxes if t.tax_micros or t.rate_ppm]
    return sum(rated) if rated else None


def _summary(invoice: Invoice) -> list[TaxSummary]:
    rows: dict[tuple[str, int, str], list[int]] = defaultdict(lambda: [0, 0])
    for line in invoice.lines:
        for tax in line.taxes:
            row = rows[(tax.jurisdiction_name, tax.rate_ppm, tax.taxability_reason)]
            row[0] += tax.taxable_micros if tax.taxable_micros else line.amount.micros
            row[1] += tax.tax_micros
    return [TaxSummary(jurisdiction_name=name, rate_ppm=rate, taxable_micros=taxable, tax_micros=tax,
                       taxability_reason=reason) for (name, rate, reason), (taxable, tax) in rows.items()]


def instructions(invoice: Invoice, seller_name: str) -> str:
    if invoice.collection_method == "charge_automatically":
        return PAY_BY_CARD
    return (f"Please pay by bank transfer to {seller_name} by the due date, quoting invoice number "
            f"{invoice.number}.")


def invoice_document(loaded: Loaded) -> InvoiceDocument:
    invoice, row = loaded.invoice, loaded.row
    assert invoice.number is not None and row["finalized_at"] is not None
    seller = party(row["seller_snapshot"], "Seller")
    assert invoice.amount_paid is not None
    return InvoiceDocument(
        kind="invoice", tenant_id=invoice.tenant_id, reference=invoice.invoice_id, number=invoice.number,
        issued_on=row["finalized_at"].date(), due_on=invoice.due_date, currency=invoice.currency,
        locale=row["locale"], seller=seller, buyer=party(row["customer_snapshot"], invoice.customer_id),
        lines=[DocumentLine(description=line.description, quantity=line.quantity, unit_amount=line.unit_amount,
                            amount_micros=line.amount.micros, tax_rate_ppm=_rate(line),
                            period_start=line.period_start, period_end=line.period_end) for line in invoice.lines],
        subtotal_micros=invoice.subtotal.micros, tax_micros=invoice.tax.micros, total_micros=invoice.total.micros,
        amount_paid_micros=invoice.amount_paid.micros,
        amount_credited_micros=invoice.credited_before_payment.micros,
        amount_remaining_micros=invoice.amount_remaining.micros, tax_summary=_summary(invoice),
        notes=list((row["tax_quote"] or {}).get("notes", [])),
        payment_instructions=instructions(invoice, seller.name),
    )


def credit_note_document(loaded: Loaded, note: CreditNote, note_row: Mapping[str, Any]) -> InvoiceDocument:
    invoice, row = loaded.invoice, loaded.row
    assert invoice.number is not None
    by_id = {line.line_id: line for line in invoice.lines}
    lines = []
    for credit in note.lines:
        line = by_id[credit.line_id]
        lines.append(DocumentLine(description=line.description, quantity="1",
                                  unit_amount=credit.amount.to_decimal_string(), amount_micros=credit.amount.micros,
                                  tax_rate_ppm=_rate(line), period_start=line.period_start,
                                  period_end=line.period_end))
    given_back = []
    if note.settlement is not None:
        for label, part in (("Refunded to the original payment method", note.settlement.refund),
                            ("Credited to the customer's balance", note.settlement.credit),
                            ("Given back outside this system", note.settlement.out_of_band)):
            if not part.is_zero():
                given_back.append(f"{label}: {part.to_decimal_string()} {invoice.currency}")
    return InvoiceDocument(
        kind="credit_note", tenant_id=invoice.tenant_id, reference=note.credit_note_id, number=note_row["number"],
        issued_on=note_row["created_at"].date(), currency=invoice.currency, locale=row["locale"],
        seller=party(row["seller_snapshot"], "Seller"), buyer=party(row["customer_snapshot"], invoice.customer_id),
        lines=lines, subtotal_micros=note.amount.micros, tax_micros=note.tax.micros, total_micros=note.total.micros,
        amount_remaining_micros=0, notes=[f"Reason: {note.reason.replace('_', ' ')}", *([note.memo] if note.memo
                                                                                       else []), *given_back],
        credit_note_for=invoice.number,
    )
