"""The built-in tax rules: per line, the jurisdiction, the rate, why, and the tax.

What it decides, in order (the first that applies wins):

1. The customer is exempt → `customer_exempt`, no tax, wherever they are.
2. The customer is in the EU (VAT on electronically supplied services):
   - a VAT number of the customer's country with valid format and check digits (and registered, if VIES was
     asked) makes the sale B2B. Across borders (seller's country ≠ customer's): `reverse_charge`, no tax, and
     the Article 196 note. In the seller's own country: the domestic rate (`standard_rated`).
   - a customer marked `reverse` → `reverse_charge` as well.
   - otherwise B2C (an invalid number is said so in the notes): the customer's country rate when the seller is
     registered there or in the One-Stop Shop; the seller's own rate when it uses the small-seller threshold;
     `not_collecting` when it is registered for neither.
3. The customer is in the US: the state's base sales-tax rate where the seller has a registration (nexus) in
   that state, `not_collecting` elsewhere; states without a sales tax are `not_subject_to_tax`. A `reverse`
   customer changes nothing here: sales tax has no reverse charge (the buyer's use tax is its own affair).
4. Anywhere else: `not_subject_to_tax`.

Rounding: each line's tax is taxable * rate rounded half-even straight to the currency's minor unit, and the
quote's tax is the sum of its lines, so the totals reconcile to the micro-unit.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.money import Money, RoundingMode, get_currency
from domain.tax.model import (
    EU_MEMBER_STATES,
    OSS_TYPES,
    PPM_PER_WHOLE,
    Exemption,
    InvalidSale,
    LineTax,
    Quote,
    Registration,
    RegistrationType,
    Sale,
    Taxability,
    UnsupportedTaxCode,
    VatIdCheck,
    VatIdStatus,
)
from domain.tax.rates import RateTable

GENERAL_ELECTRONIC_SERVICES = "txcd_10000000"
SAAS_BUSINESS_USE = "txcd_10103000"
SAAS_PERSONAL_USE = "txcd_10103001"
NONTAXABLE = "txcd_00000000"
# The codes the standard rate is right for. Others (e-books, newspapers, goods, …) have reduced rates or other
# rules in many jurisdictions; they are refused rather than taxed at a plausible wrong rate.
STANDARD_RATED_CODES = frozenset({GENERAL_ELECTRONIC_SERVICES, SAAS_BUSINESS_USE, SAAS_PERSONAL_USE})
SUPPORTED_TAX_CODES = STANDARD_RATED_CODES | {NONTAXABLE}

REVERSE_CHARGE_NOTE = ("Reverse charge: VAT to be accounted for by the recipient, "
                       "Article 196 Council Directive 2006/112/EC")
EXEMPT_NOTE = "Customer exempt from tax"
TAX_ROUNDING = RoundingMode.HALF_EVEN


def rounding_description(currency: str) -> str:
    unit = Money.from_minor_units(1, currency).to_decimal_string()
    return f"per line: taxable * rate, rounded half-even to the minor unit of {get_currency(currency).code} " \
           f"({unit}); the total is the sum of the lines"


def tax_of(taxable_micros: int, rate_ppm: int, currency: str) -> int:
    """taxable * rate, rounded once, half-even, to a whole number of minor units (in micros)."""
    return Money(taxable_micros, currency).scale_to_minor(rate_ppm, PPM_PER_WHOLE, TAX_ROUNDING).micros


def invalid_vat_note(check: VatIdCheck, customer_country: str, charged: bool) -> str:
    outcome = "VAT charged" if charged else "treated as a sale to a consumer"
    if check.status is VatIdStatus.NOT_REGISTERED:
        return f"VAT number {check.number} is not registered in VIES: {outcome}"
    if check.status is VatIdStatus.VALID:  # well formed, but another country's than the customer's address
        return f"VAT number {check.number} is not from the customer's country ({customer_country}): {outcome}"
    return f"VAT number {check.number} is not valid: {outcome}"


def business_vat_id(checks: tuple[VatIdCheck, ...], customer_country: str) -> VatIdCheck | None:
    """The VAT number that makes the sale B2B: valid, and of the customer's own country."""
    return next((c for c in checks if c.status is VatIdStatus.VALID and c.country == customer_country), None)


def vat_id_notes(checks: tuple[VatIdCheck, ...], customer_country: str, exemption: Exemption,
                 charged: bool) -> tuple[str, ...]:
    """What the invoice says of VAT numbers the sale could not use (nothing when one made it B2B, or when the
    customer's own status decided)."""
    if exemption is not Exemption.NONE or business_vat_id(checks, customer_country) is not None:
        return ()
    return tuple(invalid_vat_note(check, customer_country, charged) for check in checks)


@dataclass(frozen=True, slots=True)
class _Decision:
    jurisdiction: str
    name: str
    level: str
    rate_ppm: int
    reason: Taxability
    tax_type: str
    notes: tuple[str, ...] = ()


def quote(sale: Sale, rates: RateTable) -> Quote:
    _validate(sale)
    decision = _decide(sale, rates)
    lines = tuple(_line_tax(line.line_id, line.amount_micros, line.tax_code, decision, sale) for line in sale.lines)
    return Quote(currency=get_currency(sale.currency).code, tax_date=sale.tax_date, lines=lines,
                 notes=decision.notes, rounding=rounding_description(sale.currency))


def _validate(sale: Sale) -> None:
    get_currency(sale.currency)
    if not sale.lines:
        raise InvalidSale("a sale needs at least one line")
    ids = [line.line_id for line in sale.lines]
    if len(set(ids)) != len(ids):
        raise InvalidSale("line ids must be unique within a sale")
    for line in sale.lines:
        if line.amount_micros < 0:
            raise InvalidSale(f"line {line.line_id}: a taxable amount cannot be negative")
        Money(line.amount_micros, sale.currency)  # within range
        if line.tax_code not in SUPPORTED_TAX_CODES:
            raise UnsupportedTaxCode(
                f"line {line.line_id}: tax code {line.tax_code} is not one the built-in engine rates "
                f"({', '.join(sorted(SUPPORTED_TAX_CODES))}); the Stripe Tax adapter covers the others")


def _line_tax(line_id: str, amount: int, tax_code: str, decision: _Decision, sale: Sale) -> LineTax:
    if tax_code == NONTAXABLE:
        reason, rate = Taxability.NOT_SUBJECT_TO_TAX, 0
    else:
        reason, rate = decision.reason, decision.rate_ppm
    return LineTax(line_id=line_id, jurisdiction=decision.jurisdiction, jurisdiction_name=decision.name,
                   level=decision.level, rate_ppm=rate, amount_micros=amount, taxable_micros=amount,
                   tax_micros=tax_of(amount, rate, sale.currency), reason=reason, tax_type=decision.tax_type)


def _active(sale: Sale) -> list[Registration]:
    return [r for r in sale.registrations if r.active_on(sale.tax_date)]


def _decide(sale: Sale, rates: RateTable) -> _Decision:
    country = sale.customer_country
    if country in EU_MEMBER_STATES:
        return _eu(sale, rates)
    if country == "US":
        return _us(sale, rates)
    if sale.exemption is Exemption.EXEMPT:
        return _Decision(country, country, "country", 0, Taxability.CUSTOMER_EXEMPT, "none", (EXEMPT_NOTE,))
    return _Decision(country, country, "country", 0, Taxability.NOT_SUBJECT_TO_TAX, "none")


def _eu(sale: Sale, rates: RateTable) -> _Decision:
    country, seller = sale.customer_country, sale.seller_country
    name = rates.name_of(country)

    def at(jurisdiction: str, reason: Taxability, notes: tuple[str, ...] = ()) -> _Decision:
        rate = rates.rate_on(jurisdiction, sale.tax_date)
        return _Decision(jurisdiction, rate.name, "country", rate.rate_ppm, reason, "vat", notes)

    def untaxed(reason: Taxability, notes: tuple[str, ...] = ()) -> _Decision:
        rates.rate_on(country, sale.tax_date)  # a day the table does not cover is an error, even untaxed
        return _Decision(country, name, "country", 0, reason, "vat", notes)

    if sale.exemption is Exemption.EXEMPT:
        return untaxed(Taxability.CUSTOMER_EXEMPT, (EXEMPT_NOTE,))
    if sale.exemption is Exemption.REVERSE:
        return untaxed(Taxability.REVERSE_CHARGE, (REVERSE_CHARGE_NOTE,))

    active = _active(sale)
    registered_in = {r.country for r in active}
    if business_vat_id(sale.vat_ids, country) is not None:
        if country != seller:
            return untaxed(Taxability.REVERSE_CHARGE, (REVERSE_CHARGE_NOTE,))
        if country in registered_in:
            return at(country, Taxability.STANDARD_RATED)
        return untaxed(Taxability.NOT_COLLECTING)

    if country in registered_in or any(r.type in OSS_TYPES for r in active):
        decision = at(country, Taxability.STANDARD_RATED)
    elif seller in EU_MEMBER_STATES and any(
            r.type == RegistrationType.EU_SMALL_SELLER and r.country == seller for r in active):
        decision = at(seller, Taxability.STANDARD_RATED)
    else:
        decision = untaxed(Taxability.NOT_COLLECTING)
    notes = vat_id_notes(sale.vat_ids, country, sale.exemption, charged=decision.rate_ppm > 0)
    return _Decision(decision.jurisdiction, decision.name, decision.level, decision.rate_ppm, decision.reason,
                     decision.tax_type, notes)


def _us(sale: Sale, rates: RateTable) -> _Decision:
    state = (sale.customer_state or "").strip().upper()
    if not state:
        raise InvalidSale("a US customer address needs its state (two letters) for sales tax")
    jurisdiction = f"US-{state}"
    if jurisdiction not in rates:
        raise InvalidSale(f"{state} is not a US state or the District of Columbia")
    rate = rates.rate_on(jurisdiction, sale.tax_date)
    if sale.exemption is Exemption.EXEMPT:
        return _Decision(jurisdiction, rate.name, "state", 0, Taxability.CUSTOMER_EXEMPT, "sales_tax",
                         (EXEMPT_NOTE,))
    if rate.rate_ppm == 0:
        return _Decision(jurisdiction, rate.name, "state", 0, Taxability.NOT_SUBJECT_TO_TAX, "sales_tax")
    nexus = any(r.country == "US" and (r.state or "").upper() == state for r in _active(sale))
    if not nexus:
        return _Decision(jurisdiction, rate.name, "state", 0, Taxability.NOT_COLLECTING, "sales_tax")
    return _Decision(jurisdiction, rate.name, "state", rate.rate_ppm, Taxability.STANDARD_RATED, "sales_tax")
