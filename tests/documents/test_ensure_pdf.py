"""ensure_invoice_pdf: a document is rendered once and served from the store afterwards, under its tenant's key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from activities.documents import PDF_CONTENT_TYPE, ensure_invoice_pdf, invoice_pdf_key, render_invoice_pdf
from activities.storage import InvalidObjectKey, LocalObjectStore, ObjectStore
from activities.storage.s3 import S3ObjectStore
from contracts.documents import InvoiceDocument
from tests.documents.samples import invoice
from tests.s3_server import REGION, S3Server


class CountingRenderer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, doc: InvoiceDocument) -> bytes:
        self.calls.append(doc.reference)
        return render_invoice_pdf(doc)


@pytest.fixture
def render() -> CountingRenderer:
    return CountingRenderer()


@pytest.fixture(params=["local", "s3"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], ObjectStore]:
    """A new store object on the same storage each call: a retried activity, another worker, another request."""
    if request.param == "local":
        return lambda: LocalObjectStore(tmp_path / "objects")
    s3: S3Server = request.getfixturevalue("s3")
    bucket = s3.new_bucket(f"paysaga-ensure-{uuid.uuid4().hex[:12]}")
    return lambda: S3ObjectStore(bucket, region=REGION, endpoint_url=s3.endpoint_url)


async def test_the_first_call_renders_and_stores_every_later_one_serves(
        make_store: Callable[[], ObjectStore], render: CountingRenderer) -> None:
    doc = invoice(3)
    first = await ensure_invoice_pdf(make_store(), doc, render=render)
    assert render.calls == ["inv_0001"]
    assert first.key == "invoices/ten_acme/inv_0001.pdf" and first.content_type == PDF_CONTENT_TYPE

    for _ in range(3):  # retries, other processes, later requests
        again = await ensure_invoice_pdf(make_store(), doc, render=render)
        assert again == first
    assert render.calls == ["inv_0001"]
    assert await make_store().get(first.key) == render_invoice_pdf(doc)


async def test_each_tenant_has_its_own_file(make_store: Callable[[], ObjectStore], render: CountingRenderer) -> None:
    ours, theirs = invoice(1), invoice(2, tenant_id="ten_other")  # the same reference in two tenants
    a = await ensure_invoice_pdf(make_store(), ours, render=render)
    b = await ensure_invoice_pdf(make_store(), theirs, render=render)
    assert (a.key, b.key) == ("invoices/ten_acme/inv_0001.pdf", "invoices/ten_other/inv_0001.pdf")
    assert render.calls == ["inv_0001", "inv_0001"]
    assert await make_store().get(a.key) != await make_store().get(b.key)


async def test_a_credit_note_is_kept_apart_from_invoices(tmp_path: Path, render: CountingRenderer) -> None:
    note = invoice(1, kind="credit_note", reference="cn_0001", number="CN-1", credit_note_for="INV-2026-0042")
    stored = await ensure_invoice_pdf(LocalObjectStore(tmp_path), note, render=render)
    assert stored.key == "credit-notes/ten_acme/cn_0001.pdf"
    assert (tmp_path / "credit-notes" / "ten_acme" / "cn_0001.pdf").is_file()


@pytest.mark.parametrize(("tenant_id", "reference"), [("ten_acme", "../../etc/passwd"), ("..", "inv_1"),
                                                       ("ten/acme", "inv_1"), ("ten_acme", "")])
async def test_ids_that_would_make_an_unsafe_key_are_refused_before_rendering(
        tmp_path: Path, render: CountingRenderer, tenant_id: str, reference: str) -> None:
    doc = invoice(1, tenant_id=tenant_id, reference=reference)
    with pytest.raises(InvalidObjectKey):
        await ensure_invoice_pdf(LocalObjectStore(tmp_path), doc, render=render)
    assert render.calls == []


async def test_rendering_runs_off_the_event_loop(tmp_path: Path) -> None:
    loop_thread: list[bool] = []

    def render(doc: InvoiceDocument) -> bytes:
        try:
            asyncio.get_running_loop()
            loop_thread.append(True)
        except RuntimeError:
            loop_thread.append(False)
        return b"%PDF-"

    await ensure_invoice_pdf(LocalObjectStore(tmp_path), invoice(1), render=render)
    assert loop_thread == [False]


def test_the_key_is_derived_from_the_document_alone() -> None:
    assert invoice_pdf_key(invoice(1)) == invoice_pdf_key(invoice(5, number="other")) == \
        "invoices/ten_acme/inv_0001.pdf"
