"""Invoices and credit notes: drafts and their lines, finalize, pay, the finance-only changes (void, write off,
paid out of band, credit notes), reads, and the PDFs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from api import schemas
from api.deps import Caller, Ctx, DayQuery, Finance, IdempotencyKey, Payments, day
from api.docs import created, problems
from api.responses import answered
from contracts.invoices import (
    CreditNoteCreate,
    InvoiceCreate,
    LinesAdd,
    PaidOutOfBand,
    PayNow,
    UncollectibleBody,
    VoidBody,
)
from services import invoices

router = APIRouter(prefix="/v1", tags=["invoices"])
PDF_RESPONSE = {200: {"content": {invoices.PDF: {"schema": {"type": "string", "format": "binary"}}},
                      "description": "The PDF, rendered once and then served from object storage"}}


@router.post("/invoices", status_code=201, response_model=None, responses={
    **created(schemas.Invoice, "The draft"), **problems(403, 409)})
async def create_invoice(body: InvoiceCreate, ctx: Ctx, who: Payments,
                         idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """A draft, with lines or without; its lines can change until it is finalized."""
    return answered(await invoices.create(ctx, who, body, idempotency_key))


@router.get("/invoices", response_model=schemas.InvoiceList)
async def list_invoices(
    ctx: Ctx, who: Caller, limit: Annotated[int, Query(ge=1, le=100)] = 20,
    starting_after: Annotated[str | None, Query(max_length=64)] = None,
    customer_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Literal["draft", "open", "paid", "void", "uncollectible"] | None = None,
    period_from: DayQuery = None, period_to: DayQuery = None,
) -> dict[str, Any]:
    """Newest first; pass `next_cursor` as `starting_after` for the next page. The period filters keep invoices
    whose period overlaps [period_from, period_to]."""
    return await invoices.list_page(ctx, who, limit, starting_after, customer_id=customer_id, status=status,
                                    period_from=day(period_from, "period_from"), period_to=day(period_to, "period_to"))


@router.get("/invoices/{invoice_id}", response_model=schemas.Invoice, responses=problems(404))
async def get_invoice(invoice_id: str, ctx: Ctx, who: Caller) -> dict[str, Any]:
    return await invoices.get(ctx, who, invoice_id)


@router.post("/invoices/{invoice_id}/lines", response_model=schemas.Invoice, responses=problems(403, 404, 409))
async def add_lines(invoice_id: str, body: LinesAdd, ctx: Ctx, who: Payments) -> dict[str, Any]:
    return await invoices.add_lines(ctx, who, invoice_id, body)


@router.delete("/invoices/{invoice_id}/lines/{line_id}", response_model=schemas.Invoice,
               responses=problems(403, 404, 409))
async def remove_line(invoice_id: str, line_id: str, ctx: Ctx, who: Payments) -> dict[str, Any]:
    return await invoices.remove_line(ctx, who, invoice_id, line_id)


@router.post("/invoices/{invoice_id}/finalize", response_model=schemas.Invoice, responses=problems(403, 404, 409))
async def finalize_invoice(invoice_id: str, ctx: Ctx, who: Payments) -> dict[str, Any]:
    """Number (gapless per series), tax, due date, ledger entry, `billing.invoice.generated.v1`; then its
    workflow stores the PDF, notifies the customer and collects (or waits until the due date)."""
    return await invoices.finalize(ctx, who, invoice_id)


@router.post("/invoices/{invoice_id}/pay", status_code=202, response_model=None, responses={
    202: {"model": schemas.InvoicePayment, "description": "The attempt's payment has started"},
    **problems(403, 404, 409)})
async def pay_invoice(invoice_id: str, body: PayNow, ctx: Ctx, who: Payments,
                      idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Charge what remains now, to the given payment method or the customer's default."""
    return answered(await invoices.pay(ctx, who, invoice_id, body, idempotency_key))


@router.post("/invoices/{invoice_id}/mark_paid_out_of_band", response_model=schemas.Invoice,
             responses=problems(403, 404, 409))
async def mark_paid_out_of_band(invoice_id: str, body: PaidOutOfBand, ctx: Ctx, who: Finance) -> dict[str, Any]:
    """Finance: the customer paid outside paysaga (a bank transfer, a cheque)."""
    return await invoices.change(ctx, who, invoice_id, "paid_out_of_band", memo=body.memo)


@router.post("/invoices/{invoice_id}/void", response_model=schemas.Invoice, responses=problems(403, 404, 409))
async def void_invoice(invoice_id: str, body: VoidBody, ctx: Ctx, who: Finance) -> dict[str, Any]:
    """Finance only: an open or uncollectible invoice is cancelled; its ledger entries and its tax are reversed."""
    return await invoices.change(ctx, who, invoice_id, "void", reason=body.reason)


@router.post("/invoices/{invoice_id}/mark_uncollectible", response_model=schemas.Invoice,
             responses=problems(403, 404, 409))
async def mark_uncollectible(invoice_id: str, body: UncollectibleBody, ctx: Ctx, who: Finance) -> dict[str, Any]:
    """Finance: what remains is written off as bad debt; the invoice can still be paid or voided."""
    return await invoices.change(ctx, who, invoice_id, "mark_uncollectible", reason=body.reason)


@router.post("/invoices/{invoice_id}/credit_notes", status_code=201, response_model=None, responses={
    **created(schemas.CreditNote, "The credit note"), **problems(403, 404, 409)})
async def create_credit_note(invoice_id: str, body: CreditNoteCreate, ctx: Ctx, who: Finance,
                             idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Finance: before payment it reduces what is due; after, it is given back as a refund through the payment,
    a credit to the customer's balance, or out of band (the three summing to its total)."""
    return answered(await invoices.create_credit_note(ctx, who, invoice_id, body, idempotency_key))


@router.post("/invoices/{invoice_id}/credit_notes/preview", response_model=schemas.CreditNote,
             responses=problems(404, 409))
async def preview_credit_note(invoice_id: str, body: CreditNoteCreate, ctx: Ctx, who: Caller) -> dict[str, Any]:
    """The credit note the same request would create (lines, tax per jurisdiction, total), changing nothing."""
    return await invoices.preview_credit_note(ctx, who, invoice_id, body)


@router.get("/invoices/{invoice_id}/credit_notes", response_model=schemas.CreditNoteList, responses=problems(404))
async def list_credit_notes(invoice_id: str, ctx: Ctx, who: Caller) -> dict[str, Any]:
    return await invoices.credit_notes(ctx, who, invoice_id)


@router.get("/invoices/{invoice_id}/pdf", response_class=Response, responses={**PDF_RESPONSE,
                                                                             **problems(404, 409)})
async def invoice_pdf(invoice_id: str, ctx: Ctx, who: Caller) -> Response:
    data = await invoices.pdf(ctx, who, invoice_id)
    return Response(data, media_type=invoices.PDF,
                    headers={"Content-Disposition": f'inline; filename="{invoice_id}.pdf"'})


@router.get("/credit_notes/{credit_note_id}/pdf", response_class=Response, responses={**PDF_RESPONSE,
                                                                                     **problems(404)})
async def credit_note_pdf(credit_note_id: str, ctx: Ctx, who: Caller) -> Response:
    data = await invoices.credit_note_pdf(ctx, who, credit_note_id)
    return Response(data, media_type=invoices.PDF,
                    headers={"Content-Disposition": f'inline; filename="{credit_note_id}.pdf"'})
