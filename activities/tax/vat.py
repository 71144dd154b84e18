"""The customer's EU VAT numbers, checked: format and check digits always, VIES when a checker is configured."""

from __future__ import annotations

import structlog

from activities.tax.port import VatNumberChecker
from contracts.tax import TaxId
from domain.tax import VatIdCheck, VatIdStatus
from domain.tax.vat_ids import check_format, merge_online

log = structlog.get_logger("paysaga.tax")

EU_VAT = "eu_vat"


async def check_vat_ids(tax_ids: list[TaxId], checker: VatNumberChecker | None) -> tuple[VatIdCheck, ...]:
    checks = []
    for tax_id in tax_ids:
        if tax_id.type != EU_VAT:
            continue
        check = check_format(tax_id.value)
        if checker is not None and check.status is VatIdStatus.VALID and check.country is not None:
            registered: bool | None
            try:
                registered = await checker.check(check.country, check.number[2:])
            except Exception as exc:  # an unreachable registry must not stop invoicing: the offline check stands
                log.warning("tax.vies.unavailable", country=check.country, error=str(exc))
                registered = None
            if registered is None:
                log.info("tax.vies.unverified", country=check.country)
            check = merge_online(check, registered)
        checks.append(check)
    return tuple(checks)
