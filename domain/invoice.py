"""Invoices, with Stripe's lifecycle, and credit notes with Stripe's rules.

    draft ──finalize──► open ──► paid
                         │  ╲──► void
                         └──► uncollectible ──► paid | void

A draft's lines may change; finalizing gives it a number (gapless per tenant and series), its tax and its due
date, and from then on nothing changes but through a payment, a credit note, void or uncollectible.

Amounts: a line's amount is quantity * unit amount (both decimal strings; the unit amount may carry more digits
than the currency's minor unit), rounded half-even to the minor unit; its tax comes from the tax engine, per line,
rounded likewise. So, to the micro-unit:

    subtotal = Σ line amounts            tax = Σ line taxes            total = subtotal + tax
    amount_due = total - credited before payment - credit applied      amount_remaining = amount_due - amount_paid
    (that is: amount_remaining = total - paid - credited - credit applied)

Credit applied: at finalization the customer's credit balance (what post-payment credit notes credited to it,
e.g. unused time of a subscription) pays for as much of the invoice as it covers; an invoice it covers whole is
paid at once.

Credit notes (on open, uncollectible or paid invoices), by lines or by an amount:
- before payment, a credit note reduces what is due; at most what remains, and an invoice credited to nothing
  is paid;
- after payment, its total must equal refund + credit to the customer's balance + out of band, and all credit
  notes together at most what was paid.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from enum import StrEnum
from functools import cached_property

from domain.money import Money, RoundingMode, get_currency
from domain.refusal import Refused


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"

    @property
    def finalized(self) -> bool:
        return self is not InvoiceStatus.DRAFT


S = InvoiceStatus
COLLECTABLE = frozenset({S.OPEN, S.UNCOLLECTIBLE})  # what can still be paid (and so charged, and dunned)
# action → the states it is allowed from. Every answer about an invoice lists the actions its state allows.
ACTIONS: dict[str, frozenset[InvoiceStatus]] = {
    "add_line": frozenset({S.DRAFT}),
    "remove_line": frozenset({S.DRAFT}),
    "finalize": frozenset({S.DRAFT}),
    "pay": COLLECTABLE,
    "mark_paid_out_of_band": COLLECTABLE,
    "void": frozenset({S.OPEN, S.UNCOLLECTIBLE}),
    "mark_uncollectible": frozenset({S.OPEN}),
    "create_credit_note": frozenset({S.OPEN, S.UNCOLLECTIBLE, S.PAID}),
}
COLLECTION_METHODS = ("charge_automatically", "send_invoice")
CREDIT_REASONS = ("duplicate", "fraudulent", "order_change", "product_unsatisfactory")
MAX_UNIT_DECIMALS = 12  # Stripe's unit_amount_decimal carries up to 12 decimal places
MAX_LINE_MICROS = 10**12 * 1_000_000


class InvoiceRefused(Refused):
    """A rule refused the change; `code` says which (stable, e.g. `invoice-action-not-allowed`)."""


def allowed_actions(status: InvoiceStatus) -> list[str]:
    return [action for action, states in ACTIONS.items() if status in states]


def require(status: InvoiceStatus, action: str) -> None:
    if status not in ACTIONS[action]:
        raise InvoiceRefused("invoice-action-not-allowed",
                             f"An invoice that is {status} cannot {action.replace('_', ' ')} "
                             f"(allowed: {', '.join(allowed_actions(status)) or 'nothing'}).")


_DECIMAL_RE = re.compile(r"([0-9]{1,12})(?:\.([0-9]+))?")


def parse_decimal(text: str, what: str, *, places: int) -> Decimal:
    """A non-negative decimal string as sent: digits, optionally a point and at most `places` decimals; no sign,
    exponent or separators (inputs are machine-made and anything loose is likelier a bug than a convenience)."""
    match = _DECIMAL_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvoiceRefused("invalid-amount", f'{what} must be a decimal string such as "12.50"')
    if len(match.group(2) or "") > places:
        raise InvoiceRefused("invalid-amount", f"{what} has more than {places} decimal places")
    return Decimal(text)


def line_amount(quantity: Decimal, unit_amount: Decimal, currency: str) -> Money:
    """quantity * unit amount, in micro-units, rounded half-even to the currency's minor unit."""
    unit = get_currency(currency).micros_per_minor
    with localcontext() as ctx:
        ctx.prec = 80  # enough digits that the product and quotient are exact before the one rounding
        exact = quantity * unit_amount * 1_000_000 / unit  # in minor units
        minor = int(exact.to_integral_value(rounding=ROUND_HALF_EVEN))
    if abs(minor * unit) > MAX_LINE_MICROS:
        raise InvoiceRefused("invalid-amount", "a line amount is at most 10^12 of the currency")
    return Money(minor * unit, currency)


@dataclass(frozen=True)
class LineTax:
    jurisdiction: str
    jurisdiction_name: str
    rate_ppm: int
    taxable_micros: int
    tax_micros: int
    taxability_reason: str
    tax_type: str = "vat"


@dataclass(frozen=True)
class InvoiceLine:
    line_id: str
    description: str
    quantity: str
    unit_amount: str
    amount: Money
    period_start: date | None = None
    period_end: date | None = None
    tax_code: str = "txcd_10000000"
    taxes: tuple[LineTax, ...] = ()

    @cached_property  # frozen: computed once (a renewal batch asks each line many times)
    def tax(self) -> Money:
        return Money(sum(t.tax_micros for t in self.taxes), self.amount.currency)

    @property
    def gross(self) -> Money:
        return self.amount + self.tax


def make_line(line_id: str, description: str, quantity: str, unit_amount: str, currency: str, *,
              period_start: date | None = None, period_end: date | None = None,
              tax_code: str = "txcd_10000000") -> InvoiceLine:
    q = parse_decimal(quantity, "quantity", places=6)
    if q <= 0:
        raise InvoiceRefused("invalid-quantity", "quantity must be greater than zero")
    u = parse_decimal(unit_amount, "unit_amount", places=MAX_UNIT_DECIMALS)
    if period_start and period_end and period_end < period_start:
        raise InvoiceRefused("invalid-period", "a period ends on or after its start")
    return InvoiceLine(line_id, description, str(q), str(u), line_amount(q, u, currency), period_start, period_end,
                       tax_code)


@dataclass(frozen=True)
class CreditLine:
    """What a credit note takes off one invoice line: its amount (tax excluded) and, per jurisdiction, the tax
    given back with it."""

    line_id: str
    amount: Money
    taxes: tuple[tuple[str, int], ...] = ()  # (jurisdiction, tax micros)

    @property
    def tax(self) -> Money:
        return Money(sum(micros for _, micros in self.taxes), self.amount.currency)

    @property
    def total(self) -> Money:
        return self.amount + self.tax


@dataclass(frozen=True)
class Settlement:
    """How a credit note on a paid invoice is given back."""

    refund: Money
    credit: Money  # to the customer's credit balance
    out_of_band: Money

    @property
    def total(self) -> Money:
        return self.refund + self.credit + self.out_of_band


@dataclass(frozen=True)
class CreditNote:
    credit_note_id: str
    invoice_id: str
    reason: str
    lines: tuple[CreditLine, ...]
    before_payment: bool  # reduces what is due, or is given back (settlement)
    settlement: Settlement | None = None
    memo: str = ""

    @property
    def amount(self) -> Money:
        return sum((line.amount for line in self.lines), Money.zero(self.lines[0].amount.currency))

    @property
    def tax(self) -> Money:
        return sum((line.tax for line in self.lines), Money.zero(self.lines[0].amount.currency))

    @property
    def total(self) -> Money:
        return self.amount + self.tax


@dataclass(frozen=True)
class Invoice:
    invoice_id: str
    tenant_id: str
    customer_id: str
    currency: str
    status: InvoiceStatus = S.DRAFT
    lines: tuple[InvoiceLine, ...] = ()
    collection_method: str = "charge_automatically"
    days_until_due: int | None = None
    due_date: date | None = None
    number: str | None = None
    amount_paid: Money | None = None
    credit_notes: tuple[CreditNote, ...] = field(default=())
    credit_applied: Money | None = None  # from the customer's credit balance, at finalization

    def __post_init__(self) -> None:
        if self.amount_paid is None:
            object.__setattr__(self, "amount_paid", Money.zero(self.currency))
        if self.credit_applied is None:
            object.__setattr__(self, "credit_applied", Money.zero(self.currency))

    # --- totals (derived, never stored apart from the lines; the invoice is frozen, so each is summed once) ----
    @cached_property
    def subtotal(self) -> Money:
        return sum((line.amount for line in self.lines), Money.zero(self.currency))

    @cached_property
    def tax(self) -> Money:
        return sum((line.tax for line in self.lines), Money.zero(self.currency))

    @cached_property
    def total(self) -> Money:
        return self.subtotal + self.tax

    @cached_property
    def credited_before_payment(self) -> Money:
        return sum((cn.total for cn in self.credit_notes if cn.before_payment), Money.zero(self.currency))

    @cached_property
    def credited_after_payment(self) -> Money:
        return sum((cn.total for cn in self.credit_notes if not cn.before_payment), Money.zero(self.currency))

    @cached_property
    def amount_due(self) -> Money:
        assert self.credit_applied is not None
        return self.total - self.credited_before_payment - self.credit_applied

    @cached_property
    def amount_remaining(self) -> Money:
        assert self.amount_paid is not None
        return self.amount_due - self.amount_paid

    @property
    def actions(self) -> list[str]:
        return allowed_actions(self.status)

    def credited_on(self, line_id: str) -> tuple[Money, Money]:
        """(amount, tax) credit notes already took off a line."""
        zero = Money.zero(self.currency)
        lines = [cl for cn in self.credit_notes for cl in cn.lines if cl.line_id == line_id]
        return sum((cl.amount for cl in lines), zero), sum((cl.tax for cl in lines), zero)

    # --- drafts ---------------------------------------------------------------------------------------------
    def add_line(self, line: InvoiceLine) -> Invoice:
        require(self.status, "add_line")
        if line.amount.currency != self.currency:
            raise InvoiceRefused("currency-mismatch", f"this invoice is in {self.currency}")
        if any(existing.line_id == line.line_id for existing in self.lines):
            raise InvoiceRefused("duplicate-line", f"line {line.line_id} is already on the invoice")
        return replace(self, lines=(*self.lines, line))

    def remove_line(self, line_id: str) -> Invoice:
        require(self.status, "remove_line")
        kept = tuple(line for line in self.lines if line.line_id != line_id)
        if len(kept) == len(self.lines):
            raise InvoiceRefused("line-not-found", f"no line {line_id} on the invoice")
        return replace(self, lines=kept)

    def finalize(self, number: str, taxes: dict[str, Sequence[LineTax]], due_date: date,
                 credit_available: Money | None = None) -> Invoice:
        """Open the invoice: its number, each line's tax (by line id), its due date, and as much of the customer's
        ``credit_available`` (their credit balance) as the total takes. Nothing else changes again but through a
        payment, a credit note, void or uncollectible."""
        require(self.status, "finalize")
        if not self.lines:
            raise InvoiceRefused("invoice-empty", "an invoice needs at least one line to be finalized")
        if set(taxes) - {line.line_id for line in self.lines}:
            raise InvoiceRefused("invalid-tax", "tax was quoted for lines the invoice does not have")
        lines = tuple(replace(line, taxes=tuple(taxes.get(line.line_id, ()))) for line in self.lines)
        for line in lines:
            if any(not 0 <= t.taxable_micros <= line.amount.micros or t.tax_micros < 0 for t in line.taxes):
                raise InvoiceRefused("invalid-tax", f"the tax of line {line.line_id} is not on its amount")
        opened = replace(self, status=S.OPEN, number=number, lines=lines, due_date=due_date)
        if credit_available is not None:
            if credit_available.currency != self.currency or credit_available.is_negative():
                raise InvoiceRefused("invalid-credit", f"the credit applied is a {self.currency} amount >= 0")
            opened = replace(opened, credit_applied=min(credit_available, opened.total))
        return opened._paid_if_settled()

    # --- after finalization ---------------------------------------------------------------------------------
    def pay(self, amount: Money) -> Invoice:
        """A payment of what remains (by card through a payment, or out of band): the invoice is paid."""
        require(self.status, "pay")
        if amount != self.amount_remaining:
            raise InvoiceRefused("amount-mismatch",
                                 f"a payment settles what remains ({self.amount_remaining.to_decimal_string()} "
                                 f"{self.currency}), not {amount.to_decimal_string()}")
        assert self.amount_paid is not None
        return replace(self, status=S.PAID, amount_paid=self.amount_paid + amount)

    def void(self) -> Invoice:
        require(self.status, "void")
        return replace(self, status=S.VOID)

    def mark_uncollectible(self) -> Invoice:
        require(self.status, "mark_uncollectible")
        return replace(self, status=S.UNCOLLECTIBLE)

    def credit(self, note: CreditNote) -> Invoice:
        """Apply a credit note planned by `plan_credit_note` (the rules are checked again here)."""
        require(self.status, "create_credit_note")
        _check_credit(self, note)
        return replace(self, credit_notes=(*self.credit_notes, note))._paid_if_settled()

    def _paid_if_settled(self) -> Invoice:
        """An open invoice with nothing left to pay (a zero total, or credited to nothing) is paid."""
        if self.status in (S.OPEN, S.UNCOLLECTIBLE) and self.amount_remaining.is_zero():
            return replace(self, status=S.PAID)
        return self


# --- credit notes ---------------------------------------------------------------------------------------------
def plan_credit_note(invoice: Invoice, credit_note_id: str, reason: str, *,
                     lines: Sequence[tuple[str, Money]] | None = None, amount: Money | None = None,
                     refund: Money | None = None, credit: Money | None = None,
                     out_of_band: Money | None = None, memo: str = "") -> CreditNote:
    """A credit note by lines (line id -> amount) or by an amount spread over the lines in proportion to what is
    left of each. Amounts are tax excluded, like the lines they credit; the tax given back follows from them."""
    require(invoice.status, "create_credit_note")
    if reason not in CREDIT_REASONS:
        raise InvoiceRefused("invalid-reason", f"reason must be one of {', '.join(CREDIT_REASONS)}")
    if (lines is None) == (amount is None):
        raise InvoiceRefused("invalid-credit-note", "credit either lines or an amount")
    requested = list(lines) if lines is not None else _spread(invoice, amount)  # type: ignore[arg-type]
    credit_lines = tuple(_credit_line(invoice, line_id, part) for line_id, part in requested)
    before = invoice.status != S.PAID
    if before and any(part is not None for part in (refund, credit, out_of_band)):
        raise InvoiceRefused("invalid-credit-note", "an unpaid invoice's credit note reduces what is due: it has "
                                                    "no refund, credit or out-of-band part")
    zero = Money.zero(invoice.currency)
    settlement = None if before else Settlement(refund or zero, credit or zero, out_of_band or zero)
    note = CreditNote(credit_note_id, invoice.invoice_id, reason, credit_lines, before, settlement, memo)
    _check_credit(invoice, note)
    return note


def credit_line(invoice: Invoice, line_id: str, amount: Money) -> CreditLine:
    """What crediting ``amount`` (tax excluded) of one line takes off it, with the tax given back: for working out
    a credit note's total before planning it (a paid invoice's note must name where its total goes)."""
    return _credit_line(invoice, line_id, amount)


def _whole_minor(invoice: Invoice, amount: Money, what: str) -> None:
    if amount.currency != invoice.currency or not amount.is_positive():
        raise InvoiceRefused("invalid-amount", f"credit a positive {invoice.currency} amount{what}")
    if amount.micros % get_currency(invoice.currency).micros_per_minor:
        raise InvoiceRefused("invalid-amount", f"credit whole {invoice.currency} minor units")


def _spread(invoice: Invoice, amount: Money) -> list[tuple[str, Money]]:
    _whole_minor(invoice, amount, "")
    left = [(line.line_id, line.amount - invoice.credited_on(line.line_id)[0]) for line in invoice.lines]
    left_total = sum((rest for _, rest in left), Money.zero(invoice.currency))
    if amount > left_total:
        raise InvoiceRefused("credit-exceeds-invoice",
                             f"at most {left_total.to_decimal_string()} can still be credited")
    unit = get_currency(invoice.currency).micros_per_minor
    parts = amount.allocate([rest.micros // unit for _, rest in left], unit=unit)
    return [(line_id, part) for (line_id, _), part in zip(left, parts, strict=True) if part.is_positive()]


def _credit_line(invoice: Invoice, line_id: str, amount: Money) -> CreditLine:
    line = next((line for line in invoice.lines if line.line_id == line_id), None)
    if line is None:
        raise InvoiceRefused("line-not-found", f"no line {line_id} on the invoice")
    _whole_minor(invoice, amount, f" on {line_id}")
    before = invoice.credited_on(line_id)[0]
    if before + amount > line.amount:
        raise InvoiceRefused("credit-exceeds-line", f"at most {(line.amount - before).to_decimal_string()} can "
                                                    f"still be credited on {line_id}")
    return CreditLine(line_id, amount, tuple((t.jurisdiction, _tax_given_back(t, line, before, amount))
                                             for t in line.taxes))


def _tax_given_back(tax: LineTax, line: InvoiceLine, before: Money, amount: Money) -> int:
    """The tax of crediting `amount` of a line after `before` was credited, rounded cumulatively: after credits
    totalling P of a line of amount A, a tax X has given back round(X*P/A) in all (half-even, to the minor unit).
    The parts telescope, so a line credited in full has given back exactly its tax, whatever the steps."""
    whole = Money(tax.tax_micros, line.amount.currency)

    def upto(credited: Money) -> int:
        return whole.scale_to_minor(credited.micros, line.amount.micros, RoundingMode.HALF_EVEN).micros

    return upto(before + amount) - upto(before)


def _check_credit(invoice: Invoice, note: CreditNote) -> None:
    if not note.lines or not note.total.is_positive():
        raise InvoiceRefused("invalid-credit-note", "a credit note credits something")
    for line in invoice.lines:
        taken = sum((cl.amount for cl in note.lines if cl.line_id == line.line_id), Money.zero(invoice.currency))
        if taken + invoice.credited_on(line.line_id)[0] > line.amount:
            raise InvoiceRefused("credit-exceeds-line", f"line {line.line_id} cannot be credited that much")
    if note.before_payment:
        if note.settlement is not None:
            raise InvoiceRefused("invalid-credit-note", "an unpaid invoice's credit note reduces what is due")
        if note.total > invoice.amount_remaining:
            raise InvoiceRefused("credit-exceeds-remaining",
                                 f"at most {invoice.amount_remaining.to_decimal_string()} remains to be credited")
        return
    settlement = note.settlement
    if settlement is None or settlement.total != note.total:
        raise InvoiceRefused("credit-note-unbalanced",
                             f"a paid invoice's credit note of {note.total.to_decimal_string()} must equal "
                             "refund + credit + out of band")
    for part in (settlement.refund, settlement.credit, settlement.out_of_band):
        if part.currency != invoice.currency or part.micros < 0:
            raise InvoiceRefused("invalid-amount", f"refund, credit and out of band are {invoice.currency} >= 0")
    assert invoice.amount_paid is not None
    if invoice.credited_after_payment + note.total > invoice.amount_paid:
        raise InvoiceRefused("credit-exceeds-paid", "credit notes cannot give back more than was paid")


def due_on(issued: date, days_until_due: int | None, due_date: date | None) -> date:
    """An explicit due date, else the day it is issued plus the days until due (0: due at once)."""
    if due_date is not None:
        if due_date < issued:
            raise InvoiceRefused("invalid-due-date", "the due date is before the invoice is issued")
        return due_date
    return issued + timedelta(days=days_until_due or 0)
