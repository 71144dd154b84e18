"""Customers: who pays, where they are (tax depends on it), and how they are billed."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from contracts.common import Body, Id, Metadata
from contracts.tax import Address, TaxExempt, TaxId

Email = Annotated[str, StringConstraints(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
Name = Annotated[str, StringConstraints(max_length=200)]
Country = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
Locale = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")]


class CustomerCreate(Body):
    email: Email | None = None
    name: Name | None = None
    country: Country | None = None
    address: Address | None = Field(default=None, description="The billing address; its country decides the tax")
    tax_ids: list[TaxId] = Field(default_factory=list, max_length=5,
                                 description="e.g. {\"type\": \"eu_vat\", \"value\": \"FR40303265045\"}")
    tax_exempt: TaxExempt = "none"
    preferred_locale: Locale | None = Field(default=None, description="How documents format amounts, e.g. de_DE")
    metadata: Metadata = Field(default_factory=dict)


class CustomerUpdate(Body):
    """Only the fields sent change; finalized invoices keep the details they were billed with."""

    email: Email | None = None
    name: Name | None = None
    address: Address | None = None
    tax_ids: list[TaxId] | None = Field(default=None, max_length=5)
    tax_exempt: TaxExempt | None = None
    preferred_locale: Locale | None = None
    default_payment_method_id: Id | None = Field(default=None, description="What invoices are charged to")
    metadata: Metadata | None = None
