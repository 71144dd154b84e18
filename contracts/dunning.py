"""Dunning: the DunningWorkflow's input, messages and names. One workflow per unpaid invoice, started when the
invoice's first charge failed (a subscription's renewal, or any invoice charged automatically)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from contracts.invoices import CollectionTimings, InvoiceSettled
from contracts.notifications import Notification as NotificationMessage
from domain.dunning import (
    ChargeFailure,
    DunningEnd,
    DunningPolicy,
    DunningStage,
    DunningStep,
    FinalAction,
    Notification,
    RetryAdvice,
    RetryTrigger,
)

DUNNING_WORKFLOW = "DunningWorkflow"
PAYMENT_METHOD_SIGNAL = "payment_method_updated"  # the customer has a new default payment method: retry now
INVOICE_SETTLED_SIGNAL = "invoice_settled"  # the invoice was paid, voided or written off otherwise: stop
STATUS_QUERY = "status"


__all__ = ["InvoiceSettled"]  # the settled signal's body is the invoice's


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
    prepared: DunningPrepared | None = Field(
        default=None, description="The first steps, done by the starter before the start (see DunningPrepared)")

    def first_failure(self) -> ChargeFailure:
        """The charge that opened dunning, to the second (as the planner takes instants)."""
        return ChargeFailure(self.first_failure_at.replace(microsecond=0), self.decline_code, RetryTrigger.INITIAL,
                             self.advice_code)

    def started_record(self) -> DunningRecord:
        """The invoice's `dunning_started` event (once: its key)."""
        return DunningRecord(tenant_id=self.tenant_id, invoice_id=self.invoice_id, type="dunning_started",
                             metadata={"decline_code": self.decline_code, "key": "started",
                                       "payment_id": self.failed_payment_id})


class PaymentMethodUpdated(BaseModel):
    event_id: str
    payment_method_id: str
    at: datetime


# --- the policy, as stored and as the workflow carries it -------------------------------------------------------
class NotificationModel(BaseModel):
    template: str = Field(min_length=1, max_length=100)
    tone: str = Field(min_length=1, max_length=40)


class StageModel(BaseModel):
    retry_after_seconds: int = Field(gt=0, description="After the first failure")
    notification: NotificationModel


class FinalActionModel(BaseModel):
    subscription: Literal["unpaid", "canceled"] = "unpaid"
    mark_invoice_uncollectible: bool = True
    notification: NotificationModel = NotificationModel(template="subscription_payment_failed_final", tone="firm")


class DunningPolicyModel(BaseModel):
    """A tenant's dunning policy; `None` fields take the built-in defaults (`domain.dunning.DunningPolicy`)."""

    stages: list[StageModel] | None = None
    final_action: FinalActionModel | None = None
    hard_decline_notification: NotificationModel | None = None
    tones: list[str] | None = None
    advice_hours: tuple[int, int] | None = None
    accept_advice: bool | None = None
    hard_declines: list[str] | None = None

    def to_domain(self) -> DunningPolicy:
        defaults = DunningPolicy()
        return DunningPolicy(
            stages=tuple(DunningStage(timedelta(seconds=s.retry_after_seconds),
                                      Notification(s.notification.template, s.notification.tone))
                         for s in self.stages) if self.stages is not None else defaults.stages,
            final_action=FinalAction(DunningEnd(self.final_action.subscription),
                                     self.final_action.mark_invoice_uncollectible,
                                     Notification(self.final_action.notification.template,
                                                  self.final_action.notification.tone))
            if self.final_action is not None else defaults.final_action,
            hard_decline_notification=Notification(self.hard_decline_notification.template,
                                                   self.hard_decline_notification.tone)
            if self.hard_decline_notification is not None else defaults.hard_decline_notification,
            tones=tuple(self.tones) if self.tones is not None else defaults.tones,
            advice_hours=self.advice_hours or defaults.advice_hours,
            accept_advice=defaults.accept_advice if self.accept_advice is None else self.accept_advice,
            hard_declines=frozenset(self.hard_declines) if self.hard_declines is not None
            else defaults.hard_declines)


# --- the steps' requests --------------------------------------------------------------------------------------
class DunningSetup(BaseModel):
    policy: DunningPolicyModel = Field(default_factory=DunningPolicyModel)
    currency: str
    amount_remaining_micros: int
    number: str | None = None


class DunningPrepared(BaseModel):
    """What a workflow's first task would do, done by the process that starts it, just before the start: the
    setup, the `dunning_started` record, the invoice found collectable, the advice for the first retry and the
    first plan's notification. A workflow started with it plans from these and waits at once: its first task has
    no local step, so a dunning costs its start and its timer until the first retry."""

    setup: DunningSetup
    advice: RetryAdviceModel | None = None
    notified: list[str] = Field(default_factory=list, description="Notification keys already sent")


class DunningRecord(BaseModel):
    """A dunning event of the invoice (an invoice lifecycle event with its outbox message)."""

    tenant_id: str
    invoice_id: str
    type: Literal["dunning_started", "dunning_retry_failed", "dunning_recovered", "dunning_exhausted",
                  "dunning_stopped"]
    metadata: dict[str, Any] = Field(default_factory=dict)


class AdviceRequest(BaseModel):
    tenant_id: str
    customer_id: str
    invoice_id: str
    attempt: int


class RetryAdviceModel(BaseModel):
    hour_of_day: int | None = None
    tone: str | None = None
    reason: str = ""
    model: str = "builtin-history-v1"

    def to_domain(self) -> RetryAdvice:
        return RetryAdvice(self.hour_of_day, self.tone, f"{self.model}: {self.reason}" if self.reason else self.model)


class FinalDunning(BaseModel):
    tenant_id: str
    invoice_id: str
    mark_invoice_uncollectible: bool
    subscription_end: Literal["unpaid", "canceled"]
    explanation: str


class DunningState(BaseModel):
    """What the status query answers: where dunning stands and why."""

    invoice_id: str
    stage: int = 0
    attempts: int = 1
    waiting_until: datetime | None = None
    waiting_for: str | None = None  # retry | payment_method
    last_decline_code: str | None = None
    last_payment_id: str | None = None
    outcome: str | None = None  # recovered | exhausted | settled_elsewhere
    explanations: list[str] = Field(default_factory=list)


def notification_key(plan: DunningStep, failures: int) -> str:
    """Once per stage (or per wait, or for the end): a re-planned step does not notify twice."""
    return f"{plan.action.value}_{plan.stage or failures}"


def dunning_notification(inp: DunningInput, plan: DunningStep, key: str,
                         amount_remaining_micros: int | None) -> NotificationMessage:
    assert plan.notification is not None
    return NotificationMessage(
        notification_id=f"ntf_{inp.invoice_id}_dunning_{key}", tenant_id=inp.tenant_id,
        kind=f"invoice.dunning_{plan.action.value}", subject=f"Payment of invoice {inp.invoice_id}",
        invoice_id=inp.invoice_id,
        data={"template": plan.notification.template, "tone": plan.notification.tone,
              "retry_at": plan.at.isoformat(), "stage": plan.stage, "customer_id": inp.customer_id,
              "subscription_id": inp.subscription_id, "explanation": plan.explanation,
              "amount_remaining_micros": amount_remaining_micros})


DunningInput.model_rebuild()  # its `prepared` is declared below it
