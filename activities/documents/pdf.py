"""`render_invoice_pdf(doc)`: an `InvoiceDocument` (invoice or credit note) as an A4 PDF, with fpdf2.

Pure apart from producing bytes: no clock, no network, no randomness. The PDF's dates are the document's issue
date, so the same document renders to the same bytes, on every run and every machine with the same libraries.

Page 1: the seller (the tenant: name, address, e-mail, tax ids) and the title with number and dates; whom it is
billed to; what is due; the lines; the totals; the tax per rate; the notes and the payment instructions. Every
further page starts with the seller, the document number and the lines' column headings, and every page ends
with "Page n of m".

The font is DejaVu Sans (Latin, Greek, Cyrillic, €, ₹, …), read from the TrueType files matplotlib ships (its
`mpl-data`, found on disk: matplotlib itself is never imported). A character the font lacks is shown as its
compatibility form when the font has that (the full-width ``￥`` of ja_JP amounts becomes ``¥``), else as ``�``
— never an error. Labels are English; amounts, numbers and dates follow the document's locale (babel).
"""

from __future__ import annotations

import importlib.util
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import lru_cache
from pathlib import Path

from babel import Locale
from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.enums import MethodReturnValue, TableBordersLayout, XPos, YPos
from fpdf.fonts import FontFace

from activities.documents import formatting as fmt
from contracts.documents import InvoiceDocument, Party
from contracts.tax import Address

FONT = "DejaVuSans"
_REPLACEMENT = "\N{REPLACEMENT CHARACTER}"
EN_DASH = "\N{EN DASH}"

_INK = (33, 37, 41)
_MUTED = (108, 117, 125)
_RULE = (206, 212, 218)
_FILL = (241, 243, 245)

_MARGIN = 18.0
_BOTTOM = 22.0  # room for the footer
_CELL_PADDING_X = 1.5
_MAX_CELL_LINES = 30  # about half a page
_LINE_COLUMNS = (88, 14, 28, 16, 28)  # description, qty, unit price, tax, amount (shares of the width)
_TAX_COLUMNS = (70, 16, 44, 44)  # jurisdiction, rate, taxable, tax

# Stripe's tax id types, as a reader knows them; anything else shows its type in capitals.
_TAX_ID_LABELS = {
    "eu_vat": "VAT", "gb_vat": "VAT", "ch_vat": "VAT", "no_vat": "VAT", "za_vat": "VAT", "ae_trn": "TRN",
    "us_ein": "EIN", "ca_bn": "BN", "ca_gst_hst": "GST/HST", "au_abn": "ABN", "au_arn": "ARN", "nz_gst": "GST",
    "in_gst": "GSTIN", "jp_cn": "Corporate number", "jp_trn": "Registration number", "sg_gst": "GST",
    "br_cnpj": "CNPJ", "mx_rfc": "RFC", "eu_oss_vat": "OSS VAT",
}
_TAXABILITY = {
    "standard_rated": "", "reduced_rated": "reduced rate", "reverse_charge": "reverse charge",
    "not_collecting": "not collected", "customer_exempt": "customer exempt",
    "not_subject_to_tax": "not subject to tax", "zero_rated": "zero rated",
}
# Address layout: where the state and the postal code go.
_CITY_STATE_POSTAL = {"US", "CA", "AU"}
_POSTAL_ON_OWN_LINE = {"GB", "IE"}


@dataclass(frozen=True)
class FontFiles:
    regular: Path
    bold: Path
    covered: frozenset[int]  # code points both faces draw


@lru_cache(maxsize=1)
def dejavu_fonts() -> FontFiles:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        raise RuntimeError("invoice PDFs need the DejaVu Sans files matplotlib ships: install matplotlib")
    folder = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf"
    regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
    covered = set(TTFont(regular, lazy=True).getBestCmap()) & set(TTFont(bold, lazy=True).getBestCmap())
    return FontFiles(regular, bold, frozenset(covered))


def render_invoice_pdf(doc: InvoiceDocument) -> bytes:
    return bytes(_InvoicePdf(doc, dejavu_fonts()).render())


class _InvoicePdf(FPDF):
    def __init__(self, doc: InvoiceDocument, fonts: FontFiles) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.doc = doc
        self.loc = fmt.parse_locale(doc.locale)
        self._covered = fonts.covered
        self.add_font(FONT, "", fonts.regular)
        self.add_font(FONT, "B", fonts.bold)
        self.set_margins(_MARGIN, 16.0, _MARGIN)
        self.set_auto_page_break(auto=True, margin=_BOTTOM)
        self.alias_nb_pages()
        # Fixed metadata: the document's own date instead of "now", so a re-render is byte-identical.
        self.set_creation_date(datetime.combine(doc.issued_on, time(0), tzinfo=UTC))
        self.set_title(self.t(f"{self.title_word} {doc.number}"))
        self.set_author(self.t(doc.seller.name))
        self.set_creator("paysaga")
        self.set_lang(str(self.loc).replace("_", "-"))
        self.set_text_color(*_INK)
        self.set_draw_color(*_RULE)

    # ---- text the font can draw -------------------------------------------------------------------------------

    def t(self, text: str) -> str:
        """`text` with each character the font lacks replaced by one it has (see the module docstring)."""
        if all(ord(ch) in self._covered for ch in text):
            return text
        return "".join(self._drawable(ch) for ch in text)

    def _drawable(self, ch: str) -> str:
        if ord(ch) in self._covered or ch == "\n":
            return ch
        if ch == "\t":
            return " "
        if unicodedata.category(ch) in {"Cc", "Cf"}:  # control and format characters draw nothing
            return ""
        for alternative in (unicodedata.normalize("NFKC", ch),
                            "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))):
            if alternative and alternative != ch and all(ord(c) in self._covered for c in alternative):
                return alternative
        return _REPLACEMENT

    def fit_cell(self, text: str, width_share: float) -> str:
        """`text` cut to `_MAX_CELL_LINES` wrapped lines (ending in an ellipsis) when it has more.

        A table row must fit on one page (fpdf2 refuses a taller one), and nothing in the contract bounds the
        length of a description; a cell of that many lines is already far more than any invoice line needs.
        """
        width = self.epw * width_share - 2 * (_CELL_PADDING_X + self.c_margin)
        lines = self.multi_cell(width, 4.6, text, dry_run=True, output=MethodReturnValue.LINES)
        if len(lines) <= _MAX_CELL_LINES:
            return text
        return "\n".join([*lines[: _MAX_CELL_LINES - 1], lines[_MAX_CELL_LINES - 1].rstrip()[:-1] + "\u2026"])

    def locale_text(self, text: str, fallback: str) -> str:
        """Locale data (a date, a country's name) the font cannot show in full is shown as `fallback` instead."""
        return text if all(ord(ch) in self._covered for ch in text) else fallback

    # ---- formatted values ---------------------------------------------------------------------------------------

    @property
    def title_word(self) -> str:
        return "Credit note" if self.doc.kind == "credit_note" else "Invoice"

    def money(self, micros: int) -> str:
        return self.t(fmt.money(micros, self.doc.currency, self.loc))

    def day(self, value: date) -> str:
        return self.locale_text(fmt.day(value, self.loc), value.isoformat())

    def period(self, start: date | None, end: date | None) -> str:
        """Both days joined by an en dash; one day if only one is set or both are the same."""
        days = dict.fromkeys(d for d in (start, end) if d is not None)
        return f" {EN_DASH} ".join(self.day(d) for d in days)

    # ---- page furniture ---------------------------------------------------------------------------------------

    def header(self) -> None:
        if self.page_no() == 1:
            return
        self.set_y(10)
        self.set_font(FONT, "B", 10)
        self.cell(self.epw / 2, 6, self.t(self.doc.seller.name), new_x=XPos.RIGHT, new_y=YPos.TOP)
        self.set_font(FONT, "", 9)
        self.set_text_color(*_MUTED)
        self.cell(self.epw / 2, 6, self.t(f"{self.title_word} {self.doc.number} (continued)"), align="R",
                  new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*_INK)
        self.line(self.l_margin, self.y + 1, self.w - self.r_margin, self.y + 1)
        self.set_y(self.y + 5)

    def footer(self) -> None:
        self.set_y(-14)
        self.set_font(FONT, "", 8)
        self.set_text_color(*_MUTED)
        self.cell(self.epw * 0.7, 5, self.t(f"{self.doc.seller.name} · {self.title_word} {self.doc.number}"))
        self.cell(self.epw * 0.3, 5, f"Page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(*_INK)

    # ---- the document -----------------------------------------------------------------------------------------

    def render(self) -> bytearray:
        self.add_page()
        self._masthead()
        self._bill_to()
        self._headline()
        self._lines()
        self._totals()
        self._tax_summary()
        self._notes()
        return self.output()

    def _masthead(self) -> None:
        doc, top = self.doc, self.y
        left_w, right_x = self.epw * 0.55, self.l_margin + self.epw * 0.55
        self.set_font(FONT, "B", 15)
        self.multi_cell(left_w, 7, self.t(doc.seller.name), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font(FONT, "", 9)
        self._party_details(doc.seller, left_w)
        left_bottom = self.y

        self.set_xy(right_x, top)
        self.set_font(FONT, "B", 22)
        self.cell(self.epw * 0.45, 10, self.title_word, align="R", new_x=XPos.LEFT, new_y=YPos.NEXT)
        self.set_y(self.y + 2)
        rows = [(f"{self.title_word} number", doc.number), ("Date of issue", self.day(doc.issued_on))]
        if doc.due_on is not None:
            rows.append(("Date due", self.day(doc.due_on)))
        if doc.kind == "credit_note" and doc.credit_note_for:
            rows.append(("Credits invoice", doc.credit_note_for))
        for label, value in rows:
            self.set_x(right_x)
            self.set_font(FONT, "", 9)
            self.set_text_color(*_MUTED)
            self.cell(self.epw * 0.2, 5, label, new_x=XPos.RIGHT, new_y=YPos.TOP)
            self.set_text_color(*_INK)
            self.set_font(FONT, "B", 9)
            self.cell(self.epw * 0.25, 5, self.t(value), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_y(max(left_bottom, self.y) + 8)

    def _party_details(self, party: Party, width: float) -> None:
        lines = _address_lines(party.address, self) if party.address else []
        if party.email:
            lines.append(party.email)
        lines += [f"{_TAX_ID_LABELS.get(tid.type, tid.type.upper())} {tid.value}" for tid in party.tax_ids]
        for line in lines:
            self.multi_cell(width, 4.6, self.t(line), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def _bill_to(self) -> None:
        self._label("Credit to" if self.doc.kind == "credit_note" else "Bill to")
        self.set_font(FONT, "B", 10)
        self.multi_cell(self.epw * 0.55, 5.5, self.t(self.doc.buyer.name), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font(FONT, "", 9)
        self._party_details(self.doc.buyer, self.epw * 0.55)
        self.ln(6)

    def _headline(self) -> None:
        doc = self.doc
        if doc.kind == "credit_note":
            text = f"Credit of {self.money(doc.total_micros)}"
        elif doc.amount_remaining_micros == 0:
            text = f"{self.money(doc.total_micros)} paid in full"
        elif doc.due_on is not None:
            text = f"{self.money(doc.amount_remaining_micros)} due {self.day(doc.due_on)}"
        else:
            text = f"{self.money(doc.amount_remaining_micros)} due"
        self.set_font(FONT, "B", 13)
        self.cell(0, 8, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(4)

    def _lines(self) -> None:
        doc = self.doc
        self.set_font(FONT, "", 8.5)
        with self.table(
            col_widths=_LINE_COLUMNS,
            text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT"),
            v_align="TOP",  # the figures stand beside the description's first line, not its middle
            borders_layout=TableBordersLayout.HORIZONTAL_LINES,
            headings_style=FontFace(emphasis="BOLD", fill_color=_FILL, color=_INK),
            line_height=4.6,
            padding=(1.0, _CELL_PADDING_X),
            width=self.epw,
            repeat_headings=1,
        ) as table:
            table.row(["Description", "Qty", "Unit price", "Tax", "Amount"])
            for line in doc.lines:
                description = self.fit_cell(self.t(line.description), _LINE_COLUMNS[0] / sum(_LINE_COLUMNS))
                period = self.period(line.period_start, line.period_end)
                if period:
                    description += "\n" + period
                rate = "" if line.tax_rate_ppm is None else self.t(fmt.rate(line.tax_rate_ppm, self.loc))
                table.row([description, self.t(fmt.quantity(line.quantity, self.loc)),
                           self.t(fmt.unit_price(line.unit_amount, doc.currency, self.loc)), rate,
                           self.money(line.amount_micros)])
        self.ln(4)

    def _totals(self) -> None:
        doc = self.doc
        rows: list[tuple[str, int, bool]] = [("Subtotal", doc.subtotal_micros, False), ("Tax", doc.tax_micros, False),
                                             ("Total", doc.total_micros, True)]
        if doc.kind == "invoice" or doc.amount_paid_micros:
            rows.append(("Amount paid", doc.amount_paid_micros, False))
        if doc.amount_credited_micros:
            rows.append(("Amount credited", doc.amount_credited_micros, False))
        rows.append(("Amount due" if doc.kind == "invoice" else "Amount remaining", doc.amount_remaining_micros,
                     True))
        label_x, label_w = self.l_margin + self.epw * 0.5, self.epw * 0.25
        with self.unbreakable() as block:
            for label, micros, strong in rows:
                block.set_x(label_x)
                block.set_font(FONT, "B" if strong else "", 9.5 if strong else 9)
                block.cell(label_w, 6, label, new_x=XPos.RIGHT, new_y=YPos.TOP)
                block.cell(self.epw * 0.25, 6, self.money(micros), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
                if label == "Total":
                    block.line(label_x, block.y, self.w - self.r_margin, block.y)
        self.ln(6)

    def _tax_summary(self) -> None:
        if not self.doc.tax_summary:
            return
        self._label("Tax summary")
        self.set_font(FONT, "", 8.5)
        with self.table(
            col_widths=_TAX_COLUMNS,
            text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT"),
            borders_layout=TableBordersLayout.HORIZONTAL_LINES,
            headings_style=FontFace(emphasis="BOLD", fill_color=_FILL, color=_INK),
            line_height=4.6,
            padding=(1.0, _CELL_PADDING_X),
            width=self.epw,
        ) as table:
            table.row(["Jurisdiction", "Rate", "Taxable amount", "Tax"])
            for row in self.doc.tax_summary:
                reason = _TAXABILITY.get(row.taxability_reason, row.taxability_reason.replace("_", " "))
                name = f"{row.jurisdiction_name} ({reason})" if reason else row.jurisdiction_name
                name = self.fit_cell(self.t(name), _TAX_COLUMNS[0] / sum(_TAX_COLUMNS))
                table.row([name, self.t(fmt.rate(row.rate_ppm, self.loc)), self.money(row.taxable_micros),
                           self.money(row.tax_micros)])
        self.ln(6)

    def _notes(self) -> None:
        for heading, paragraphs in (("Notes", self.doc.notes),
                                    ("Payment instructions", _non_empty([self.doc.payment_instructions]))):
            if not paragraphs:
                continue
            self._label(heading)
            self.set_font(FONT, "", 9)
            for paragraph in paragraphs:
                self.multi_cell(0, 4.8, self.t(paragraph), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
                self.ln(1.5)
            self.ln(4)

    def _label(self, text: str) -> None:
        if self.will_page_break(16):  # a heading is never the last line of a page
            self.add_page()
        self.set_font(FONT, "B", 8)
        self.set_text_color(*_MUTED)
        self.cell(0, 5, text.upper(), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*_INK)


def _non_empty(texts: Iterable[str | None]) -> list[str]:
    return [t for t in texts if t and t.strip()]


def _address_lines(address: Address, pdf: _InvoicePdf) -> list[str]:
    lines = [line for line in (address.line1, address.line2) if line]
    city, state, postal = address.city or "", address.state or "", address.postal_code or ""
    if address.country in _CITY_STATE_POSTAL:
        locality = ", ".join(p for p in (city, " ".join(p for p in (state, postal) if p)) if p)
        lines.append(locality)
    elif address.country in _POSTAL_ON_OWN_LINE:
        lines += [city, postal]
    else:
        lines.append(" ".join(p for p in (postal, city) if p))
        if state:
            lines.append(state)
    english = Locale.parse("en").territories.get(address.country, address.country)
    lines.append(pdf.locale_text(fmt.country(address.country, pdf.loc), english))
    return [line for line in lines if line]
