"""Tax behind one port (`port.TaxProvider`): the built-in engine or Stripe Tax, chosen by PAYSAGA_TAX_PROVIDER."""

from __future__ import annotations

import asyncpg

from activities.tax.port import TaxConflict, TaxProvider, VatNumberChecker
from paysaga.settings import Settings

__all__ = ["TaxConflict", "TaxProvider", "VatNumberChecker", "build_tax_provider"]


def build_tax_provider(settings: Settings, pool: asyncpg.Pool, *,
                       vat_checker: VatNumberChecker | None = None) -> TaxProvider:
    """The configured engine. Both record commits and reversals through `pool` (the app role, RLS per tenant).

    `vat_checker`: an online VAT-number check (VIES); without one, numbers are checked for format and check
    digits only. Stripe Tax takes VAT numbers as given, so its adapter sends only the ones that pass the same
    checks, and both engines say in the quote's notes which numbers they could not use.
    """
    if settings.tax_provider == "stripe":
        from activities.tax.stripe_tax import StripeTaxProvider

        return StripeTaxProvider(pool, api_key=settings.stripe_api_key, api_base=settings.stripe_api_base,
                                 vat_checker=vat_checker)
    from activities.tax.builtin import BuiltinTaxProvider

    return BuiltinTaxProvider(pool, vat_checker=vat_checker)
