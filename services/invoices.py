"""Invoices: drafts (create, add and remove lines) change in one transaction here; finalizing, collecting and
every change of a finalized invoice go through its InvoiceWorkflow (update-with-start), which makes what follows
them durable; reads, the PDF and credit notes' listing read the database."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import asyncpg
from temporalio.client import WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError

from activities.documents import PDF_CONTENT_TYPE, ensure_invoice_pdf
from activities.documents.invoice_document import credit_note_document, invoice_document
from activities.storage import ObjectNotFound, build_object_store
from activities.stores import customers as customer_store
from activities.stores import invoices as store
from contracts import search_attributes as sa
from contracts.auth import Principal
from contracts.invoice_views import credit_note_json, invoice_json
from contracts.invoices import (
    ACTION_UPDATE,
    FINALIZE_UPDATE,
    INVOICE_WORKFLOW,
    PAY_UPDATE,
    CreditNoteCreate,
    CreditNotePlan,
    FinalizeRequest,
    InvoiceAction,
    InvoiceCreate,
    InvoiceInput,
    InvoiceState,
    LineCreate,
    LinesAdd,
    PayNow,
    PayRequest,
    invoice_workflow_id,
)
from domain.invoice import COLLECTION_METHODS, Invoice, InvoiceRefused, InvoiceStatus, make_line, plan_credit_note
from domain.money import Money, MoneyError, UnknownCurrency, get_currency
from paysaga.db import tenant_tx
from services import audit, idempotency, payment_methods, temporal
from services.context import AppContext
from services.errors import Conflict, ServiceError, Unprocessable, not_found
from services.ids import new_id
from services.timings import collection_timings

INVOICES_PATH = "/v1/invoices"
# Refusals of the domain that are about the request's content (422); the rest are about the invoice's state (409).
UNPROCESSABLE = {"invalid-amount", "invalid-quantity", "invalid-period", "invalid-due-date", "currency-mismatch",
                 "invalid-reason", "invalid-credit-note", "credit-exceeds-line", "credit-exceeds-invoice",
                 "credit-exceeds-remaining", "credit-exceeds-paid", "credit-note-unbalanced", "line-not-found",
                 "duplicate-line", "invalid-tax", "tax-refused", "customer-address-required",
                 "credit-note-refund-exceeds-payment", "no-payment-method", "invoice-empty"}


def refusal(code: str, message: str) -> ServiceError:
    error = Unprocessable if code in UNPROCESSABLE else Conflict
    return error(code, "Invoice refused", message)


# --- drafts ---------------------------------------------------------------------------------------------------
def _lines(body_lines: list[LineCreate], currency: str) -> list[Any]:
    try:
        return [make_line(new_id("li"), line.description, line.quantity, line.unit_amount, currency,
                          period_start=line.period_start, period_end=line.period_end, tax_code=line.tax_code)
                for line in body_lines]
    except InvoiceRefused as exc:
        raise refusal(exc.code, str(exc)) from exc


def _check_collection(body: InvoiceCreate) -> None:
    assert body.collection_method in COLLECTION_METHODS
    if body.collection_method == "charge_automatically" and (body.days_until_due is not None or body.due_date):
        raise Unprocessable("invalid-due-date", "Invoice refused", "An invoice charged automatically is due when "
                            "it is finalized: days_until_due and due_date are for send_invoice.")
    if body.collection_method == "send_invoice" and body.days_until_due is None and body.due_date is None:
        raise Unprocessable("invalid-due-date", "Invoice refused", "send_invoice needs days_until_due or due_date.")


async def create(ctx: AppContext, who: Principal, body: InvoiceCreate, key: str | None) -> idempotency.Answer:
    """A draft with its lines, its `invoice.created` event and outbox message, in one transaction."""
    key = idempotency.require_key(key)
    try:
        currency = get_currency(body.currency).code
    except UnknownCurrency as exc:
        raise Unprocessable("unknown-currency", "Unknown currency", str(exc)) from exc
    _check_collection(body)
    lines = _lines(body.lines, currency)

    async def check(conn: asyncpg.Connection) -> None:
        if not await customer_store.exists(conn, body.customer_id):
            raise Unprocessable("unknown-customer", "Unknown customer", f"No customer {body.customer_id}.")

    async def act(invoice_id: str) -> idempotency.Answer:
        async with tenant_tx(ctx.pool, who.tenant_id) as conn:
            fresh = await store.insert_draft(
                conn, tenant_id=who.tenant_id, invoice_id=invoice_id, customer_id=body.customer_id,
                currency=currency, collection_method=body.collection_method, days_until_due=body.days_until_due,
                due_date=body.due_date, description=body.description, series=body.series,
                period_start=body.period_start, period_end=body.period_end, metadata=body.metadata,
                idempotency_key=key, workflow_id=invoice_workflow_id(who.tenant_id, invoice_id))
            if fresh:
                await store.insert_lines(conn, who.tenant_id, invoice_id, lines, first_position=1)
                loaded = await store.load(conn, invoice_id)
                assert loaded is not None
                await store.record_event(conn, loaded.row, "invoice.created", None, who.actor, who.request_id or "",
                                         invoice_json(loaded.invoice, loaded.row))
            loaded = await store.load(conn, invoice_id)
        assert loaded is not None
        return idempotency.Answer(201, invoice_json(loaded.invoice, loaded.row))

    return await idempotency.once(ctx, who, key, INVOICES_PATH, body.model_dump(mode="json"), new_id("in"), act,
                                  check=check)


async def _draft_change(ctx: AppContext, who: Principal, invoice_id: str, event: str,
                        change: Any) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        loaded = await _locked(conn, invoice_id)
        try:
            after = await change(conn, loaded)
        except InvoiceRefused as exc:
            raise refusal(exc.code, str(exc)) from exc
        changed = await store.save_change(conn, loaded, after, event, who.actor, who.request_id or "")
    return invoice_json(changed.invoice, changed.row)


async def add_lines(ctx: AppContext, who: Principal, invoice_id: str, body: LinesAdd) -> dict[str, Any]:
    async def change(conn: asyncpg.Connection, loaded: store.Loaded) -> Invoice:
        lines = _lines(body.lines, loaded.invoice.currency)
        invoice = loaded.invoice
        for line in lines:
            invoice = invoice.add_line(line)
        await store.insert_lines(conn, who.tenant_id, invoice_id, lines,
                                 first_position=await store.next_position(conn, invoice_id))
        return invoice

    return await _draft_change(ctx, who, invoice_id, "invoice.lines_added", change)


async def remove_line(ctx: AppContext, who: Principal, invoice_id: str, line_id: str) -> dict[str, Any]:
    async def change(conn: asyncpg.Connection, loaded: store.Loaded) -> Invoice:
        invoice = loaded.invoice.remove_line(line_id)
        await store.delete_line(conn, invoice_id, line_id)
        return invoice

    return await _draft_change(ctx, who, invoice_id, "invoice.line_removed", change)


async def _locked(conn: asyncpg.Connection, invoice_id: str) -> store.Loaded:
    loaded = await store.load(conn, invoice_id, lock=True)
    if loaded is None:
        raise not_found("invoice", invoice_id)
    return loaded


# --- reads ----------------------------------------------------------------------------------------------------
async def load(ctx: AppContext, who: Principal, invoice_id: str) -> store.Loaded:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        loaded = await store.load(conn, invoice_id)
    if loaded is None:
        raise not_found("invoice", invoice_id)
    return loaded


async def get(ctx: AppContext, who: Principal, invoice_id: str) -> dict[str, Any]:
    loaded = await load(ctx, who, invoice_id)
    return invoice_json(loaded.invoice, loaded.row)


async def list_page(ctx: AppContext, who: Principal, limit: int, starting_after: str | None, *,
                    customer_id: str | None, status: str | None, period_from: date | None,
                    period_to: date | None) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        try:
            page, more = await store.list_page(conn, limit, starting_after, customer_id=customer_id, status=status,
                                               period_from=period_from, period_to=period_to)
        except LookupError:
            raise Unprocessable("invalid-cursor", "Invalid cursor",
                                f"starting_after names no invoice: {starting_after}") from None
    data = [invoice_json(x.invoice, x.row) for x in page]
    return {"object": "list", "data": data, "has_more": more, "next_cursor": data[-1]["id"] if more else None}


async def pdf(ctx: AppContext, who: Principal, invoice_id: str) -> bytes:
    """The stored PDF; rendered and stored first if the workflow has not got to it yet (once either way)."""
    loaded = await load(ctx, who, invoice_id)
    if not loaded.invoice.status.finalized:
        raise Conflict("invoice-not-finalized", "No PDF yet", "A draft has no PDF: finalize it first.")
    objects = build_object_store(ctx.settings)
    key = loaded.row["pdf_key"]
    if key is not None:
        try:
            return await objects.get(key)
        except ObjectNotFound:
            pass  # lost from storage: render it again (the document is the one that was issued)
    stored = await ensure_invoice_pdf(objects, invoice_document(loaded))
    return await objects.get(stored.key)


async def credit_notes(ctx: AppContext, who: Principal, invoice_id: str) -> dict[str, Any]:
    loaded = await load(ctx, who, invoice_id)
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        rows = {r["credit_note_id"]: r for r in await store.credit_note_rows(conn, invoice_id)}
    data = [credit_note_json(note, rows[note.credit_note_id], loaded.invoice.currency)
            for note in loaded.invoice.credit_notes]
    return {"object": "list", "data": data, "has_more": False}


async def credit_note_pdf(ctx: AppContext, who: Principal, credit_note_id: str) -> bytes:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        row = await store.credit_note_row(conn, credit_note_id)
        if row is None:
            raise not_found("credit_note", credit_note_id)
        loaded = await store.load(conn, row["invoice_id"])
    assert loaded is not None
    note = next(n for n in loaded.invoice.credit_notes if n.credit_note_id == credit_note_id)
    objects = build_object_store(ctx.settings)
    stored = await ensure_invoice_pdf(objects, credit_note_document(loaded, note, row))
    return await objects.get(stored.key)


PDF = PDF_CONTENT_TYPE


# --- through the workflow -------------------------------------------------------------------------------------
def _start(ctx: AppContext, who: Principal, loaded: store.Loaded, start: str) -> WithStartWorkflowOperation[Any, Any]:
    inp = InvoiceInput(tenant_id=who.tenant_id, invoice_id=loaded.invoice.invoice_id, start=start,  # type: ignore[arg-type]
                       actor=who.actor, collection=collection_timings(ctx.settings))
    return WithStartWorkflowOperation(
        INVOICE_WORKFLOW, inp, id=invoice_workflow_id(who.tenant_id, inp.invoice_id),
        task_queue=ctx.settings.task_queue, result_type=InvoiceState,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # A later run of the same invoice (a payment or a change after the first run ended) reuses the id.
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        execution_timeout=timedelta(days=400),
        search_attributes=sa.at_start((sa.TENANT_ID, who.tenant_id), (sa.CUSTOMER_ID, loaded.invoice.customer_id),
                                      (sa.INVOICE_ID, inp.invoice_id), (sa.CURRENCY, loaded.invoice.currency),
                                      (sa.INVOICE_STATUS, loaded.invoice.status.value)))


async def _through_workflow(ctx: AppContext, who: Principal, loaded: store.Loaded, start: str, update: str,
                            arg: Any, result_type: type, update_id: str | None = None) -> Any:
    try:
        return await temporal.update_with_start(ctx.temporal, update, lambda: _start(ctx, who, loaded, start),
                                                result_type=result_type, admission=ctx.admission, arg=arg,
                                                update_id=update_id)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type:
            raise refusal(cause.type, cause.message) from exc
        raise


async def finalize(ctx: AppContext, who: Principal, invoice_id: str) -> dict[str, Any]:
    """Answers the finalized invoice (number, tax, total); finalizing one already finalized answers it as is."""
    loaded = await load(ctx, who, invoice_id)
    if loaded.invoice.status is InvoiceStatus.DRAFT:
        if not loaded.invoice.lines:
            raise refusal("invoice-empty", "An invoice needs at least one line to be finalized.")
        await _through_workflow(ctx, who, loaded, "finalize", FINALIZE_UPDATE, FinalizeRequest(actor=who.actor),
                                InvoiceState)
        await audit.record_tx(ctx, who, "invoice.finalize", "invoice", invoice_id,
                              invoice_workflow_id(who.tenant_id, invoice_id))
    return await get(ctx, who, invoice_id)


async def pay(ctx: AppContext, who: Principal, invoice_id: str, body: PayNow, key: str | None) -> idempotency.Answer:
    """A collection attempt now: answers once its payment has started (202; the payment's own status follows)."""
    key = idempotency.require_key(key)
    loaded = await load(ctx, who, invoice_id)
    if loaded.invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE):
        raise refusal("invoice-action-not-allowed", f"An invoice that is {loaded.invoice.status} cannot be paid.")
    if body.payment_method_id is not None:
        async with tenant_tx(ctx.pool, who.tenant_id) as conn:
            await payment_methods.chargeable(conn, body.payment_method_id, loaded.invoice.customer_id)

    async def act(request_id: str) -> idempotency.Answer:
        state: InvoiceState = await _through_workflow(
            ctx, who, loaded, "resume", PAY_UPDATE,
            PayRequest(request_id=request_id, payment_method_id=body.payment_method_id, actor=who.actor),
            InvoiceState, update_id=f"pay-{request_id}")
        answer = await get(ctx, who, invoice_id)
        return idempotency.Answer(202, {**answer, "payment_id": state.last_payment_id})

    return await idempotency.once(ctx, who, key, f"{INVOICES_PATH}/{invoice_id}/pay", body.model_dump(mode="json"),
                                  new_id("req"), act, final_errors=(Conflict, Unprocessable))


async def act(ctx: AppContext, who: Principal, invoice_id: str, action: InvoiceAction) -> dict[str, Any]:
    loaded = await load(ctx, who, invoice_id)
    if loaded.invoice.status is InvoiceStatus.DRAFT:
        raise refusal("invoice-action-not-allowed", "A draft is changed by its lines; finalize it first.")
    result: dict[str, Any] = await _through_workflow(ctx, who, loaded, "resume", ACTION_UPDATE, action, dict,
                                                     update_id=f"{action.kind}-{action.request_id}")
    if not action.preview:
        await audit.record_tx(ctx, who, f"invoice.{action.kind}", "invoice", invoice_id,
                              invoice_workflow_id(who.tenant_id, invoice_id), reason=action.reason)
    return result


async def change(ctx: AppContext, who: Principal, invoice_id: str, kind: str, *, reason: str | None = None,
                 memo: str | None = None) -> dict[str, Any]:
    """Void, write off or mark paid out of band; each is its own request (a retry of a done change is refused by
    the invoice's state, which says what happened)."""
    return await act(ctx, who, invoice_id, InvoiceAction(request_id=new_id("req"), kind=kind,  # type: ignore[arg-type]
                                                         actor=who.actor, reason=reason, memo=memo))


def credit_plan(body: CreditNoteCreate, currency: str, credit_note_id: str, key: str | None) -> CreditNotePlan:
    def micros(text: str | None, what: str) -> int | None:
        if text is None:
            return None
        try:
            return Money.parse(text, currency).micros
        except MoneyError as exc:
            raise Unprocessable("invalid-amount", "Invalid amount", f"{what}: {exc}") from exc

    return CreditNotePlan(
        credit_note_id=credit_note_id, reason=body.reason, memo=body.memo,
        lines=[(line.line_id, micros(line.amount, "lines[].amount") or 0) for line in body.lines]
        if body.lines is not None else None,
        amount_micros=micros(body.amount, "amount"), refund_micros=micros(body.refund_amount, "refund_amount"),
        credit_micros=micros(body.credit_amount, "credit_amount"),
        out_of_band_micros=micros(body.out_of_band_amount, "out_of_band_amount"), idempotency_key=key)


async def create_credit_note(ctx: AppContext, who: Principal, invoice_id: str, body: CreditNoteCreate,
                             key: str | None) -> idempotency.Answer:
    key = idempotency.require_key(key)
    loaded = await load(ctx, who, invoice_id)

    async def make(credit_note_id: str) -> idempotency.Answer:
        plan = credit_plan(body, loaded.invoice.currency, credit_note_id, key)
        note = await act(ctx, who, invoice_id, InvoiceAction(request_id=credit_note_id, kind="credit_note",
                                                             actor=who.actor, credit_note=plan))
        return idempotency.Answer(201, note)

    return await idempotency.once(ctx, who, key, f"{INVOICES_PATH}/{invoice_id}/credit_notes",
                                  body.model_dump(mode="json"), new_id("cn"), make,
                                  final_errors=(Conflict, Unprocessable))


async def preview_credit_note(ctx: AppContext, who: Principal, invoice_id: str,
                              body: CreditNoteCreate) -> dict[str, Any]:
    """What the credit note would be (its lines, tax per jurisdiction and total), changing nothing: the same rules
    the workflow applies, on the invoice as it is now."""
    loaded = await load(ctx, who, invoice_id)
    invoice = loaded.invoice
    plan = credit_plan(body, invoice.currency, "cn_preview", None)

    def money(micros: int | None) -> Money | None:
        return Money(micros, invoice.currency) if micros is not None else None

    try:
        note = plan_credit_note(
            invoice, plan.credit_note_id, plan.reason,
            lines=[(i, Money(m, invoice.currency)) for i, m in plan.lines] if plan.lines is not None else None,
            amount=money(plan.amount_micros), refund=money(plan.refund_micros), credit=money(plan.credit_micros),
            out_of_band=money(plan.out_of_band_micros), memo=plan.memo)
    except InvoiceRefused as exc:
        raise refusal(exc.code, str(exc)) from exc
    number = f"{invoice.number}-CN{len(invoice.credit_notes) + 1:02d}"
    return {**credit_note_json(note, {"number": number}, invoice.currency), "id": None, "preview": True}
