"""Activities of the invoice workflow. Each change of an invoice runs in one transaction under the invoice's row
lock, writing its row, lifecycle event, outbox message and journal entries together; the tax engine and the
object store are called outside it, idempotently (by the invoice's or credit note's id)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.documents import ensure_invoice_pdf
from activities.documents.invoice_document import invoice_document
from activities.providers.base import ProviderUnavailable
from activities.storage.base import ObjectStore
from activities.stores import customer_credit, customers, outbox, payment_methods, refunds
from activities.stores import invoices as store
from activities.stores import tax as tax_store
from activities.tax.port import TaxProvider
from activities.tax.seller import load_seller
from contracts.dunning import INVOICE_SETTLED_SIGNAL, dunning_workflow_id
from contracts.errors import INVALID_REQUEST
from contracts.invoice_views import credit_note_json, generated_event, invoice_json
from contracts.invoices import (
    GENERATED_EVENT_TYPE,
    ActionOutcome,
    CollectionPlan,
    FinalizeOutcome,
    Handover,
    InvoiceAction,
    InvoiceState,
    InvoiceStep,
    PayPlan,
    SettledNotice,
    invoice_workflow_id,
)
from contracts.refunds import RefundInput
from contracts.tax import (
    Address,
    TaxId,
    TaxLineInput,
    TaxQuote,
    TaxQuoteRequest,
    TaxReversalLineInput,
    TaxReversalRequest,
)
from domain import invoice_postings as postings
from domain.invoice import InvoiceRefused, InvoiceStatus, LineTax, due_on, plan_credit_note
from domain.money import Money
from domain.refund import RefundStatus, refunded_and_refundable
from domain.tax import TaxError
from paysaga.db import tenant_tx

log = structlog.get_logger("paysaga.billing")

REFUND_REASONS = {"duplicate": "duplicate", "fraudulent": "fraudulent"}  # else requested_by_customer


def state_of(loaded: store.Loaded, default_payment_method_id: str | None = None) -> InvoiceState:
    invoice = loaded.invoice
    return InvoiceState(
        invoice_id=invoice.invoice_id, status=invoice.status.value, number=invoice.number,
        customer_id=invoice.customer_id, currency=invoice.currency, collection_method=invoice.collection_method,
        amount_remaining_micros=invoice.amount_remaining.micros, due_date=invoice.due_date,
        default_payment_method_id=default_payment_method_id)


def _refused(exc: InvoiceRefused) -> ActionOutcome:
    return ActionOutcome(refusal_code=exc.code, refusal_message=str(exc))


def customer_snapshot(row: asyncpg.Record) -> dict[str, Any]:
    """The buyer as billed; an address without one falls back to the customer's country."""
    address = row["address"] or ({"country": row["country"]} if row["country"] else None)
    return {"name": row["name"] or row["email"] or row["customer_id"], "email": row["email"], "address": address,
            "tax_ids": row["tax_ids"], "tax_exempt": row["tax_exempt"]}


class InvoiceActivities:
    def __init__(self, pool: asyncpg.Pool, tax: TaxProvider, objects: ObjectStore,
                 temporal: Client | None = None) -> None:
        self._pool = pool
        self._tax = tax
        self._objects = objects
        self._temporal = temporal  # to tell a dunning run that the invoice settled

    # --- finalizing -----------------------------------------------------------------------------------------
    @activity.defn
    async def finalize_invoice(self, step: InvoiceStep) -> FinalizeOutcome:
        """Quote the tax (outside the transaction: a remote engine never holds a connection), then in one
        transaction: take the series' next number, freeze the lines' tax and who sold to whom, open the invoice,
        post it, and emit `billing.invoice.generated.v1`. A re-run after it committed answers the invoice."""
        async with tenant_tx(self._pool, step.tenant_id) as conn:
            loaded = await store.load(conn, step.invoice_id)
            if loaded is None:
                return FinalizeOutcome(refusal_code="invoice-not-found", refusal_message=step.invoice_id)
            if loaded.invoice.status is not InvoiceStatus.DRAFT:
                return FinalizeOutcome(state=await self._state(conn, loaded))
            customer = await customers.fetch(conn, loaded.invoice.customer_id)
        seller = await load_seller(self._pool, step.tenant_id)
        if seller.profile is None:
            return FinalizeOutcome(refusal_code="seller-profile-required",
                                   refusal_message="Set the tenant's legal name and address first "
                                                   "(PUT /v1/tenant/profile): an invoice names its seller.")
        buyer = customer_snapshot(customer)
        if buyer["address"] is None:
            return FinalizeOutcome(refusal_code="customer-address-required",
                                   refusal_message="The customer needs an address (at least a country): tax "
                                                   "depends on where the customer is.")
        today = datetime.now(UTC).date()
        try:
            quote = await self._tax.quote(TaxQuoteRequest(
                tenant_id=step.tenant_id, reference=step.invoice_id, currency=loaded.invoice.currency,
                tax_date=today, seller=seller.profile.address, registrations=seller.registrations,
                customer=Address.model_validate(buyer["address"]),
                customer_tax_ids=[TaxId.model_validate(t) for t in buyer["tax_ids"]],
                customer_exempt=buyer["tax_exempt"],
                lines=[TaxLineInput(line_id=line.line_id, amount_micros=line.amount.micros, tax_code=line.tax_code)
                       for line in loaded.invoice.lines]))
        except TaxError as exc:
            return FinalizeOutcome(refusal_code="tax-refused", refusal_message=str(exc))
        except ProviderUnavailable as exc:
            raise ApplicationError(f"the tax engine is unavailable: {exc}") from exc
        taxes: dict[str, list[LineTax]] = {}
        for q in quote.lines:
            taxes.setdefault(q.line_id, []).append(LineTax(q.jurisdiction, q.jurisdiction_name, q.rate_ppm,
                                                           q.taxable_micros, q.tax_micros, q.taxability_reason,
                                                           q.tax_type))
        async with tenant_tx(self._pool, step.tenant_id) as conn:
            before = await store.load(conn, step.invoice_id, lock=True)
            assert before is not None
            if before.invoice.status is not InvoiceStatus.DRAFT:
                return FinalizeOutcome(state=await self._state(conn, before))
            if before.invoice.lines != loaded.invoice.lines:
                raise ApplicationError("the draft changed while its tax was quoted; quoting again")
            try:
                credit = await customer_credit.available(conn, before.invoice.customer_id, before.invoice.currency)
                number = await store.take_number(conn, step.tenant_id, before.row["series"])
                due = due_on(today, before.invoice.days_until_due, before.invoice.due_date)
                opened = before.invoice.finalize(number, taxes, due, credit_available=credit)
            except InvoiceRefused as exc:
                return FinalizeOutcome(refusal_code=exc.code, refusal_message=str(exc))
            await store.write_line_taxes(conn, opened)
            columns: dict[str, Any] = {
                "number": number, "due_date": due, "finalized_at": store.NOW, "customer_snapshot": buyer,
                "seller_snapshot": {"name": seller.profile.legal_name,
                                    "address": seller.profile.address.model_dump(mode="json", exclude_none=True),
                                    "tax_ids": [t.model_dump() for t in seller.profile.tax_ids]},
                "tax_quote": quote.model_dump(mode="json"), "locale": customer["preferred_locale"] or "en_US",
                "credit_applied_micros": opened.credit_applied.micros if opened.credit_applied else 0}
            if opened.status is InvoiceStatus.PAID:
                columns["paid_at"] = store.NOW
            after = await store.save_change(conn, before, opened, "invoice.finalized", step.actor,
                                            step.correlation_id, columns=columns,
                                            entries=[postings.finalized(opened)], metadata={"number": number})
            event_id = f"evt_{step.invoice_id}_generated"
            await outbox.put(conn, step.tenant_id, event_id, GENERATED_EVENT_TYPE, "billing.invoice.generated",
                             generated_event(opened, after.row, event_id, after.row["finalized_at"]))
            return FinalizeOutcome(state=await self._state(conn, after))

    @activity.defn
    async def commit_tax(self, step: InvoiceStep) -> None:
        """Record the quote the invoice was finalized with as owed tax (idempotent by the invoice id)."""
        async with tenant_tx(self._pool, step.tenant_id) as conn:
            quote = await conn.fetchval("SELECT tax_quote FROM paysaga.invoices WHERE invoice_id = $1",
                                        step.invoice_id)
        if quote is None:
            raise ApplicationError(f"invoice {step.invoice_id} has no tax quote", type=INVALID_REQUEST,
                                   non_retryable=True)
        await self._commit(TaxQuote.model_validate(quote))

    async def _commit(self, quote: TaxQuote) -> None:
        try:
            await self._tax.commit(quote)
        except ProviderUnavailable as exc:
            raise ApplicationError(f"the tax engine is unavailable: {exc}") from exc

    @activity.defn
    async def store_invoice_pdf(self, step: InvoiceStep) -> str:
        """Render the PDF once and keep it in object storage; the key is the invoice's."""
        async with tenant_tx(self._pool, step.tenant_id) as conn:
            loaded = await store.load(conn, step.invoice_id)
        assert loaded is not None and loaded.invoice.status.finalized
        stored = await ensure_invoice_pdf(self._objects, invoice_document(loaded))
        async with tenant_tx(self._pool, step.tenant_id) as conn:
            await store.set_pdf_key(conn, step.invoice_id, stored.key)
        return stored.key

    @activity.defn
    async def invoice_state(self, step: InvoiceStep) -> InvoiceState:
        async with tenant_tx(self._pool, step.tenant_id) as conn:
            loaded = await store.load(conn, step.invoice_id)
            if loaded is None:
                raise ApplicationError(f"invoice {step.invoice_id} not found", type=INVALID_REQUEST,
                                       non_retryable=True)
            return await self._state(conn, loaded)

    async def _state(self, conn: asyncpg.Connection, loaded: store.Loaded) -> InvoiceState:
        customer = await customers.fetch(conn, loaded.invoice.customer_id)
        state = state_of(loaded, customer["default_payment_method_id"] if customer else None)
        state.payment_attempts = await store.collection_attempts(conn, loaded.invoice.invoice_id)
        return state

    # --- collecting -----------------------------------------------------------------------------------------
    @activity.defn
    async def plan_collection(self, plan: PayPlan) -> CollectionPlan:
        """The next attempt: what remains, charged to the given method or the customer's default."""
        async with tenant_tx(self._pool, plan.tenant_id) as conn:
            loaded = await store.load(conn, plan.invoice_id)
            assert loaded is not None
            invoice = loaded.invoice
            if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE):
                return CollectionPlan(refusal_code="invoice-action-not-allowed",
                                      refusal_message=f"An invoice that is {invoice.status} is not collected.")
            live = await store.live_payment(conn, plan.invoice_id)
            if live is not None:
                return CollectionPlan(refusal_code="invoice-payment-in-progress",
                                      refusal_message=f"Payment {live['payment_id']} is {live['status']}.")
            customer = await customers.fetch(conn, invoice.customer_id)
            # A subscription's invoice is charged to the subscription's payment method, else the customer's.
            own = await conn.fetchval("SELECT default_payment_method_id FROM paysaga.subscriptions "
                                      "WHERE subscription_id = $1", loaded.row["subscription_id"]
                                      ) if loaded.row["subscription_id"] else None
            method_id = plan.payment_method_id or own or (customer["default_payment_method_id"] if customer else None)
            method = await payment_methods.fetch(conn, method_id) if method_id else None
            if method is None or method["customer_id"] != invoice.customer_id or method["detached_at"] is not None:
                return CollectionPlan(refusal_code="no-payment-method",
                                      refusal_message="The customer has no default payment method that can be "
                                                      "charged.")
            return CollectionPlan(payment_method_id=method_id, amount_micros=invoice.amount_remaining.micros,
                                  currency=invoice.currency, customer_id=invoice.customer_id,
                                  attempt=await store.collection_attempts(conn, plan.invoice_id) + 1)

    @activity.defn
    async def hand_over(self, handover: Handover) -> InvoiceState:
        """Collection stopped with the invoice open: an event and an outbox message say why, for whoever
        collects next (dunning, finance)."""
        async with tenant_tx(self._pool, handover.tenant_id) as conn:
            loaded = await store.load(conn, handover.invoice_id, lock=True)
            assert loaded is not None
            if loaded.invoice.status in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE):
                done = await conn.fetchval(
                    "SELECT true FROM paysaga.invoice_events WHERE invoice_id = $1 AND type = $2 "
                    "AND metadata->>'payment_id' IS NOT DISTINCT FROM $3", handover.invoice_id,
                    f"invoice.{handover.reason}", handover.payment_id)
                if not done:
                    loaded = await store.save_change(
                        conn, loaded, loaded.invoice, f"invoice.{handover.reason}", "workflow",
                        handover.correlation_id,
                        metadata={"payment_id": handover.payment_id, "failure_code": handover.failure_code})
            return await self._state(conn, loaded)

    # --- changes after finalization -------------------------------------------------------------------------
    @activity.defn
    async def apply_invoice_action(self, action: InvoiceAction) -> ActionOutcome:
        tenant_id, invoice_id = action.tenant_id, action.invoice_id
        correlation_id = invoice_workflow_id(tenant_id, invoice_id)
        async with tenant_tx(self._pool, tenant_id) as conn:
            loaded = await store.load(conn, invoice_id, lock=not action.preview)
            if loaded is None:
                return ActionOutcome(refusal_code="invoice-not-found", refusal_message=invoice_id)
            if action.kind == "credit_note":
                return await self._credit_note(conn, loaded, action, correlation_id)
            live = await store.live_payment(conn, invoice_id)
            if live is not None and live["status"] != "completed":
                return ActionOutcome(refusal_code="invoice-payment-in-progress",
                                     refusal_message=f"Payment {live['payment_id']} is {live['status']}: wait for "
                                                     "it to finish.")
            try:
                after = await self._change(conn, loaded, action, correlation_id)
            except InvoiceRefused as exc:
                return _refused(exc)
            reversal = None
            if after.invoice.status is InvoiceStatus.VOID:
                reversal = TaxReversalRequest(tenant_id=tenant_id, original_reference=invoice_id,
                                              reference=f"{invoice_id}_void")
            return ActionOutcome(state=await self._state(conn, after), result=invoice_json(after.invoice, after.row),
                                 tax_reversal=reversal)

    async def _change(self, conn: asyncpg.Connection, loaded: store.Loaded, action: InvoiceAction,
                      correlation_id: str) -> store.Loaded:
        invoice = loaded.invoice
        meta = {"reason": action.reason, "memo": action.memo}
        if action.kind == "void":
            return await store.save_change(conn, loaded, invoice.void(), "invoice.voided", action.actor,
                                           correlation_id, columns={"voided_at": store.NOW,
                                                                    "void_reason": action.reason},
                                           entries=[postings.voided(invoice)], metadata=meta)
        if action.kind == "mark_uncollectible":
            return await store.save_change(conn, loaded, invoice.mark_uncollectible(), "invoice.marked_uncollectible",
                                           action.actor, correlation_id, columns={"uncollectible_at": store.NOW},
                                           entries=[postings.marked_uncollectible(invoice)], metadata=meta)
        remaining = invoice.amount_remaining
        paid = invoice.pay(remaining)
        return await store.save_change(conn, loaded, paid, "invoice.paid", action.actor, correlation_id,
                                       columns={"paid_at": store.NOW, "paid_out_of_band": True},
                                       entries=[postings.recovered(invoice),
                                                postings.paid_out_of_band(invoice, remaining)],
                                       metadata={**meta, "out_of_band": True})

    async def _credit_note(self, conn: asyncpg.Connection, loaded: store.Loaded, action: InvoiceAction,
                           correlation_id: str) -> ActionOutcome:
        plan = action.credit_note
        assert plan is not None
        invoice = loaded.invoice
        existing = await store.credit_note_row(conn, plan.credit_note_id)
        if existing is not None:  # a retried request: the note it created
            note = next(n for n in invoice.credit_notes if n.credit_note_id == plan.credit_note_id)
            return ActionOutcome(state=await self._state(conn, loaded),
                                 result=credit_note_json(note, existing, invoice.currency))
        currency = invoice.currency

        def money(micros: int | None) -> Money | None:
            return Money(micros, currency) if micros is not None else None

        try:
            note = plan_credit_note(
                invoice, plan.credit_note_id, plan.reason,
                lines=[(line_id, Money(m, currency)) for line_id, m in plan.lines] if plan.lines is not None else None,
                amount=money(plan.amount_micros), refund=money(plan.refund_micros), credit=money(plan.credit_micros),
                out_of_band=money(plan.out_of_band_micros), memo=plan.memo)
            after_invoice = invoice.credit(note)
        except InvoiceRefused as exc:
            return _refused(exc)
        live = await store.live_payment(conn, invoice.invoice_id)
        if note.before_payment and live is not None:
            return ActionOutcome(refusal_code="invoice-payment-in-progress",
                                 refusal_message=f"Payment {live['payment_id']} is {live['status']}.")
        refund_part = note.settlement.refund if note.settlement else Money.zero(currency)
        refund = None
        if refund_part.is_positive():
            refusal = await _refundable(conn, live, refund_part)
            if refusal is not None:
                return ActionOutcome(refusal_code="credit-note-refund-exceeds-payment", refusal_message=refusal)
            assert live is not None
            refund = RefundInput(tenant_id=invoice.tenant_id, refund_id=f"re_{plan.credit_note_id}",
                                 payment_id=live["payment_id"], amount_micros=refund_part.micros,
                                 reason=REFUND_REASONS.get(note.reason, "requested_by_customer"),
                                 idempotency_key=plan.idempotency_key, actor=action.actor)
        number = f"{invoice.number}-CN{len(invoice.credit_notes) + 1:02d}"
        preview_row = {"number": number, "refund_id": refund.refund_id if refund else None, "created_at": None}
        if action.preview:
            return ActionOutcome(state=await self._state(conn, loaded),
                                 result=credit_note_json(note, preview_row, currency))
        row = await store.insert_credit_note(conn, invoice.tenant_id, note, number,
                                             refund.refund_id if refund else None, plan.idempotency_key)
        event = "invoice.paid" if after_invoice.status is not invoice.status else "invoice.credit_note_created"
        after = await store.save_change(conn, loaded, after_invoice, event, action.actor, correlation_id,
                                        columns={"paid_at": store.NOW} if event == "invoice.paid" else {},
                                        entries=[postings.credit_note_issued(invoice, note)],
                                        metadata={"credit_note_id": note.credit_note_id, "number": number})
        body = credit_note_json(note, row, currency)
        await outbox.enqueue(conn, invoice.tenant_id, f"evt_{note.credit_note_id}_created", "credit_note.created",
                             {"credit_note": body})
        reversal = TaxReversalRequest(
            tenant_id=invoice.tenant_id, original_reference=invoice.invoice_id, reference=note.credit_note_id,
            lines=[TaxReversalLineInput(line_id=cl.line_id, amount_micros=cl.amount.micros) for cl in note.lines])
        return ActionOutcome(state=await self._state(conn, after), result=body, tax_reversal=reversal,
                             refund=refund)

    @activity.defn
    async def tell_dunning(self, notice: SettledNotice) -> None:
        """Signal the invoice's dunning that there is nothing left to collect; none running is fine."""
        if self._temporal is None:
            return
        handle = self._temporal.get_workflow_handle(dunning_workflow_id(notice.tenant_id, notice.invoice_id))
        try:
            await handle.signal(INVOICE_SETTLED_SIGNAL, notice.settled)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise

    @activity.defn
    async def reverse_tax(self, req: TaxReversalRequest) -> None:
        """Take back the tax of a void or a credit note. The invoice's tax is committed first (idempotently):
        a change may follow the finalization before the workflow's own commit step ran."""
        async with tenant_tx(self._pool, req.tenant_id) as conn:
            quote = await conn.fetchval("SELECT tax_quote FROM paysaga.invoices WHERE invoice_id = $1",
                                        req.original_reference)
            done = await tax_store.fetch_reversal(conn, req.reference)
        if done is not None or quote is None:
            return
        await self._commit(TaxQuote.model_validate(quote))
        try:
            await self._tax.reverse(req)
        except ProviderUnavailable as exc:
            raise ApplicationError(f"the tax engine is unavailable: {exc}") from exc
        except TaxError as exc:
            # Nothing left to reverse (an invoice credited in full): the ledger already says so.
            log.warning("invoice.tax_reversal_refused", reference=req.reference, reason=str(exc))


async def _refundable(conn: asyncpg.Connection, live: asyncpg.Record | None, amount: Money) -> str | None:
    """Why `amount` cannot be refunded through the invoice's card payment, or None."""
    if live is None or live["status"] != "completed":
        return "The invoice was not paid by card: give the money back out of band or as a credit."
    payment = await refunds.lock_payment(conn, live["payment_id"])
    captured = Money(payment["amount_micros"], payment["currency"])
    prior = await refunds.list_refunds(conn, live["payment_id"])
    _, refundable = refunded_and_refundable(
        captured, [(Money(r.amount_micros, r.currency), RefundStatus(r.status)) for r in prior], True)
    if amount > refundable:
        return f"At most {refundable.to_decimal_string()} can still be refunded on payment {live['payment_id']}."
    return None


__all__ = ["InvoiceActivities", "invoice_workflow_id"]
