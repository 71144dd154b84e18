"""Tax: what a `TaxProvider` is asked (a quote for an invoice's lines), and what it answers.

Shaped like Stripe Tax: a quote (a "calculation") names, per line, the jurisdiction, the rate, the taxable amount,
the tax and why (the taxability reason); committing it by invoice id records it as a "transaction"; a void or a
credit note reverses it. Amounts are integer micro-units of the invoice's currency; rates are integer parts per
million (19 % = 190_000), so no float ever touches a tax amount.

A quote has one `TaxLineQuote` per line and jurisdiction: an EU or a built-in US line has one, a line Stripe Tax
rates in several US jurisdictions (state, county, city) has one per jurisdiction, all with the line's `line_id`.
The quote's tax is the sum over all of them.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field, model_validator

TaxabilityReason = Literal[
    "standard_rated",  # charged at the jurisdiction's rate
    "reduced_rated",  # charged at a reduced rate the line's tax code qualifies for
    "reverse_charge",  # EU B2B across borders: the customer accounts for the VAT (a legal note is printed)
    "not_collecting",  # the seller is not registered (no nexus) where the customer is
    "customer_exempt",  # the customer holds an exemption
    "not_subject_to_tax",  # outside the scope of the taxes the engine knows
    "zero_rated",  # taxable at 0 %
    "product_exempt",  # the product is exempt where the customer is (Stripe Tax; e.g. SaaS in some US states)
]
TaxExempt = Literal["none", "exempt", "reverse"]  # Stripe's customer `tax_exempt`


class TaxId(BaseModel):
    """A customer's tax id, in Stripe's vocabulary (`eu_vat`, `gb_vat`, `us_ein`, …)."""

    type: str = Field(pattern=r"^[a-z]{2}_[a-z]{2,6}$")
    value: str = Field(min_length=1, max_length=64)


class Address(BaseModel):
    country: str = Field(pattern=r"^[A-Z]{2}$")
    state: str | None = Field(default=None, max_length=64, description="US: the two-letter state code")
    postal_code: str | None = Field(default=None, max_length=32)
    city: str | None = Field(default=None, max_length=128)
    line1: str | None = Field(default=None, max_length=256)
    line2: str | None = Field(default=None, max_length=256)


class TaxRegistration(BaseModel):
    """Where the seller (the tenant) is registered to collect tax, as Stripe Tax models registrations."""

    country: str = Field(pattern=r"^[A-Z]{2}$")
    state: str | None = None  # US nexus is per state
    type: str = Field(default="standard", description="standard (domestic), eu_oss_union, eu_oss_non_union, "
                                                       "eu_small_seller, us_state_sales_tax")
    active_from: date
    active_until: date | None = Field(default=None, description="Exclusive: the first day it no longer applies")


class TaxLineInput(BaseModel):
    line_id: str
    amount_micros: int = Field(description="The line's taxable amount, tax excluded")
    tax_code: str = "txcd_10000000"  # Stripe's "general - electronically supplied services"


class TaxQuoteRequest(BaseModel):
    tenant_id: str
    reference: str = Field(description="What the quote is for (the invoice id): commit and reverse name it")
    currency: str
    tax_date: date = Field(description="The tax point: the rates in force that day apply")
    seller: Address
    registrations: list[TaxRegistration] = Field(default_factory=list)
    customer: Address
    customer_tax_ids: list[TaxId] = Field(default_factory=list)
    customer_exempt: TaxExempt = "none"
    lines: list[TaxLineInput]


class TaxLineQuote(BaseModel):
    line_id: str
    jurisdiction: str = Field(description="e.g. DE, FR, US-CA")
    jurisdiction_name: str
    jurisdiction_level: str = Field(default="country", description="country, state, county, city, district")
    rate_ppm: int = Field(description="Parts per million: 19 % = 190000")
    amount_micros: int = Field(description="The line's amount, tax excluded (what credit notes take back from)")
    taxable_micros: int
    tax_micros: int
    taxability_reason: TaxabilityReason
    tax_type: str = Field(description="vat, sales_tax, …")


class TaxQuote(BaseModel):
    quote_id: str
    provider: str
    tenant_id: str
    reference: str
    currency: str
    tax_date: date
    lines: list[TaxLineQuote]
    tax_micros: int
    rounding: str = Field(description="How amounts were rounded, e.g. per line, half-even, to the minor unit")
    notes: list[str] = Field(default_factory=list, description="Printed on the invoice, e.g. the reverse-charge "
                                                                "mention, or why a tax id was not applied")


class TaxTransaction(BaseModel):
    """A committed quote (Stripe's tax.Transaction): what the seller owes to whom."""

    transaction_id: str
    provider: str
    reference: str
    currency: str
    tax_micros: int
    lines: list[TaxLineQuote]


class TaxReversal(BaseModel):
    """A reversal of (part of) a committed transaction, on a void or a credit note."""

    reversal_id: str
    reference: str
    original_reference: str
    amount_micros: int = Field(description="The amount credited, tax excluded, as a positive amount")
    tax_micros: int = Field(description="The tax reversed, as a positive amount")
    lines: list[TaxLineQuote] = Field(description="Per line and jurisdiction: amount_micros is the part of the "
                                                  "line credited, taxable_micros and tax_micros what it reverses")


class TaxReversalLineInput(BaseModel):
    line_id: str
    amount_micros: int = Field(gt=0, description="The part of the line's amount credited, tax excluded")


class TaxReversalRequest(BaseModel):
    """Reverse a committed transaction: everything left (a void: neither amount nor lines), or part of it."""

    tenant_id: str
    original_reference: str = Field(description="The committed transaction's reference (the invoice id)")
    reference: str = Field(description="This reversal's own reference (the credit note's id): it is idempotent")
    amount_micros: int | None = Field(
        default=None, gt=0,
        description="A credit of this amount (tax excluded), spread over the lines in proportion to what is left")
    lines: list[TaxReversalLineInput] | None = Field(default=None, description="Or credits of given lines")

    @model_validator(mode="after")
    def _one_way(self) -> TaxReversalRequest:
        if self.amount_micros is not None and self.lines is not None:
            raise ValueError("give amount_micros or lines, not both")
        if self.lines is not None:
            ids = [line.line_id for line in self.lines]
            if not ids or len(set(ids)) != len(ids):
                raise ValueError("lines must name each line once, and at least one")
        return self

    @property
    def is_void(self) -> bool:
        return self.amount_micros is None and self.lines is None


class SellerProfile(BaseModel):
    """The tenant as a seller: what an invoice prints about it, and where its tax rules start from."""

    legal_name: str = Field(min_length=1, max_length=256)
    address: Address
    tax_ids: list[TaxId] = Field(default_factory=list, description="The seller's own, e.g. its EU VAT number")
