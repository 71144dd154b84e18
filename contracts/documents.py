"""Documents a person reads: the invoice (or credit note) as it is printed, and where a rendered file is kept.

`InvoiceDocument` carries everything the PDF shows and nothing it must compute from rules: amounts are already
rounded integer micro-units, tax is already summarised per rate, notes are already worded.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from contracts.tax import Address, TaxId


class Party(BaseModel):
    name: str
    address: Address | None = None
    email: str | None = None
    tax_ids: list[TaxId] = Field(default_factory=list)


class DocumentLine(BaseModel):
    description: str
    quantity: str = Field(description="Decimal string, e.g. \"3\" or \"1.5\"")
    unit_amount: str = Field(description="Decimal string in the currency's major unit, tax excluded")
    amount_micros: int = Field(description="The line's amount, tax excluded")
    tax_rate_ppm: int | None = Field(default=None, description="The rate applied to the line, if any")
    period_start: date | None = None
    period_end: date | None = None


class TaxSummary(BaseModel):
    """One row per (jurisdiction, rate, reason): what the tax block of an invoice lists."""

    jurisdiction_name: str
    rate_ppm: int
    taxable_micros: int
    tax_micros: int
    taxability_reason: str


class InvoiceDocument(BaseModel):
    kind: Literal["invoice", "credit_note"] = "invoice"
    tenant_id: str = Field(description="The seller's tenant: stored files are kept under it")
    reference: str = Field(description="Our id of the invoice or credit note")
    number: str
    issued_on: date
    due_on: date | None = None
    currency: str
    locale: str = Field(default="en_US", description="Formats amounts and dates (babel), e.g. de_DE, fr_FR")
    seller: Party
    buyer: Party
    lines: list[DocumentLine]
    subtotal_micros: int
    tax_micros: int
    total_micros: int
    amount_paid_micros: int = 0
    amount_credited_micros: int = 0
    amount_remaining_micros: int
    tax_summary: list[TaxSummary] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="e.g. the reverse-charge mention")
    payment_instructions: str | None = None
    credit_note_for: str | None = Field(default=None, description="For a credit note: the invoice's number")


class StoredObject(BaseModel):
    """A file kept in object storage."""

    key: str
    size: int
    content_type: str
    etag: str | None = None
    location: str = Field(description="Where it is: a file path for the local store, s3://bucket/key for S3")
