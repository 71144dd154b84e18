"""EU VAT numbers: format and check digits, offline, with python-stdnum (one module per member state).

Whether a well-formed number is actually registered is VIES's answer, an online call the adapter makes when an
online checker is configured (`merge_online`); the rules only see the outcome.
"""

from __future__ import annotations

from stdnum.eu import vat
from stdnum.exceptions import ValidationError
from stdnum.util import clean

from domain.tax.model import EU_MEMBER_STATES, VatIdCheck, VatIdStatus

# VAT numbers use the EU's code for Greece; addresses use ISO's.
_PREFIX_TO_COUNTRY = {"EL": "GR"}
_COUNTRY_TO_PREFIX = {"GR": "EL"}


def vat_prefix(country: str) -> str:
    return _COUNTRY_TO_PREFIX.get(country, country)


def check_format(value: str) -> VatIdCheck:
    """Format and check digits of an EU VAT number written with its prefix ("DE136695976", "fr 40 303…")."""
    try:
        number = vat.compact(value)
    except ValidationError:  # no member state's prefix at all: keep it as written, minus separators
        number = clean(value, " -./,").upper().strip()
    prefix = number[:2]
    country = _PREFIX_TO_COUNTRY.get(prefix, prefix)
    # stdnum also knows XI (Northern Ireland, goods only) and the OSS numbers (EU…): neither identifies a
    # business customer for services, so only the 27 member states' own prefixes count.
    if country not in EU_MEMBER_STATES or prefix == "GR":
        return VatIdCheck(number=number, country=None, status=VatIdStatus.INVALID)
    status = VatIdStatus.VALID if vat.is_valid(number) else VatIdStatus.INVALID
    return VatIdCheck(number=number, country=country, status=status)


def merge_online(check: VatIdCheck, registered: bool | None) -> VatIdCheck:
    """Fold VIES's answer into a format check: False demotes a valid number; None (VIES unavailable) keeps the
    offline verdict, since a member state's registry being down says nothing about the customer."""
    if check.status is VatIdStatus.VALID and registered is False:
        return VatIdCheck(number=check.number, country=check.country, status=VatIdStatus.NOT_REGISTERED)
    return check
