"""render_invoice_pdf: the PDF read back with pypdf says what a reader of the invoice must find, page by page."""

from __future__ import annotations

import io
import re
from datetime import date

import pytest
from pypdf import PdfReader

from activities.documents import render_invoice_pdf
from contracts.documents import DocumentLine, Party, TaxSummary
from contracts.tax import Address, TaxId
from tests.documents.samples import BUYER, REVERSE_CHARGE, SELLER, invoice, line, pages_text


@pytest.fixture(scope="module")
def one_page() -> str:
    pages = pages_text(render_invoice_pdf(invoice(1)))
    assert len(pages) == 1
    return pages[0]


def test_it_is_an_invoice_with_its_number_and_dates(one_page: str) -> None:
    assert "Invoice\n" in one_page
    assert "Invoice number INV-2026-0042" in one_page
    assert "Date of issue 30.11.2026" in one_page
    assert "Date due 14.12.2026" in one_page


def test_the_seller_and_the_buyer_with_addresses_and_tax_ids(one_page: str) -> None:
    seller = "Acme Cloud GmbH\nInvalidenstraße 117\n10115 Berlin\nDeutschland\nbilling@acme.example\nVAT DE123456789"
    assert one_page.startswith(seller)
    assert "BILL TO\nSociété Générale de Logiciels SARL\n12 rue de la Paix\n75002 Paris\nFrankreich\n" \
           "VAT FR40303265045" in one_page


def test_the_lines_with_period_quantity_unit_price_rate_and_amount(one_page: str) -> None:
    assert "Description Qty Unit price Tax Amount" in one_page
    row = "Pro plan, seat 1 01.11.2026 \u2013 30.11.2026 1 1.234,56 € 19 % 1.234,56 €"
    assert row in " ".join(one_page.split())


def test_the_totals_formatted_for_the_locale(one_page: str) -> None:
    assert "1.369,13 € due 14.12.2026" in one_page
    for row in ("Subtotal 1.234,56 €", "Tax 234,57 €", "Total 1.469,13 €", "Amount paid 100,00 €",
                "Amount due 1.369,13 €"):
        assert row in one_page
    assert "Amount credited" not in one_page  # shown only when something was credited


def test_the_tax_block_per_rate(one_page: str) -> None:
    assert "TAX SUMMARY\nJurisdiction Rate Taxable amount Tax" in one_page
    assert "Germany 19 % 1.234,56 € 234,57 €" in one_page
    assert "France (reverse charge) 0 % 0,00 € 0,00 €" in one_page


def test_the_reverse_charge_note_and_the_payment_instructions(one_page: str) -> None:
    notes = one_page[one_page.index("NOTES"):]
    assert REVERSE_CHARGE in notes.replace("\n", " ")
    assert "PAYMENT INSTRUCTIONS\nSEPA transfer to IBAN DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX." in notes


def test_a_page_footer_names_the_document_and_counts_pages(one_page: str) -> None:
    assert one_page.rstrip().endswith("Acme Cloud GmbH · Invoice INV-2026-0042 Page 1 of 1")


def test_a_credit_note_says_so_and_names_the_invoice_it_credits() -> None:
    doc = invoice(1, kind="credit_note", reference="cn_0001", number="CN-2026-0007",
                  credit_note_for="INV-2026-0042", due_on=None, amount_paid_micros=0,
                  amount_credited_micros=1_469_130_000, amount_remaining_micros=0)
    [page] = pages_text(render_invoice_pdf(doc))
    assert "Credit note\n" in page and "Invoice\n" not in page
    assert "Credit note number CN-2026-0007" in page
    assert "Credits invoice INV-2026-0042" in page
    assert "CREDIT TO\nSociété Générale" in page
    assert "Credit of 1.469,13 €" in page
    assert "Amount credited 1.469,13 €" in page and "Amount remaining 0,00 €" in page
    assert "Amount paid" not in page and "Date due" not in page


def test_a_paid_invoice_says_paid_in_full() -> None:
    doc = invoice(1, amount_paid_micros=1_469_130_000, amount_remaining_micros=0)
    [page] = pages_text(render_invoice_pdf(doc))
    assert "1.469,13 € paid in full" in page and "Amount due 0,00 €" in page


class TestALongInvoice:
    """120 lines break across pages; every page after the first repeats the seller, the number and the headings."""

    @pytest.fixture(scope="class")
    def pages(self) -> list[str]:
        return pages_text(render_invoice_pdf(invoice(120)))

    def test_it_breaks_across_pages_with_page_n_of_m(self, pages: list[str]) -> None:
        assert len(pages) >= 3
        for n, page in enumerate(pages, start=1):
            assert page.rstrip().endswith(f"Acme Cloud GmbH · Invoice INV-2026-0042 Page {n} of {len(pages)}")

    def test_every_later_page_repeats_the_header(self, pages: list[str]) -> None:
        for page in pages[1:]:
            assert page.startswith("Acme Cloud GmbH Invoice INV-2026-0042 (continued)\n")
        for page in pages:
            if "Pro plan, seat" in page:  # a page that carries lines has the table's headings above them
                assert page.index("Description Qty Unit price Tax Amount") < page.index("Pro plan, seat")

    def test_every_line_is_printed_once_and_in_order(self, pages: list[str]) -> None:
        seats = [int(n) for n in re.findall(r"Pro plan, seat (\d+)\n", "".join(pages))]
        assert seats == list(range(1, 121))

    def test_the_totals_come_after_the_last_line(self, pages: list[str]) -> None:
        text = "\n".join(pages)
        assert text.index("Pro plan, seat 120") < text.index("Subtotal 148.147,20 €")
        assert "Total 176.295,17 €" in text and "Amount due 176.195,17 €" in text
        assert text.index("Subtotal") < text.index("TAX SUMMARY") < text.index("NOTES")


def test_a_rerender_is_byte_identical_and_dated_by_the_document() -> None:
    first, second = render_invoice_pdf(invoice(40)), render_invoice_pdf(invoice(40))
    assert first == second
    meta = PdfReader(io.BytesIO(first)).metadata
    assert meta is not None
    assert meta["/CreationDate"] == "D:20261130000000Z"
    assert meta["/Title"] == "Invoice INV-2026-0042" and meta["/Author"] == "Acme Cloud GmbH"
    assert render_invoice_pdf(invoice(40, issued_on=date(2026, 12, 1))) != first


@pytest.mark.parametrize(("currency", "locale", "due", "total"), [
    ("EUR", "de_DE", "14.12.2026", "1.469,13 €"),
    ("EUR", "en_IE", "14 Dec 2026", "€1,469.13"),
    ("USD", "en_US", "Dec 14, 2026", "$1,469.13"),
    ("GBP", "en_GB", "14 Dec 2026", "£1,469.13"),
    ("INR", "en_IN", "14 Dec 2026", "₹1,469.13"),
])
def test_amounts_and_dates_follow_the_currency_and_the_locale(currency: str, locale: str, due: str,
                                                              total: str) -> None:
    [page] = pages_text(render_invoice_pdf(invoice(1, currency=currency, locale=locale)))
    assert f"Date due {due}" in page
    assert f"Total {total}" in page


def test_yen_in_japanese_has_no_decimals_and_a_yen_sign_the_font_draws() -> None:
    doc = invoice(1, currency="JPY", locale="ja_JP",
                  lines=[DocumentLine(description="API calls", quantity="12000", unit_amount="0.5",
                                      amount_micros=6_000_000_000, tax_rate_ppm=100_000)],
                  subtotal_micros=6_000_000_000, tax_micros=600_000_000, total_micros=6_600_000_000,
                  amount_paid_micros=0, amount_remaining_micros=6_600_000_000, notes=[],
                  tax_summary=[TaxSummary(jurisdiction_name="Japan", rate_ppm=100_000, taxable_micros=6_000_000_000,
                                          tax_micros=600_000_000, taxability_reason="standard_rated")])
    [page] = pages_text(render_invoice_pdf(doc))
    # babel writes the full-width ￥ for ja_JP; DejaVu Sans draws its compatibility form ¥.
    assert "API calls 12,000 ¥0.5 10% ¥6,000" in page
    assert "Total ¥6,600" in page and "Amount due ¥6,600" in page
    assert "Date of issue 2026/11/30" in page


def test_unicode_is_kept_and_what_the_font_lacks_never_fails() -> None:
    seller = SELLER.model_copy(update={"name": "Ærø Łódź Zoë Ångström ŞİRKETİ Ελλάδα Москва"})
    buyer = Party(name="株式会社サンプル 🙂 (Sample KK)",
                  address=Address(country="JP", city="千代田区", postal_code="100-0001", line1="1-1 Chiyoda"),
                  tax_ids=[TaxId(type="jp_trn", value="T1234567890123")])
    # full-width letters and digits, a mathematical bold B, the kilogram sign: the font has their plain forms
    description = "Tab\there, bell\x07, \uff21\uff22\uff23 \uff11\uff12\uff13, \U0001d401old, 5㎏, €5 vs ₹5"
    weird = line(1).model_copy(update={"description": description})
    doc = invoice(1, seller=seller, buyer=buyer, lines=[weird], locale="en_IN", currency="INR")
    [page] = pages_text(render_invoice_pdf(doc))
    assert " ".join(page.split()).startswith("Ærø Łódź Zoë Ångström ŞİRKETİ Ελλάδα Москва Invalidenstraße 117")
    assert "\ufffd (Sample KK)" in page  # CJK and emoji: the replacement character, not an error
    assert "Registration number T1234567890123" in page
    assert "Tab here, bell, ABC 123, Bold, 5kg, €5 vs ₹5" in page
    assert "Japan" in page  # a country name the font cannot show in the locale's script falls back to English


def test_a_description_too_long_for_a_page_is_cut_not_fatal() -> None:
    endless = line(7).model_copy(update={"description": "word " * 3000})
    pages = pages_text(render_invoice_pdf(invoice(1, lines=[endless, line(8)])))
    text = " ".join(" ".join(pages).split())
    assert "\u2026 01.11.2026" in text  # cut with an ellipsis, the period still below it
    assert text.count("word") < 400
    assert "Pro plan, seat 8" in text and "Total" in text


def test_an_invoice_without_lines_still_renders() -> None:
    [page] = pages_text(render_invoice_pdf(invoice(0)))
    assert "Description Qty Unit price Tax Amount" in page and "Subtotal 0,00 €" in page


def test_the_page_is_a4() -> None:
    reader = PdfReader(io.BytesIO(render_invoice_pdf(invoice(1, buyer=BUYER))))
    box = reader.pages[0].mediabox
    assert (round(float(box.width) / 72 * 25.4), round(float(box.height) / 72 * 25.4)) == (210, 297)
