"""Stripe Tax behind the tax port, with the official SDK's async API (`StripeClient.v1.tax.*_async`).

- quote → `POST /v1/tax/calculations` (line items and their tax breakdown expanded). Stripe decides with the
  account's own registrations and head office (its Tax settings): the request's `seller` and `registrations`
  are not sent. Stripe does not validate tax ids, so only EU VAT numbers that pass our offline check (and VIES,
  when a checker is configured) are sent; the others are named in the quote's notes, as the built-in engine does.
- commit → `POST /v1/tax/transactions/create_from_calculation`, idempotency key per tenant and reference.
- reverse → `POST /v1/tax/transactions/create_reversal`: `mode=full` for a first reversal of everything, else
  `mode=partial` with each line's amount and tax, computed by the domain's cumulative rounding (so Stripe's
  totals and ours agree per line to the minor unit).

Amounts cross in the currency's minor units: a line that is not a whole number of them is refused (Stripe could
not be told it exactly). Stripe's `tax_date` must lie within 31 days of today. Errors follow the payment
adapter's policy: validation errors are `ValueError`s, outages `ProviderUnavailable` (retryable). Stripe's
idempotency keys live 24 h; past that, our own record of the commit is what keeps a commit from repeating.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import asyncpg
import stripe
import structlog

from activities.providers.stripe_provider import _translate
from activities.tax.ledger import ReversalPlan, TaxLedger
from activities.tax.port import TaxConflict, VatNumberChecker
from activities.tax.vat import EU_VAT, check_vat_ids
from contracts.tax import (
    TaxLineQuote,
    TaxQuote,
    TaxQuoteRequest,
    TaxReversal,
    TaxReversalRequest,
    TaxTransaction,
)
from domain.money import Money, RoundingMode
from domain.tax import REVERSE_CHARGE_NOTE, Exemption, TaxError, VatIdCheck, VatIdStatus
from domain.tax.rules import EXEMPT_NOTE, vat_id_notes

log = structlog.get_logger("paysaga.tax")

_OVERRIDE = {"none": "none", "exempt": "customer_exempt", "reverse": "reverse_charge"}
# Stripe's taxability reasons our vocabulary lacks, mapped to the nearest (the entry's rate and taxable amount
# keep the detail): a portion exempt or a reduced basis is still a taxed entry.
_REASONS = {
    "standard_rated": "standard_rated", "reduced_rated": "reduced_rated", "reverse_charge": "reverse_charge",
    "not_collecting": "not_collecting", "customer_exempt": "customer_exempt",
    "not_subject_to_tax": "not_subject_to_tax", "zero_rated": "zero_rated", "product_exempt": "product_exempt",
    "product_exempt_holiday": "product_exempt", "not_supported": "not_subject_to_tax",
    "portion_standard_rated": "standard_rated", "portion_reduced_rated": "reduced_rated",
    "portion_product_exempt": "standard_rated", "proportionally_rated": "standard_rated",
    "taxable_basis_reduced": "standard_rated",
}
ROUNDING = "Stripe Tax: per line and jurisdiction, to the minor unit of the currency"


def stripe_reference(tenant_id: str, reference: str) -> str:
    # Stripe wants transaction references unique across the account, which all tenants may share.
    return f"{tenant_id}:{reference}"


def to_minor(micros: int, currency: str, what: str) -> int:
    money = Money(micros, currency)
    minor = money.to_minor_units(RoundingMode.DOWN)
    if Money.from_minor_units(minor, currency) != money:
        raise TaxError(f"{what}: {money} is not a whole number of minor units, which is all Stripe Tax takes")
    return minor


def percent_ppm(text: str | None) -> int:
    """Stripe's `percentage_decimal` ("9.875") as parts per million, rounded half-even past four decimals."""
    if not text:
        return 0
    return int(Decimal(text).scaleb(4).to_integral_value(rounding=ROUND_HALF_EVEN))


def tax_date_timestamp(day: date) -> int:
    # Noon UTC is the same calendar day from UTC-11 to UTC+11: the tax point's day wherever the customer is.
    return int(datetime.combine(day, time(12, 0), tzinfo=UTC).timestamp())


def calculation_params(req: TaxQuoteRequest, checks: tuple[VatIdCheck, ...]) -> dict[str, Any]:
    usable = [c.number for c in checks if c.status is VatIdStatus.VALID and c.country == req.customer.country]
    tax_ids = [{"type": EU_VAT, "value": number} for number in usable]
    tax_ids += [{"type": t.type, "value": t.value} for t in req.customer_tax_ids if t.type != EU_VAT]
    address = {k: v for k, v in req.customer.model_dump().items() if v}
    details: dict[str, Any] = {"address": address, "address_source": "billing",
                               "taxability_override": _OVERRIDE[req.customer_exempt]}
    if tax_ids:
        details["tax_ids"] = tax_ids
    return {
        "currency": req.currency.lower(),
        "customer_details": details,
        "line_items": [{"amount": to_minor(line.amount_micros, req.currency, f"line {line.line_id}"),
                        "reference": line.line_id, "tax_code": line.tax_code, "tax_behavior": "exclusive"}
                       for line in req.lines],
        "tax_date": tax_date_timestamp(req.tax_date),
        "expand": ["line_items.data.tax_breakdown"],
    }


def _reason(value: str, tax_micros: int) -> str:
    if value in _REASONS:
        return _REASONS[value]
    log.warning("tax.stripe.unknown_taxability_reason", reason=value)
    return "standard_rated" if tax_micros else "not_subject_to_tax"


def line_quotes(item: dict[str, Any], currency: str, customer_country: str) -> list[TaxLineQuote]:
    """One calculation line item → one entry per jurisdiction of its tax breakdown."""

    def micros(minor: int) -> int:
        return Money.from_minor_units(minor, currency).micros

    line_id, amount = item["reference"], micros(item["amount"])
    out = []
    for b in item.get("tax_breakdown") or []:
        j, details = b["jurisdiction"], b.get("tax_rate_details") or {}
        tax = micros(b["amount"])
        out.append(TaxLineQuote(
            line_id=line_id, jurisdiction=j["country"] + (f"-{j['state']}" if j.get("state") else ""),
            jurisdiction_name=j.get("display_name") or j["country"], jurisdiction_level=j.get("level") or "country",
            rate_ppm=percent_ppm(details.get("percentage_decimal")), amount_micros=amount,
            taxable_micros=micros(b["taxable_amount"]), tax_micros=tax,
            taxability_reason=_reason(b["taxability_reason"], tax),  # type: ignore[arg-type]
            tax_type=details.get("tax_type") or "none",
        ))
    if not out:  # no breakdown at all: nothing is taxed where the customer is
        out.append(TaxLineQuote(line_id=line_id, jurisdiction=customer_country, jurisdiction_name=customer_country,
                                rate_ppm=0, amount_micros=amount, taxable_micros=0, tax_micros=micros(0),
                                taxability_reason="not_subject_to_tax", tax_type="none"))
    if sum(e.tax_micros for e in out) != micros(item["amount_tax"]):
        raise TaxError(f"Stripe's breakdown of line {line_id} does not add up to its tax")
    return out


def to_quote(req: TaxQuoteRequest, calculation: dict[str, Any], items: list[dict[str, Any]],
             checks: tuple[VatIdCheck, ...]) -> TaxQuote:
    by_reference = {item["reference"]: item for item in items}
    missing = [line.line_id for line in req.lines if line.line_id not in by_reference]
    if missing:
        raise TaxError(f"Stripe's calculation {calculation['id']} lacks lines {', '.join(missing)}")
    lines = [e for line in req.lines
             for e in line_quotes(by_reference[line.line_id], req.currency, req.customer.country)]
    tax = sum(line.tax_micros for line in lines)
    if tax != Money.from_minor_units(calculation["tax_amount_exclusive"], req.currency).micros:
        raise TaxError(f"Stripe's calculation {calculation['id']}: its lines do not add up to its tax")
    reasons = {line.taxability_reason for line in lines}
    notes = list(vat_id_notes(checks, req.customer.country, Exemption(req.customer_exempt), charged=tax > 0))
    if "reverse_charge" in reasons:
        notes.append(REVERSE_CHARGE_NOTE)
    if "customer_exempt" in reasons:
        notes.append(EXEMPT_NOTE)
    return TaxQuote(quote_id=calculation["id"], provider="stripe", tenant_id=req.tenant_id, reference=req.reference,
                    currency=req.currency.upper(), tax_date=req.tax_date, lines=lines, tax_micros=tax,
                    rounding=ROUNDING, notes=notes)


def reversal_params(plan: ReversalPlan) -> dict[str, Any]:
    req, txn = plan.request, plan.transaction
    params: dict[str, Any] = {
        "original_transaction": txn.transaction_id,
        "reference": stripe_reference(req.tenant_id, req.reference),
        "metadata": {"tenant_id": req.tenant_id, "reference": req.reference},
    }
    if plan.reverses_everything:
        params["mode"] = "full"
        return params
    items = []
    for line_id, credit in plan.credits.items():
        original = plan.provider_line_ids.get(line_id)
        if original is None:
            raise TaxError(f"Stripe's line item for line {line_id} of {txn.reference} is not on record")
        tax = sum(e.tax_micros for e in plan.lines if e.line_id == line_id)
        items.append({"original_line_item": original, "reference": line_id,
                      "amount": -to_minor(credit, txn.currency, f"credit of line {line_id}"),
                      "amount_tax": -to_minor(tax, txn.currency, f"tax credit of line {line_id}")})
    params["mode"] = "partial"
    params["line_items"] = items
    return params


class StripeTaxProvider:
    name = "stripe"

    def __init__(self, pool: asyncpg.Pool, *, api_key: str, api_base: str | None = None, timeout_s: float = 30.0,
                 vat_checker: VatNumberChecker | None = None) -> None:
        self._http = stripe.HTTPXClient(timeout=timeout_s)  # async-only httpx client; no blocking calls
        self._client = stripe.StripeClient(
            api_key, base_addresses={"api": api_base} if api_base else None, http_client=self._http,
            max_network_retries=0,  # Temporal's retry policy is the only one
        )
        self._tax = self._client.v1.tax
        self._ledger = TaxLedger(pool)
        self._vat_checker = vat_checker

    async def aclose(self) -> None:
        await self._http.close_async()

    async def quote(self, req: TaxQuoteRequest) -> TaxQuote:
        checks = await check_vat_ids(req.customer_tax_ids, self._vat_checker)
        params = calculation_params(req, checks)
        try:
            calculation = (await self._tax.calculations.create_async(params=params)).to_dict()  # type: ignore[arg-type]
            items = await self._calculation_items(calculation)
        except stripe.StripeError as err:
            _translate(err)
        return to_quote(req, calculation, items, checks)

    async def commit(self, quote: TaxQuote) -> TaxTransaction:
        if quote.provider != self.name:
            raise TaxConflict(f"quote {quote.quote_id} comes from {quote.provider}, not {self.name}")
        done = await self._ledger.committed(quote.tenant_id, quote.reference)
        if done is not None:  # recorded already: the ledger checks it is this quote's, Stripe is not asked again
            return await self._ledger.commit(quote, done.transaction_id)
        params = {"calculation": quote.quote_id, "reference": stripe_reference(quote.tenant_id, quote.reference),
                  "metadata": {"tenant_id": quote.tenant_id, "reference": quote.reference},
                  "expand": ["line_items"]}
        try:
            txn = (await self._tax.transactions.create_from_calculation_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": f"tax-commit:{quote.tenant_id}:{quote.reference}"},
            )).to_dict()
            items = await self._transaction_items(txn)
        except stripe.StripeError as err:
            _translate(err)
        committed = sum(item["amount_tax"] for item in items)
        if Money.from_minor_units(committed, quote.currency).micros != quote.tax_micros:
            raise TaxError(f"Stripe committed {committed} minor units of tax for {quote.reference}, the quote "
                           f"says {quote.tax_micros} micros")
        return await self._ledger.commit(quote, txn["id"], {item["reference"]: item["id"] for item in items})

    async def reverse(self, req: TaxReversalRequest) -> TaxReversal:
        async def tell_stripe(plan: ReversalPlan) -> str:
            try:
                reversal = await self._tax.transactions.create_reversal_async(
                    params=reversal_params(plan),  # type: ignore[arg-type]
                    options={"idempotency_key": f"tax-reverse:{req.tenant_id}:{req.reference}"},
                )
            except stripe.StripeError as err:
                _translate(err)
            return str(reversal.id)

        return await self._ledger.reverse(req, self.name, tell_stripe)

    # Expanded lists carry a first page only; the rest is fetched with the list endpoints.
    async def _calculation_items(self, calculation: dict[str, Any]) -> list[dict[str, Any]]:
        return await self._pages(calculation.get("line_items"), lambda params: self._tax.calculations.line_items
                                 .list_async(calculation["id"], params={**params, "expand": ["data.tax_breakdown"]}))

    async def _transaction_items(self, txn: dict[str, Any]) -> list[dict[str, Any]]:
        return await self._pages(txn.get("line_items"),
                                 lambda params: self._tax.transactions.line_items.list_async(txn["id"], params=params))

    @staticmethod
    async def _pages(first: dict[str, Any] | None, fetch: Any) -> list[dict[str, Any]]:
        listing = first if first is not None else {"data": [], "has_more": True}
        items = list(listing.get("data") or [])
        while listing.get("has_more"):
            params: dict[str, Any] = {"limit": 100}
            if items:
                params["starting_after"] = items[-1]["id"]
            listing = (await fetch(params)).to_dict()
            items.extend(listing.get("data") or [])
        return items
