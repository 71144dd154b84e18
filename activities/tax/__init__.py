"""Tax behind one port (`port.TaxProvider`): the built-in engine, chosen by PAYSAGA_TAX_PROVIDER."""

from __future__ import annotations

import asyncpg

from activities.tax.port import TaxConflict, TaxProvider, VatNumberChecker
from paysaga.settings import Settings

__all__ = ["TaxConflict", "TaxProvider", "VatNumberChecker", "build_tax_provider"]


def build_tax_provider(settings: Settings, pool: asyncpg.Pool, *,
                       vat_checker: VatNumberChecker | None = None) -> TaxProvider:
    """The configured engine. It records commits and reversals through `pool` (the app role, RLS per tenant).

    `vat_checker`: an online VAT-number check (VIES); without one, numbers are checked for format and check
    digits only, and the quote's notes say which numbers could not be used.
    """
    from activities.tax.builtin import BuiltinTaxProvider

    return BuiltinTaxProvider(pool, vat_checker=vat_checker)
