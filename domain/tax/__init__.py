"""Tax rules, pure: EU VAT on electronically supplied services and US state sales tax, from dated rate tables.

`rules.quote(sale, rates)` decides each line's jurisdiction, rate, taxability reason and tax; `reversal` takes
committed tax back on a void or a credit note; `vat_ids` checks EU VAT numbers offline; `rates` reads the rate
tables kept as CSV in `data/` (the adapter reads the files, this package only parses their text).
"""

from domain.tax.model import (
    EU_MEMBER_STATES,
    PPM_PER_WHOLE,
    Exemption,
    InvalidSale,
    Line,
    LineTax,
    NoRateKnown,
    Quote,
    Registration,
    RegistrationType,
    Sale,
    Taxability,
    TaxError,
    UnsupportedTaxCode,
    VatIdCheck,
    VatIdStatus,
)
from domain.tax.rates import Rate, RateTable, percent_to_ppm
from domain.tax.rules import REVERSE_CHARGE_NOTE, quote, tax_of

__all__ = [
    "EU_MEMBER_STATES", "PPM_PER_WHOLE", "REVERSE_CHARGE_NOTE", "Exemption", "InvalidSale", "Line", "LineTax",
    "NoRateKnown", "Quote", "Rate", "RateTable", "Registration", "RegistrationType", "Sale", "TaxError",
    "Taxability", "UnsupportedTaxCode", "VatIdCheck", "VatIdStatus", "percent_to_ppm", "quote", "tax_of",
]
