"""What a subscription's invoice is: its lines from the domain's billing lines (and the proration charges kept
for it), its tax from the tax port, the customer's credit applied, its due date, who sold to whom — computed in
one place for the renewal run (which writes hundreds at once) and for the preview of the next invoice (which
writes nothing), so the preview is the invoice later issued for the same inputs.

A billing line becomes an invoice line of quantity 1 at its amount (its description says the seats and the
span); the tax date of a period's invoice is the day its period starts, and it is due that day (charged) or
`days_until_due` later (sent)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from activities.invoices import customer_snapshot
from activities.tax.port import TaxProvider
from activities.tax.seller import Seller
from contracts.subscriptions import period_invoice_id
from contracts.tax import Address, TaxId, TaxLineInput, TaxQuote, TaxQuoteRequest
from domain.billing_cycle import iso
from domain.billing_line import BillingLine
from domain.invoice import Invoice, InvoiceLine, LineTax, make_line
from domain.money import Money
from domain.subscription import Collection, Subscription

SERIES = "INV"


class NotInvoiceable(Exception):
    """The invoice cannot be made now (no seller profile, a customer without an address, tax refused): the
    subscription is tried again later, the reason logged."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class PlannedInvoice:
    invoice: Invoice  # finalized (number "…" until one is taken), or a draft when collection keeps it so
    subscription_id: str
    period_start: datetime  # the subscription period it bills (the renewal key's instant)
    period_end: datetime
    collect: Collection
    price_ids: dict[str, str]
    prorations: frozenset[str]
    pending_line_ids: tuple[str, ...]
    tax_quote: TaxQuote | None
    customer_snapshot: dict[str, Any]
    seller_snapshot: dict[str, Any]
    locale: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def invoice_id(self) -> str:
        return self.invoice.invoice_id


def seller_snapshot(seller: Seller) -> dict[str, Any]:
    assert seller.profile is not None
    return {"name": seller.profile.legal_name,
            "address": seller.profile.address.model_dump(mode="json", exclude_none=True),
            "tax_ids": [t.model_dump() for t in seller.profile.tax_ids]}


def invoice_lines(invoice_id: str, lines: Sequence[BillingLine], pending: Sequence[Mapping[str, Any]],
                  tax_codes: Mapping[str, str]) -> tuple[list[InvoiceLine], dict[str, str], frozenset[str]]:
    """The invoice's lines in order: the step's lines, then the proration charges kept for this invoice. Credits
    are never invoice lines (they are credit notes on what they credit)."""
    out: list[InvoiceLine] = []
    price_ids: dict[str, str] = {}
    prorations: set[str] = set()
    sources: list[tuple[str, Money, str, int, datetime, datetime, bool]] = [
        (line.description, line.amount, line.price_id, line.quantity, line.period_start, line.period_end,
         line.proration) for line in lines if not line.is_credit]
    sources += [(p["description"], Money(p["amount_micros"], p["currency"]), p["price_id"], p["quantity"],
                 p["period_start"], p["period_end"], True) for p in pending]
    for n, (description, amount, price_id, _, start, end, proration) in enumerate(sources, start=1):
        line_id = f"li_{invoice_id.removeprefix('in_')}_{n}"
        out.append(make_line(line_id, description[:500], "1", amount.to_decimal_string(), amount.currency,
                             period_start=start.date(), period_end=end.date(),
                             tax_code=tax_codes.get(price_id, "txcd_10000000")))
        price_ids[line_id] = price_id
        if proration:
            prorations.add(line_id)
    return out, price_ids, frozenset(prorations)


def due_date(tax_day: date, collection_method: str, days_until_due: int | None) -> date:
    return tax_day + timedelta(days=days_until_due or 0) if collection_method == "send_invoice" else tax_day


async def plan(*, tax: TaxProvider, seller: Seller, customer: Mapping[str, Any], subscription: Subscription,
               lines: Sequence[BillingLine], collect: Collection, pending: Sequence[Mapping[str, Any]],
               tax_codes: Mapping[str, str], collection_method: str, days_until_due: int | None,
               credit_available: Money | None, invoice_id: str | None = None) -> PlannedInvoice:
    """The invoice of `subscription`'s current period with `lines` (a renewal's, a trial's conversion, ...)."""
    s = subscription
    period = s.current_period
    invoice_id = invoice_id or period_invoice_id(s.subscription_id, period.start)
    items, price_ids, prorations = invoice_lines(invoice_id, lines, pending, tax_codes)
    if seller.profile is None:
        raise NotInvoiceable("seller-profile-required", "the tenant has no seller profile")
    buyer = customer_snapshot(customer)
    if buyer["address"] is None:
        raise NotInvoiceable("customer-address-required", f"customer {s.customer_id} has no address")
    invoice = Invoice(invoice_id=invoice_id, tenant_id=s.tenant_id, customer_id=s.customer_id, currency=s.currency,
                      collection_method=collection_method,
                      days_until_due=days_until_due if collection_method == "send_invoice" else None)
    for line in items:
        invoice = invoice.add_line(line)
    metadata = {"subscription_period_start": iso(period.start)}
    common = dict(subscription_id=s.subscription_id, period_start=period.start, period_end=period.end,
                  collect=collect, price_ids=price_ids, prorations=prorations,
                  pending_line_ids=tuple(p["line_id"] for p in pending), customer_snapshot=buyer,
                  seller_snapshot=seller_snapshot(seller), locale=customer["preferred_locale"] or "en_US",
                  metadata=metadata)
    if collect is Collection.KEEP_AS_DRAFT:
        return PlannedInvoice(invoice=invoice, tax_quote=None, **common)  # type: ignore[arg-type]
    tax_day = period.start.date()
    try:
        quote = await tax.quote(TaxQuoteRequest(
            tenant_id=s.tenant_id, reference=invoice_id, currency=s.currency, tax_date=tax_day,
            seller=seller.profile.address, registrations=seller.registrations,
            customer=Address.model_validate(buyer["address"]),
            customer_tax_ids=[TaxId.model_validate(t) for t in buyer["tax_ids"]],
            customer_exempt=buyer["tax_exempt"],
            lines=[TaxLineInput(line_id=line.line_id, amount_micros=line.amount.micros, tax_code=line.tax_code)
                   for line in items]))
    except ValueError as exc:  # TaxError: the engine refuses (an unsupported tax code, an invalid sale)
        raise NotInvoiceable("tax-refused", str(exc)) from exc
    taxes: dict[str, list[LineTax]] = {}
    for q in quote.lines:
        taxes.setdefault(q.line_id, []).append(LineTax(q.jurisdiction, q.jurisdiction_name, q.rate_ppm,
                                                       q.taxable_micros, q.tax_micros, q.taxability_reason,
                                                       q.tax_type))
    credit = credit_available if collect in (Collection.CHARGE, Collection.OPEN_WITHOUT_CHARGE) else None
    opened = invoice.finalize("…", taxes, due_date(tax_day, collection_method, days_until_due),
                              credit_available=credit)
    return PlannedInvoice(invoice=opened, tax_quote=quote, **common)  # type: ignore[arg-type]


async def customers_of(conn: asyncpg.Connection, customer_ids: Sequence[str]) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch("SELECT * FROM paysaga.customers WHERE customer_id = ANY($1::text[])",
                            list(set(customer_ids)))
    return {r["customer_id"]: r for r in rows}
