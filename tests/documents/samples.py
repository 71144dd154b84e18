"""Documents to render: a German seller billing a French business (reverse charge), and its variations."""

from __future__ import annotations

import io
import re
from datetime import date
from typing import Any

from pypdf import PdfReader

from contracts.documents import DocumentLine, InvoiceDocument, Party, TaxSummary
from contracts.tax import Address, TaxId
from domain.money import Money, RoundingMode

SELLER = Party(
    name="Acme Cloud GmbH",
    address=Address(country="DE", city="Berlin", postal_code="10115", line1="Invalidenstraße 117"),
    email="billing@acme.example",
    tax_ids=[TaxId(type="eu_vat", value="DE123456789")],
)
BUYER = Party(
    name="Société Générale de Logiciels SARL",
    address=Address(country="FR", city="Paris", postal_code="75002", line1="12 rue de la Paix"),
    tax_ids=[TaxId(type="eu_vat", value="FR40303265045")],
)
REVERSE_CHARGE = ("Reverse charge: VAT to be accounted for by the recipient "
                  "(Article 196, Council Directive 2006/112/EC).")


def line(i: int, *, micros: int = 1_234_560_000, rate_ppm: int | None = 190_000) -> DocumentLine:
    return DocumentLine(description=f"Pro plan, seat {i}", quantity="1", unit_amount="1234.56",
                        amount_micros=micros, tax_rate_ppm=rate_ppm,
                        period_start=date(2026, 11, 1), period_end=date(2026, 11, 30))


def invoice(n_lines: int = 1, **changes: Any) -> InvoiceDocument:
    """`n_lines` lines of 1,234.56 at 19 % (one: 1,469.13 in all), 100.00 paid; `changes` override any field."""
    lines = [line(i + 1) for i in range(n_lines)]
    subtotal = sum(x.amount_micros for x in lines)
    tax = Money(subtotal, "EUR").percentage(1900, RoundingMode.HALF_EVEN).round_to_minor(RoundingMode.HALF_EVEN).micros
    fields: dict[str, Any] = dict(
        tenant_id="ten_acme", reference="inv_0001", number="INV-2026-0042",
        issued_on=date(2026, 11, 30), due_on=date(2026, 12, 14), currency="EUR", locale="de_DE",
        seller=SELLER, buyer=BUYER, lines=lines,
        subtotal_micros=subtotal, tax_micros=tax, total_micros=subtotal + tax,
        amount_paid_micros=100_000_000, amount_remaining_micros=subtotal + tax - 100_000_000,
        tax_summary=[
            TaxSummary(jurisdiction_name="Germany", rate_ppm=190_000, taxable_micros=subtotal, tax_micros=tax,
                       taxability_reason="standard_rated"),
            TaxSummary(jurisdiction_name="France", rate_ppm=0, taxable_micros=0, tax_micros=0,
                       taxability_reason="reverse_charge"),
        ],
        notes=[REVERSE_CHARGE],
        payment_instructions="SEPA transfer to IBAN DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX.",
    )
    fields.update(changes)
    return InvoiceDocument(**fields)


def pages_text(pdf: bytes) -> list[str]:
    """Each page's text as pypdf extracts it, with every kind of space made a plain one and runs collapsed."""
    reader = PdfReader(io.BytesIO(pdf), strict=True)
    return [re.sub(r"[ \u00a0\u202f\u2009]+", " ", page.extract_text()) for page in reader.pages]
