"""The invoice's rules: totals are sums of lines to the micro-unit, the lifecycle is Stripe's, nothing changes after
finalization but through a payment, a credit note, void or uncollectible, and credit notes follow Stripe's rules —
and every step posts a balanced entry that leaves a settled invoice's receivable at zero."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import invoice_postings as postings
from domain.invoice import (
    ACTIONS,
    Invoice,
    InvoiceRefused,
    InvoiceStatus,
    LineTax,
    due_on,
    make_line,
    plan_credit_note,
)
from domain.ledger import balances, payment_completed
from domain.money import Money, RoundingMode

S = InvoiceStatus
DAY = date(2026, 12, 1)


def vat(line_amount: Money, rate_ppm: int, jurisdiction: str = "DE") -> LineTax:
    tax = line_amount.scale_to_minor(rate_ppm, 1_000_000, RoundingMode.HALF_EVEN)
    return LineTax(jurisdiction, jurisdiction, rate_ppm, line_amount.micros, tax.micros, "standard_rated")


def draft(*lines: tuple[str, str], currency: str = "EUR") -> Invoice:
    invoice = Invoice("in_1", "t_1", "cus_1", currency)
    for n, (quantity, unit) in enumerate(lines):
        invoice = invoice.add_line(make_line(f"li_{n}", f"item {n}", quantity, unit, currency))
    return invoice


def opened(invoice: Invoice, rate_ppm: int = 190_000) -> Invoice:
    taxes = {line.line_id: [vat(line.amount, rate_ppm)] for line in invoice.lines}
    return invoice.finalize("INV-0001", taxes, DAY)


def test_a_line_is_quantity_times_unit_rounded_half_even_to_the_minor_unit() -> None:
    assert make_line("a", "x", "3", "19.99", "EUR").amount == Money.parse("59.97", "EUR")
    assert make_line("a", "x", "1", "0.005", "EUR").amount == Money.parse("0.00", "EUR")  # half to even: 0
    assert make_line("a", "x", "1", "0.015", "EUR").amount == Money.parse("0.02", "EUR")  # half to even: 2
    assert make_line("a", "x", "1.5", "0.333333333333", "USD").amount == Money.parse("0.50", "USD")
    assert make_line("a", "x", "7", "99.5", "JPY").amount == Money.parse("696", "JPY")  # 696.5 → 696
    assert make_line("a", "x", "1", "1.0005", "KWD").amount == Money.parse("1.000", "KWD")


@pytest.mark.parametrize("quantity, unit", [("0", "1"), ("-1", "1"), ("1", "-1"), ("1e3", "1"), ("1", "1,5"),
                                            ("1", "0.1234567890123"), ("1.1234567", "1"), ("", "1"), ("1", " 1")])
def test_amounts_are_plain_decimal_strings(quantity: str, unit: str) -> None:
    with pytest.raises(InvoiceRefused):
        make_line("a", "x", quantity, unit, "EUR")


QUANTITY = st.decimals(min_value=1, max_value=10_000, places=3).map(str)
UNIT = st.decimals(min_value=0, max_value=100_000, places=4).map(str)
LINES = st.lists(st.tuples(QUANTITY, UNIT), min_size=1, max_size=8)
RATE = st.sampled_from([0, 50_000, 70_000, 190_000, 200_000, 210_000, 255_000, 72_500])


@given(LINES, RATE)
def test_totals_are_sums_of_lines(lines: list[tuple[str, str]], rate: int) -> None:
    invoice = opened(draft(*lines), rate)
    assert invoice.subtotal.micros == sum(line.amount.micros for line in invoice.lines)
    assert invoice.tax.micros == sum(t.tax_micros for line in invoice.lines for t in line.taxes)
    assert invoice.total == invoice.subtotal + invoice.tax
    assert invoice.amount_remaining == invoice.total - invoice.amount_paid - invoice.credited_before_payment
    for line in invoice.lines:
        assert line.amount.micros % 10_000 == 0  # whole cents


@given(LINES, RATE, st.lists(st.integers(min_value=1, max_value=100), min_size=1, max_size=6))
@settings(max_examples=150)
def test_credit_notes_before_payment_reduce_what_remains_and_never_overshoot(
        lines: list[tuple[str, str]], rate: int, percents: list[int]) -> None:
    invoice = opened(draft(*lines), rate)
    if invoice.status is S.PAID:  # a zero invoice is paid at once
        return
    entries = [postings.finalized(invoice)]
    for n, percent in enumerate(percents):
        left = invoice.subtotal - sum((cn.amount for cn in invoice.credit_notes), Money.zero("EUR"))
        amount = Money(left.micros * percent // 100 // 10_000 * 10_000, "EUR")
        if not amount.is_positive() or invoice.status is S.PAID:
            break
        note = plan_credit_note(invoice, f"cn_{n}", "order_change", amount=amount)
        assert note.amount == amount
        entries.append(postings.credit_note_issued(invoice, note))
        before = invoice.amount_remaining
        invoice = invoice.credit(note)
        assert invoice.amount_remaining == before - note.total
        assert invoice.amount_remaining == invoice.total - invoice.amount_paid - invoice.credited_before_payment
        assert invoice.amount_remaining.micros >= 0
    # Credited in full, every line's tax came back exactly, whatever the steps.
    if invoice.status is not S.PAID:
        rest = invoice.subtotal - sum((cn.amount for cn in invoice.credit_notes), Money.zero("EUR"))
        last = plan_credit_note(invoice, "cn_last", "order_change", amount=rest)
        entries.append(postings.credit_note_issued(invoice, last))
        invoice = invoice.credit(last)
    assert invoice.status is S.PAID and invoice.amount_remaining.is_zero()
    assert sum((cn.tax for cn in invoice.credit_notes), Money.zero("EUR")) == invoice.tax
    posted = balances(line for e in entries if e for line in e.lines)
    assert posted.get("receivable:cus_1:EUR", 0) == 0
    assert all(v == 0 for v in posted.values())  # revenue and tax payable all taken back


@given(LINES, RATE, st.sampled_from(["void", "uncollectible_void", "uncollectible_paid", "paid", "oob"]))
def test_every_ending_leaves_the_receivable_at_zero(lines: list[tuple[str, str]], rate: int, ending: str) -> None:
    invoice = opened(draft(*lines), rate)
    if invoice.status is S.PAID:
        assert postings.finalized(invoice) is None
        return
    entries = [postings.finalized(invoice)]
    if ending.startswith("uncollectible"):
        entries.append(postings.marked_uncollectible(invoice))
        invoice = invoice.mark_uncollectible()
    if ending.endswith("void"):
        entries.append(postings.voided(invoice))
        invoice = invoice.void()
    elif ending == "oob":
        entries.append(postings.paid_out_of_band(invoice, invoice.amount_remaining))
        invoice = invoice.pay(invoice.amount_remaining)
    else:  # by card: the payment's own entry settles the receivable
        entries.append(postings.recovered(invoice))
        entries.append(payment_completed("pay_1", "cus_1", "sandbox", invoice.amount_remaining, invoice.invoice_id))
        invoice = invoice.pay(invoice.amount_remaining)
    posted = balances(line for e in entries if e for line in e.lines)
    assert posted.get("receivable:cus_1:EUR", 0) == 0
    assert sum(posted.values()) == 0
    if ending.endswith("void"):
        assert all(v == 0 for v in posted.values())
    if ending == "uncollectible_paid":
        assert posted.get("bad_debt:EUR", 0) == 0


def test_nothing_changes_after_finalization_but_through_its_actions() -> None:
    invoice = opened(draft(("1", "100")))
    assert invoice.status is S.OPEN and invoice.number == "INV-0001"
    for attempt in (lambda: invoice.add_line(make_line("li_9", "x", "1", "1", "EUR")),
                    lambda: invoice.remove_line("li_0"),
                    lambda: invoice.finalize("INV-0002", {}, DAY)):
        with pytest.raises(InvoiceRefused) as refused:
            attempt()
        assert refused.value.code == "invoice-action-not-allowed"
    assert invoice.actions == ["pay", "mark_paid_out_of_band", "void", "mark_uncollectible", "create_credit_note"]


def test_the_lifecycle_is_stripes() -> None:
    invoice = opened(draft(("2", "50")))
    uncollectible = invoice.mark_uncollectible()
    assert uncollectible.actions == ["pay", "mark_paid_out_of_band", "void", "create_credit_note"]
    assert uncollectible.pay(uncollectible.amount_remaining).status is S.PAID
    assert uncollectible.void().status is S.VOID
    paid = invoice.pay(invoice.amount_remaining)
    assert paid.amount_paid == invoice.total and paid.amount_remaining.is_zero()
    assert paid.actions == ["create_credit_note"]
    for done in (paid, invoice.void()):
        for action in ("void", "mark_uncollectible", "pay"):
            with pytest.raises(InvoiceRefused):
                getattr(done, action)(*([done.total] if action == "pay" else []))
    assert set(ACTIONS) >= {"finalize", "pay", "void", "mark_uncollectible", "create_credit_note"}


def test_a_payment_settles_exactly_what_remains() -> None:
    invoice = opened(draft(("1", "10")))
    with pytest.raises(InvoiceRefused) as refused:
        invoice.pay(Money.parse("1.00", "EUR"))
    assert refused.value.code == "amount-mismatch"


def test_an_empty_draft_cannot_be_finalized_and_a_zero_invoice_is_paid_at_once() -> None:
    with pytest.raises(InvoiceRefused):
        draft().finalize("INV-1", {}, DAY)
    free = draft(("1", "0")).finalize("INV-1", {}, DAY)
    assert free.status is S.PAID and free.total.is_zero()


def test_tax_must_be_quoted_on_the_lines_amounts() -> None:
    invoice = draft(("1", "10"))
    wrong = LineTax("DE", "Germany", 190_000, 10**12, 190_000, "standard_rated")
    with pytest.raises(InvoiceRefused):
        invoice.finalize("INV-1", {"li_0": [wrong]}, DAY)
    with pytest.raises(InvoiceRefused):
        invoice.finalize("INV-1", {"li_7": []}, DAY)


def test_a_paid_invoices_credit_note_must_balance_refund_credit_and_out_of_band() -> None:
    invoice = opened(draft(("1", "100"), ("2", "25")))
    paid = invoice.pay(invoice.amount_remaining)
    eur = Money.parse
    with pytest.raises(InvoiceRefused) as refused:
        plan_credit_note(paid, "cn_1", "duplicate", lines=[("li_0", eur("50.00", "EUR"))], refund=eur("50", "EUR"))
    assert refused.value.code == "credit-note-unbalanced"  # the total is 59.50 with its tax
    note = plan_credit_note(paid, "cn_1", "duplicate", lines=[("li_0", eur("50.00", "EUR"))],
                            refund=eur("40.00", "EUR"), credit=eur("19.50", "EUR"))
    assert note.total == eur("59.50", "EUR") and not note.before_payment
    entry = postings.credit_note_issued(paid, note)
    assert balances(entry.lines) == {"revenue:EUR": 50_000_000, "tax_payable:DE:EUR": 9_500_000,
                                     "refunds:EUR": -40_000_000, "customer_credit:cus_1:EUR": -19_500_000}
    after = paid.credit(note)
    assert after.status is S.PAID and after.amount_remaining.is_zero()
    with pytest.raises(InvoiceRefused) as refused:  # the rest of li_0 and all of li_1 is 119.00; paid 178.50
        plan_credit_note(after, "cn_2", "duplicate", amount=eur("150.00", "EUR"), refund=eur("178.50", "EUR"))
    assert refused.value.code == "credit-exceeds-invoice"


def test_credits_cannot_exceed_a_line_or_what_remains() -> None:
    invoice = opened(draft(("1", "10")))
    with pytest.raises(InvoiceRefused) as refused:
        plan_credit_note(invoice, "cn_1", "duplicate", lines=[("li_0", Money.parse("10.01", "EUR"))])
    assert refused.value.code == "credit-exceeds-line"
    with pytest.raises(InvoiceRefused):
        plan_credit_note(invoice, "cn_1", "duplicate", lines=[("li_0", Money(1_005_000, "EUR"))])
    with pytest.raises(InvoiceRefused):
        plan_credit_note(invoice, "cn_1", "not-a-reason", amount=Money.parse("1", "EUR"))
    with pytest.raises(InvoiceRefused):
        plan_credit_note(invoice, "cn_1", "duplicate", amount=Money.parse("1", "EUR"), refund=Money.parse("1", "EUR"))


def test_credited_tax_is_rounded_cumulatively() -> None:
    # 19 % of 0.10 is 0.019 → 0.02; three credits of 0.03, 0.03 and 0.04 give back 0.01 + 0.00 + 0.01 = 0.02 —
    # rounding each credit on its own would give back 0.01 + 0.01 + 0.01.
    invoice = opened(draft(("1", "0.10")))
    taxes = []
    for n, cents in enumerate(["0.03", "0.03", "0.04"]):
        note = plan_credit_note(invoice, f"cn_{n}", "order_change", lines=[("li_0", Money.parse(cents, "EUR"))])
        taxes.append(note.tax.to_decimal_string())
        invoice = invoice.credit(note)
    assert taxes == ["0.01", "0.00", "0.01"]
    assert invoice.status is S.PAID


def test_due_dates() -> None:
    assert due_on(DAY, 30, None) == date(2026, 12, 31)
    assert due_on(DAY, None, None) == DAY
    assert due_on(DAY, 30, date(2027, 1, 15)) == date(2027, 1, 15)
    with pytest.raises(InvoiceRefused):
        due_on(DAY, None, date(2026, 11, 30))


def test_a_finalized_entry_splits_revenue_and_tax_per_jurisdiction() -> None:
    invoice = draft(("1", "100"), ("1", "50"), currency="USD")
    lines = {line.line_id: line for line in invoice.lines}
    taxes = {"li_0": [vat(lines["li_0"].amount, 72_500, "US-CA")], "li_1": [vat(lines["li_1"].amount, 0, "US-CA")]}
    entry = postings.finalized(invoice.finalize("INV-9", taxes, DAY))
    assert entry is not None
    assert balances(entry.lines) == {"receivable:cus_1:USD": 157_250_000, "revenue:USD": -150_000_000,
                                     "tax_payable:US-CA:USD": -7_250_000}
