"""The built-in engine: the rules of `domain/tax` over the rate tables in the repository, recorded in PostgreSQL.

The quote depends only on the request (and the rate table): the same request always gets the same quote, with
the same id, so a workflow may re-quote freely. The seller's registrations travel in the request
(`activities.tax.seller.load_seller` reads them with the seller's address for whoever builds it).
"""

from __future__ import annotations

import asyncpg

from activities.tax.ledger import ReversalPlan, TaxLedger, stable_id
from activities.tax.port import TaxConflict, VatNumberChecker
from activities.tax.rates import default_rate_table
from activities.tax.vat import check_vat_ids
from contracts.tax import (
    TaxLineQuote,
    TaxQuote,
    TaxQuoteRequest,
    TaxReversal,
    TaxReversalRequest,
    TaxTransaction,
)
from domain.tax import Exemption, Line, LineTax, RateTable, Registration, Sale, VatIdCheck, quote


class BuiltinTaxProvider:
    name = "builtin"

    def __init__(self, pool: asyncpg.Pool, *, rates: RateTable | None = None,
                 vat_checker: VatNumberChecker | None = None) -> None:
        self._ledger = TaxLedger(pool)
        self._rates = rates or default_rate_table()
        self._vat_checker = vat_checker  # None: VAT numbers are checked offline only (format and check digits)

    async def aclose(self) -> None:
        return None

    async def quote(self, req: TaxQuoteRequest) -> TaxQuote:
        checks = await check_vat_ids(req.customer_tax_ids, self._vat_checker)
        result = quote(to_sale(req, checks), self._rates)
        return TaxQuote(
            quote_id=stable_id("taxq", req.tenant_id, req.model_dump_json(), *(c.status for c in checks)),
            provider=self.name, tenant_id=req.tenant_id, reference=req.reference, currency=result.currency,
            tax_date=result.tax_date, lines=[to_line_quote(line) for line in result.lines],
            tax_micros=result.tax_micros, rounding=result.rounding, notes=list(result.notes),
        )

    async def commit(self, quote: TaxQuote) -> TaxTransaction:
        if quote.provider != self.name:
            raise TaxConflict(f"quote {quote.quote_id} comes from {quote.provider}, not {self.name}")
        return await self._ledger.commit(quote, stable_id("taxtxn", quote.tenant_id, quote.reference))

    async def reverse(self, req: TaxReversalRequest) -> TaxReversal:
        async def recorded_here(plan: ReversalPlan) -> str:
            return stable_id("taxrev", req.tenant_id, req.reference)

        return await self._ledger.reverse(req, self.name, recorded_here)


def to_sale(req: TaxQuoteRequest, vat_ids: tuple[VatIdCheck, ...]) -> Sale:
    return Sale(
        currency=req.currency, tax_date=req.tax_date, seller_country=req.seller.country,
        registrations=tuple(Registration(country=r.country, state=r.state, type=r.type, active_from=r.active_from,
                                         active_until=r.active_until) for r in req.registrations),
        customer_country=req.customer.country, customer_state=req.customer.state, vat_ids=vat_ids,
        exemption=Exemption(req.customer_exempt),
        lines=tuple(Line(line_id=x.line_id, amount_micros=x.amount_micros, tax_code=x.tax_code) for x in req.lines),
    )


def to_line_quote(line: LineTax) -> TaxLineQuote:
    return TaxLineQuote(
        line_id=line.line_id, jurisdiction=line.jurisdiction, jurisdiction_name=line.jurisdiction_name,
        jurisdiction_level=line.level, rate_ppm=line.rate_ppm, amount_micros=line.amount_micros,
        taxable_micros=line.taxable_micros, tax_micros=line.tax_micros, taxability_reason=line.reason.value,
        tax_type=line.tax_type,
    )
