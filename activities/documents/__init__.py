"""Documents a person reads: invoice and credit-note PDFs, rendered once and kept in object storage.

`ensure_invoice_pdf(store, doc)` is what an activity calls: the PDF's key is derived from the document
(``invoices/<tenant>/<reference>.pdf``, ``credit-notes/<tenant>/<reference>.pdf``), so a retried activity or a
second request finds the file already stored and never renders it again. A finalized document does not change,
so its first rendering is the one that is kept; and since rendering is deterministic, two racing first requests
store the same bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from activities.documents.pdf import render_invoice_pdf
from activities.storage.base import InvalidObjectKey, ObjectStore, check_key
from contracts.documents import InvoiceDocument, StoredObject

__all__ = ["PDF_CONTENT_TYPE", "ensure_invoice_pdf", "invoice_pdf_key", "render_invoice_pdf"]

PDF_CONTENT_TYPE = "application/pdf"


def invoice_pdf_key(doc: InvoiceDocument) -> str:
    # Each id must stay one segment: tenant "a" with reference "b/c" must not share a key with tenant "a/b".
    for name, value in (("tenant_id", doc.tenant_id), ("reference", doc.reference)):
        if "/" in value:
            raise InvalidObjectKey(f"a document's {name} cannot contain '/': {value!r}")
    folder = "credit-notes" if doc.kind == "credit_note" else "invoices"
    return check_key(f"{folder}/{doc.tenant_id}/{doc.reference}.pdf")


async def ensure_invoice_pdf(
    store: ObjectStore, doc: InvoiceDocument, *, render: Callable[[InvoiceDocument], bytes] = render_invoice_pdf
) -> StoredObject:
    """The stored PDF of `doc`, rendering and storing it only if it is not there yet."""
    key = invoice_pdf_key(doc)
    stored = await store.head(key)
    if stored is not None:
        return stored
    # A long invoice takes a noticeable fraction of a second of CPU: render off the event loop.
    data = await asyncio.to_thread(render, doc)
    return await store.put(key, data, PDF_CONTENT_TYPE)
