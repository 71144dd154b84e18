"""The vocabulary of the tax rules: what a sale is, what a line's tax is, and why.

Plain frozen dataclasses: the pydantic contracts (`contracts/tax.py`) are converted to these at the port, so the
rules never see a model, a request or a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

# ISO 3166-1 codes of the 27 member states. Greece is GR here (addresses); its VAT numbers carry the prefix EL.
EU_MEMBER_STATES = frozenset({
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT", "LU",
    "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
})

PPM_PER_WHOLE = 1_000_000  # rates are integer parts per million: 19 % = 190_000


class TaxError(ValueError):
    """The sale cannot be taxed as asked; retrying the same request cannot help."""


class UnsupportedTaxCode(TaxError):
    """The built-in rules know only the tax codes of electronically supplied services (and non-taxable)."""


class NoRateKnown(TaxError):
    """The rate table has no rate for that jurisdiction on that day."""


class InvalidSale(TaxError):
    """The sale itself is malformed: no lines, a negative amount, a US address without its state, …"""


class Taxability(StrEnum):
    """Why a line is taxed as it is (Stripe Tax's `taxability_reason` vocabulary)."""

    STANDARD_RATED = "standard_rated"
    REDUCED_RATED = "reduced_rated"
    REVERSE_CHARGE = "reverse_charge"
    NOT_COLLECTING = "not_collecting"
    CUSTOMER_EXEMPT = "customer_exempt"
    NOT_SUBJECT_TO_TAX = "not_subject_to_tax"
    ZERO_RATED = "zero_rated"
    PRODUCT_EXEMPT = "product_exempt"


class Exemption(StrEnum):
    """The customer's own status (Stripe's `tax_exempt`)."""

    NONE = "none"
    EXEMPT = "exempt"  # holds an exemption certificate: no tax anywhere
    REVERSE = "reverse"  # accounts for the tax itself where the law has a reverse charge


class RegistrationType(StrEnum):
    """How the seller is registered. A registration in a country (any type) covers sales into that country."""

    STANDARD = "standard"  # a domestic registration in that country (or US state)
    EU_OSS_UNION = "eu_oss_union"  # EU seller in the One-Stop Shop: B2C e-services to every member state
    EU_OSS_NON_UNION = "eu_oss_non_union"  # the same for a seller established outside the EU
    # An EU seller below the EU-wide EUR 10,000 threshold (Art. 59c Directive 2006/112/EC) keeps its own
    # country's VAT on B2C e-services to other member states.
    EU_SMALL_SELLER = "eu_small_seller"
    US_STATE_SALES_TAX = "us_state_sales_tax"


OSS_TYPES = frozenset({RegistrationType.EU_OSS_UNION, RegistrationType.EU_OSS_NON_UNION})


@dataclass(frozen=True, slots=True)
class Registration:
    country: str
    state: str | None
    type: str
    active_from: date
    active_until: date | None = None  # exclusive: the first day it no longer applies

    def active_on(self, day: date) -> bool:
        return self.active_from <= day and (self.active_until is None or day < self.active_until)


class VatIdStatus(StrEnum):
    VALID = "valid"  # format and check digits right (and VIES agreed, when it was asked)
    INVALID = "invalid"  # wrong format or check digits, or not a member state's prefix
    NOT_REGISTERED = "not_registered"  # well formed, but VIES says no such registration


@dataclass(frozen=True, slots=True)
class VatIdCheck:
    number: str  # compact form, with its prefix: DE136695976, EL094014201
    country: str | None  # ISO country of the prefix (GR for EL); None when the prefix is no member state's
    status: VatIdStatus


@dataclass(frozen=True, slots=True)
class Line:
    line_id: str
    amount_micros: int  # tax excluded
    tax_code: str


@dataclass(frozen=True, slots=True)
class Sale:
    currency: str
    tax_date: date
    seller_country: str
    registrations: tuple[Registration, ...]
    customer_country: str
    customer_state: str | None
    vat_ids: tuple[VatIdCheck, ...]  # the customer's EU VAT numbers, already checked
    exemption: Exemption
    lines: tuple[Line, ...]


@dataclass(frozen=True, slots=True)
class LineTax:
    line_id: str
    jurisdiction: str  # DE, US-CA
    jurisdiction_name: str
    level: str  # country, state
    rate_ppm: int
    amount_micros: int  # the line's amount, tax excluded
    taxable_micros: int
    tax_micros: int
    reason: Taxability
    tax_type: str  # vat, sales_tax, none


@dataclass(frozen=True, slots=True)
class Quote:
    currency: str
    tax_date: date
    lines: tuple[LineTax, ...]
    notes: tuple[str, ...]
    rounding: str

    @property
    def tax_micros(self) -> int:
        return sum(line.tax_micros for line in self.lines)
