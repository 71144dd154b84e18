"""What an invoice and its credit notes post to the ledger.

    finalized            Dr receivable:<customer> total      Cr revenue subtotal, Cr tax_payable:<jurisdiction> tax
                         (less the customer's credit applied, which is Dr customer_credit:<customer> instead)
    paid out of band     Dr cash:out_of_band                  Cr receivable
    (paid by card: the payment's own entry, Dr cash:<provider> Cr receivable)
    marked uncollectible Dr bad_debt                          Cr receivable          (what remains is written off)
    recovered            Dr receivable                        Cr bad_debt            (an uncollectible invoice paid)
    voided               Dr revenue, Dr tax_payable           Cr receivable | bad_debt   (what was not credited)
                                                              Cr customer_credit (the credit applied goes back)
    credit note, unpaid  Dr revenue, Dr tax_payable           Cr receivable | bad_debt
    credit note, paid    Dr revenue, Dr tax_payable           Cr refunds (the refund, which the refund's own entry
                                                              then moves out of cash), Cr customer_credit:<customer>,
                                                              Cr cash:out_of_band

So the receivable of an invoice is zero once it is paid, voided or written off, revenue and tax payable carry
what was finally sold, and the trial balance is zero throughout.
"""

from __future__ import annotations

from collections import defaultdict

from domain.invoice import CreditNote, Invoice, InvoiceStatus
from domain.ledger import (
    OUT_OF_BAND,
    Account,
    AccountCode,
    JournalEntry,
    Line,
    cash,
    entry,
    move,
    receivable,
    single,
)
from domain.money import Money


def _tax_payable(jurisdiction: str, currency: str) -> Account:
    return Account(AccountCode.TAX_PAYABLE, currency, jurisdiction)


def _owed_by(invoice: Invoice) -> Account:
    """Where what a customer still owes sits: the receivable, or bad debt once written off."""
    if invoice.status is InvoiceStatus.UNCOLLECTIBLE:
        return single(AccountCode.BAD_DEBT, invoice.currency)
    return receivable(invoice.customer_id, invoice.currency)


def _sale_lines(currency: str, revenue_micros: int, taxes: dict[str, int], sign: int) -> list[Line]:
    """Revenue and tax payable per jurisdiction, credited (sign -1) on a sale or debited (+1) when taken back."""
    lines = [Line(single(AccountCode.REVENUE, currency), sign * revenue_micros)] if revenue_micros else []
    lines += [Line(_tax_payable(j, currency), sign * micros) for j, micros in sorted(taxes.items()) if micros]
    return lines


def finalized(invoice: Invoice) -> JournalEntry | None:
    """None for an invoice of zero total: there is nothing to post."""
    if invoice.total.is_zero():
        return None
    taxes: dict[str, int] = defaultdict(int)
    for line in invoice.lines:
        for tax in line.taxes:
            taxes[tax.jurisdiction] += tax.tax_micros
    assert invoice.credit_applied is not None
    applied = invoice.credit_applied.micros
    lines = [Line(receivable(invoice.customer_id, invoice.currency), invoice.total.micros - applied),
             Line(_customer_credit(invoice), applied),
             *_sale_lines(invoice.currency, invoice.subtotal.micros, taxes, -1)]
    return entry("invoice", invoice.invoice_id, "invoice.finalized", lines, memo=invoice.number or "")


def _customer_credit(invoice: Invoice) -> Account:
    return Account(AccountCode.CUSTOMER_CREDIT, invoice.currency, invoice.customer_id)


def paid_out_of_band(invoice: Invoice, amount: Money) -> JournalEntry | None:
    if amount.is_zero():
        return None
    return entry("invoice", invoice.invoice_id, "invoice.paid_out_of_band",
                 move(amount, cash(OUT_OF_BAND, amount.currency), receivable(invoice.customer_id, amount.currency)))


def marked_uncollectible(invoice: Invoice) -> JournalEntry | None:
    remaining = invoice.amount_remaining
    if remaining.is_zero():
        return None
    return entry("invoice", invoice.invoice_id, "invoice.marked_uncollectible",
                 move(remaining, single(AccountCode.BAD_DEBT, invoice.currency),
                      receivable(invoice.customer_id, invoice.currency)))


def recovered(invoice: Invoice) -> JournalEntry | None:
    """An uncollectible invoice is being paid: its written-off remainder is a receivable again, which the payment
    then settles."""
    remaining = invoice.amount_remaining
    if invoice.status is not InvoiceStatus.UNCOLLECTIBLE or remaining.is_zero():
        return None
    return entry("invoice", invoice.invoice_id, "invoice.recovered",
                 move(remaining, receivable(invoice.customer_id, invoice.currency),
                      single(AccountCode.BAD_DEBT, invoice.currency)))


def voided(invoice: Invoice) -> JournalEntry | None:
    """`invoice` as it was before the void (open or uncollectible): takes back what credit notes did not."""
    taxes: dict[str, int] = defaultdict(int)
    revenue = 0
    for line in invoice.lines:
        credited_amount, _ = invoice.credited_on(line.line_id)
        revenue += (line.amount - credited_amount).micros
        for tax in line.taxes:
            taxes[tax.jurisdiction] += tax.tax_micros
    for note in invoice.credit_notes:
        for credit_line in note.lines:
            for jurisdiction, micros in credit_line.taxes:
                taxes[jurisdiction] -= micros
    remaining = invoice.amount_remaining
    assert invoice.credit_applied is not None
    if remaining.is_zero() and invoice.credit_applied.is_zero():
        return None
    lines = [*_sale_lines(invoice.currency, revenue, dict(taxes), +1), Line(_owed_by(invoice), -remaining.micros),
             Line(_customer_credit(invoice), -invoice.credit_applied.micros)]
    return entry("invoice", invoice.invoice_id, "invoice.voided", lines)


def credit_note_issued(invoice: Invoice, note: CreditNote) -> JournalEntry:
    """`invoice` as it was before the note."""
    taxes: dict[str, int] = defaultdict(int)
    for credit_line in note.lines:
        for jurisdiction, micros in credit_line.taxes:
            taxes[jurisdiction] += micros
    currency = invoice.currency
    lines = _sale_lines(currency, note.amount.micros, dict(taxes), +1)
    if note.settlement is None:
        lines.append(Line(_owed_by(invoice), -note.total.micros))
    else:
        parts = [(single(AccountCode.REFUNDS, currency), note.settlement.refund),
                 (Account(AccountCode.CUSTOMER_CREDIT, currency, invoice.customer_id), note.settlement.credit),
                 (cash(OUT_OF_BAND, currency), note.settlement.out_of_band)]
        lines += [Line(account, -part.micros) for account, part in parts if not part.is_zero()]
    return entry("credit_note", note.credit_note_id, "credit_note.issued", lines, memo=f"invoice {invoice.invoice_id}")
