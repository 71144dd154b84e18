"""Invoices and credit notes: the API's requests, the InvoiceWorkflow's input, messages and names, and the steps'
requests."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

from contracts.common import Body, Currency, Day, DecimalAmount, Id, Metadata
from contracts.refunds import RefundInput
from contracts.tax import TaxReversalRequest

INVOICE_WORKFLOW = "InvoiceWorkflow"
FINALIZE_UPDATE = "finalize"
PAY_UPDATE = "pay"
ACTION_UPDATE = "apply"
STATUS_QUERY = "status"
GENERATED_EVENT_TYPE = "billing.invoice.generated.v1"


def invoice_workflow_id(tenant_id: str, invoice_id: str) -> str:
    """One workflow id per invoice: finalizing and every later collection of it run under it."""
    return f"invoice/{tenant_id}/{invoice_id}"


def collection_payment_id(invoice_id: str, attempt: int) -> str:
    """The payment of an invoice's n-th collection attempt: a business id, so a retried start charges once."""
    return f"pay_{invoice_id}_{attempt}"


Quantity = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,12}(\.[0-9]{1,6})?$")]
UnitAmount = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,12}(\.[0-9]{1,12})?$")]
TaxCode = Annotated[str, StringConstraints(pattern=r"^txcd_[0-9]{8}$")]
Series = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{0,15}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=500)]
CollectionMethod = Literal["charge_automatically", "send_invoice"]
CreditReason = Literal["duplicate", "fraudulent", "order_change", "product_unsatisfactory"]
InvoiceStatusName = Literal["draft", "open", "paid", "void", "uncollectible"]


# --- the API's requests ---------------------------------------------------------------------------------------
class LineCreate(Body):
    description: Text
    quantity: Quantity = Field(default="1", description="Decimal string, up to 6 decimals")
    unit_amount: UnitAmount = Field(description="Decimal string in the major unit, tax excluded; up to 12 decimals "
                                                "(the line's amount is rounded half-even to the minor unit)")
    period_start: Day | None = None
    period_end: Day | None = None
    tax_code: TaxCode = "txcd_10000000"


class InvoiceCreate(Body):
    customer_id: Id
    currency: Currency
    collection_method: CollectionMethod = "charge_automatically"
    days_until_due: int | None = Field(default=None, ge=0, le=365,
                                       description="send_invoice: due this many days after finalizing")
    due_date: Day | None = None
    description: Annotated[str, StringConstraints(max_length=500)] | None = None
    series: Series = Field(default="INV", description="Numbers are gapless per series: INV-000001, INV-000002, …")
    period_start: Day | None = None
    period_end: Day | None = None
    lines: list[LineCreate] = Field(default_factory=list, max_length=250)
    metadata: Metadata = Field(default_factory=dict)


class LinesAdd(Body):
    lines: list[LineCreate] = Field(min_length=1, max_length=250)


class PayNow(Body):
    payment_method_id: Id | None = Field(default=None, description="Default: the customer's default payment method")


class PaidOutOfBand(Body):
    memo: Annotated[str, StringConstraints(max_length=500)] | None = Field(
        default=None, description="e.g. the bank transfer's reference")


class VoidBody(Body):
    reason: Text


class UncollectibleBody(Body):
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class CreditLineRequest(Body):
    line_id: Id
    amount: DecimalAmount = Field(description="Decimal string, tax excluded; the line's tax follows")


class CreditNoteCreate(Body):
    """By `lines` or by `amount` (tax excluded, spread over the lines in proportion to what is left of each). On a
    paid invoice, `refund_amount + credit_amount + out_of_band_amount` must equal the note's total (with tax)."""

    reason: CreditReason
    memo: Annotated[str, StringConstraints(max_length=500)] = ""
    lines: list[CreditLineRequest] | None = Field(default=None, max_length=250)
    amount: DecimalAmount | None = None
    refund_amount: DecimalAmount | None = Field(default=None, description="Given back through the card payment")
    credit_amount: DecimalAmount | None = Field(default=None, description="To the customer's credit balance")
    out_of_band_amount: DecimalAmount | None = Field(default=None, description="Given back outside paysaga")

    @model_validator(mode="after")
    def _lines_or_amount(self) -> CreditNoteCreate:
        if (self.lines is None) == (self.amount is None):
            raise ValueError("give either lines or amount")
        return self


# --- the workflow ---------------------------------------------------------------------------------------------
class CollectionTimings(BaseModel):
    """What a collection's PaymentWorkflow runs with; from settings when the invoice workflow starts, then fixed
    for the run so a replay sees what the run saw."""

    webhook_wait_seconds: float = 30.0
    poll_max_interval_seconds: float = 900.0
    three_ds_timeout_seconds: float = 900.0
    settlement_timeout_seconds: float = 86_400.0
    provider_call_timeout_seconds: float = 30.0
    provider_max_attempts: int = 8
    provider_retry_initial_seconds: float = 1.0
    provider_retry_max_interval_seconds: float = 60.0
    dead_letter_hold_seconds: float = 7 * 86_400.0


class InvoiceInput(BaseModel):
    """The one input of InvoiceWorkflow. `start="finalize"`: the first run, which finalizes the draft and then
    delivers and collects it; `"resume"`: a later run, for a collection attempt or a change that comes after the
    first run ended."""

    tenant_id: str
    invoice_id: str
    start: Literal["finalize", "resume"] = "finalize"
    actor: str = "api"
    collection: CollectionTimings = Field(default_factory=CollectionTimings)
    notify_timeout_seconds: float = 30.0


class FinalizeRequest(BaseModel):
    actor: str = "api"


class PayRequest(BaseModel):
    request_id: str = Field(description="De-duplicates a retried request")
    payment_method_id: str | None = None
    actor: str = "api"


class InvoiceState(BaseModel):
    """What the workflow knows of its invoice (and its status query answers)."""

    invoice_id: str
    status: InvoiceStatusName
    number: str | None = None
    customer_id: str
    currency: str
    collection_method: CollectionMethod
    amount_remaining_micros: int
    due_date: date | None = None
    default_payment_method_id: str | None = None
    payment_attempts: int = 0
    last_payment_id: str | None = None
    last_payment_status: str | None = None
    handed_over: str | None = None  # why collection stopped with the invoice still open


class InvoiceStep(BaseModel):
    tenant_id: str
    invoice_id: str
    actor: str = "workflow"
    correlation_id: str = ""


class FinalizeOutcome(BaseModel):
    state: InvoiceState | None = None
    refusal_code: str | None = None
    refusal_message: str | None = None


ActionKind = Literal["paid_out_of_band", "void", "mark_uncollectible", "credit_note"]


class CreditNotePlan(BaseModel):
    """A credit note request in micro-units (the service parsed the decimal strings)."""

    credit_note_id: str
    reason: CreditReason
    memo: str = ""
    lines: list[tuple[str, int]] | None = None
    amount_micros: int | None = None
    refund_micros: int | None = None
    credit_micros: int | None = None
    out_of_band_micros: int | None = None
    idempotency_key: str | None = None


class InvoiceAction(BaseModel):
    """A change of a finalized invoice, applied by its workflow so that what follows it (a tax reversal, a refund)
    is as durable as the change itself."""

    request_id: str
    kind: ActionKind
    tenant_id: str = ""  # set by the workflow from its own input: an action only ever touches its invoice
    invoice_id: str = ""
    actor: str = "api"
    reason: str | None = None
    memo: str | None = None
    credit_note: CreditNotePlan | None = None
    preview: bool = False  # plan and answer, change nothing


class ActionOutcome(BaseModel):
    state: InvoiceState | None = None
    result: dict[str, Any] = Field(default_factory=dict)
    refusal_code: str | None = None
    refusal_message: str | None = None
    tax_reversal: TaxReversalRequest | None = None
    refund: RefundInput | None = None


class PayPlan(BaseModel):
    tenant_id: str
    invoice_id: str
    payment_method_id: str | None = None


class CollectionPlan(BaseModel):
    """What the next collection attempt charges, or why there is none."""

    payment_method_id: str | None = None
    amount_micros: int = 0
    currency: str = ""
    customer_id: str = ""
    attempt: int = 0
    refusal_code: str | None = None
    refusal_message: str | None = None


class Handover(BaseModel):
    """Collection stopped with the invoice open: who takes it from here is told through the outbox."""

    tenant_id: str
    invoice_id: str
    reason: Literal["payment_failed", "no_payment_method", "overdue"]
    payment_id: str | None = None
    failure_code: str | None = None
    correlation_id: str = ""


class InvoiceSettled(BaseModel):
    """The invoice was paid, voided or written off: what a dunning of it hears (and stops on)."""

    event_id: str
    status: str  # paid | void | uncollectible


class SettledNotice(BaseModel):
    """Tell the invoice's dunning, if one runs, that there is nothing left to collect."""

    tenant_id: str
    invoice_id: str
    settled: InvoiceSettled
