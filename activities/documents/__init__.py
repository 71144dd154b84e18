"""Documents a person reads: invoice and credit-note PDFs."""

from __future__ import annotations

from activities.documents.pdf import render_invoice_pdf

__all__ = ["render_invoice_pdf"]
