"""Unused time credited: the credit note on the invoice line that billed that time, issued through the invoice's
workflow (so its tax reversal is as durable as the note).

A change or a cancellation writes the credit as owed in its own transaction; this issues it: before payment
the note reduces what the invoice asks for; after payment its whole total goes to the customer's credit balance
(`customer_credit:<customer>`), which the customer's next invoice uses when it is finalized. Issuing is
idempotent by the credit note's id; a credit that cannot be issued yet (a payment of the invoice is in flight)
stays owed, and the renewal run issues whatever is owed before it invoices."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

import asyncpg
import structlog
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.stores import invoices as invoice_store
from activities.stores import subscriptions as store
from contracts import search_attributes as sa
from contracts.invoices import (
    ACTION_UPDATE,
    INVOICE_WORKFLOW,
    CollectionTimings,
    CreditNotePlan,
    InvoiceAction,
    InvoiceInput,
    invoice_workflow_id,
)
from domain.invoice import InvoiceRefused, InvoiceStatus, credit_line
from domain.money import Money
from paysaga.db import tenant_tx

log = structlog.get_logger("paysaga.billing")
Issued = Literal["issued", "owed", "refused"]
# The invoice's own answers that mean "not now" rather than "never".
NOT_YET = {"invoice-payment-in-progress"}


def invoice_start(tenant_id: str, invoice_id: str, customer_id: str, currency: str, status: str, task_queue: str,
                  timings: CollectionTimings) -> WithStartWorkflowOperation[object, object]:
    """Joins the invoice's running workflow, or starts a later run of it (the first one may have ended)."""
    return WithStartWorkflowOperation(
        INVOICE_WORKFLOW, InvoiceInput(tenant_id=tenant_id, invoice_id=invoice_id, start="resume", actor="subscription",
                                       collection=timings),
        id=invoice_workflow_id(tenant_id, invoice_id), task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE, execution_timeout=timedelta(days=400),
        search_attributes=sa.at_start((sa.TENANT_ID, tenant_id), (sa.CUSTOMER_ID, customer_id),
                                      (sa.INVOICE_ID, invoice_id), (sa.CURRENCY, currency),
                                      (sa.INVOICE_STATUS, status)))


async def issue(pool: asyncpg.Pool, client: Client, task_queue: str, timings: CollectionTimings, tenant_id: str,
                credit_note_id: str) -> Issued:
    async with tenant_tx(pool, tenant_id) as conn:
        row = await store.credit_row(conn, credit_note_id)
        if row is None or row["state"] != "owed":
            return "issued" if row is not None and row["state"] == "issued" else "refused"
        loaded = await invoice_store.load(conn, row["invoice_id"])
        assert loaded is not None
        invoice = loaded.invoice
        refusal: str | None = None
        plan = None
        if invoice.status in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE, InvoiceStatus.PAID):
            try:
                part = credit_line(invoice, row["line_id"], Money(row["amount_micros"], invoice.currency))
                plan = CreditNotePlan(credit_note_id=credit_note_id, reason="order_change", memo=row["description"],
                                      lines=[(row["line_id"], row["amount_micros"])],
                                      credit_micros=part.total.micros if invoice.status is InvoiceStatus.PAID else None)
            except InvoiceRefused as exc:
                refusal = f"{exc.code}: {exc}"
        else:
            refusal = f"the invoice is {invoice.status}"
        if plan is None:
            await store.settle_credit(conn, credit_note_id, "refused", refusal)
            log.warning("subscription.credit_refused", credit_note_id=credit_note_id, reason=refusal)
            return "refused"
    action = InvoiceAction(request_id=credit_note_id, kind="credit_note", actor="subscription", credit_note=plan)
    try:
        await client.execute_update_with_start_workflow(
            ACTION_UPDATE, action, start_workflow_operation=invoice_start(
                tenant_id, invoice.invoice_id, invoice.customer_id, invoice.currency, invoice.status.value,
                task_queue, timings), result_type=dict, id=f"credit_note-{credit_note_id}")
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        code = cause.type if isinstance(cause, ApplicationError) else None
        if code in NOT_YET or code is None:
            log.info("subscription.credit_owed", credit_note_id=credit_note_id, reason=str(cause))
            return "owed"
        async with tenant_tx(pool, tenant_id) as conn:
            await store.settle_credit(conn, credit_note_id, "refused", f"{code}: {cause}")
        return "refused"
    except RPCError as exc:
        if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED,
                          RPCStatusCode.FAILED_PRECONDITION):
            return "owed"
        raise
    async with tenant_tx(pool, tenant_id) as conn:
        await store.settle_credit(conn, credit_note_id, "issued")
    return "issued"


async def issue_owed(pool: asyncpg.Pool, client: Client, task_queue: str, timings: CollectionTimings,
                     limit: int = 200) -> int:
    """Every credit still owed, all tenants; answers how many were issued."""
    n = 0
    for r in await pool.fetch("SELECT tenant_id::text, credit_note_id FROM paysaga.owed_subscription_credits($1)",
                              limit):
        if await issue(pool, client, task_queue, timings, r["tenant_id"], r["credit_note_id"]) == "issued":
            n += 1
    return n
