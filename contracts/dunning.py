"""Dunning: the DunningWorkflow's input, messages and names. One workflow per unpaid invoice, started when the
invoice's first charge failed (a subscription's renewal, or any invoice charged automatically)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from contracts.invoices import CollectionTimings

DUNNING_WORKFLOW = "DunningWorkflow"
PAYMENT_METHOD_SIGNAL = "payment_method_updated"  # the customer has a new default payment method: retry now
INVOICE_SETTLED_SIGNAL = "invoice_settled"  # the invoice was paid, voided or written off otherwise: stop
STATUS_QUERY = "status"


def dunning_workflow_id(tenant_id: str, invoice_id: str) -> str:
    return f"dunning/{tenant_id}/{invoice_id}"


class DunningInput(BaseModel):
    """The one input of DunningWorkflow: the invoice, and the failed charge that opened dunning."""

    tenant_id: str
    invoice_id: str
    customer_id: str
    subscription_id: str | None = None
    period_start: datetime | None = Field(default=None, description="The subscription period the invoice bills")
    first_failure_at: datetime
    decline_code: str | None = None
    advice_code: str | None = None
    failed_payment_id: str | None = None
    attempts_before: int = Field(default=1, description="Charges already made of this invoice (the failed one)")
    collection: CollectionTimings = Field(default_factory=CollectionTimings)


class PaymentMethodUpdated(BaseModel):
    event_id: str
    payment_method_id: str
    at: datetime


class InvoiceSettled(BaseModel):
    event_id: str
    status: str  # paid | void | uncollectible
