"""The renewal run: RenewalRunWorkflow's input, progress and names, and its activities' requests and results.

A run renews everything due at `at` in batches of subscriptions taken in keyset order of their next due instant;
a batch's invoicing is one transaction per tenant, its charging a separate activity (so invoicing never waits for
collection, which a provider's rate limit may slow down)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

RENEWAL_RUN_WORKFLOW = "RenewalRunWorkflow"
RENEWAL_SCHEDULE_ID = "paysaga-renewals"
PROGRESS_QUERY = "progress"


def renewal_run_workflow_id(at: datetime) -> str:
    return f"renewals/{at.strftime('%Y%m%dT%H%M%SZ')}"


class Key(BaseModel):
    """A position in the renewal run's keyset order: (next due instant, tenant, subscription)."""

    at: datetime
    tenant_id: str
    subscription_id: str


class Batch(BaseModel):
    """Due subscriptions with key in (after, last], in the given tenants."""

    batch_no: int
    after: Key | None = None
    last: Key
    tenants: list[str]
    n: int


class Pacing(BaseModel):
    """How charges are paced: a token bucket per provider account, shared by every worker (0: unpaced)."""

    account: str = "sandbox"
    rate_per_second: float = 0.0
    burst: float = 100.0
    chunk: int = Field(default=100, description="Charges sent to the provider per call")
    concurrency: int = Field(default=4, description="Provider calls of one batch in flight at once")


class RenewalRunInput(BaseModel):
    at: datetime | None = Field(default=None, description="Renew what is due at this instant (default: the start)")
    dry_run: bool = False
    run_id: str = ""  # the logical run, the same across continue-as-new; default: the first run's workflow id
    batch_size: int = 1000
    invoice_window: int = Field(default=2, description="Invoicing batches in flight")
    charge_window: int = Field(default=2, description="Charging batches in flight")
    batches_per_run: int = Field(default=60, description="Continue as new after this many batches")
    settle_wait_seconds: float = Field(default=60.0, description="How long a batch polls for asynchronous outcomes")
    pacing: Pacing = Field(default_factory=Pacing)
    provider_call_timeout_seconds: float = 30.0
    # Carried over by continue-as-new.
    cursor: Key | None = None
    pending_charges: list[Batch] = Field(default_factory=list)
    next_batch_no: int = 0
    progress: RenewalProgress | None = None


class PacingReport(BaseModel):
    rate_per_second: float = 0.0
    account: str = ""
    waited_seconds: float = 0.0
    throttled: int = Field(default=0, description="429 answers from the provider, each backed off")


class RenewalProgress(BaseModel):
    """What a run has done so far (its progress query answers this)."""

    run_id: str = ""
    at: datetime | None = None
    dry_run: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    due: int = 0
    invoiced: int = 0
    charged: int = 0
    succeeded: int = 0
    failed: int = 0
    handed_to_dunning: int = 0
    handed_to_customer: int = 0  # 3-D Secure: the payment's own PaymentWorkflow
    still_processing: int = 0  # outcomes left to webhooks (and the next run's poll)
    not_charged: int = 0  # send_invoice, paused collection, unpaid subscriptions, free invoices
    renewed: int = 0
    trials_converted: int = 0
    trials_paused: int = 0
    trials_canceled: int = 0
    trial_notices: int = 0
    ended: int = 0  # scheduled cancellations that took effect
    expired: int = 0  # unpaid first invoices past their time
    collection_resumed: int = 0
    deferred: int = 0  # could not be invoiced now (e.g. a customer without an address): tried again later
    credits_issued: int = 0
    dunning_starts_recovered: int = 0
    batches: int = 0
    runs: int = 1  # this run and the ones it continued as new
    rate_per_second: float = 0.0
    pacing: PacingReport = Field(default_factory=PacingReport)
    done: bool = False


class PlanRequest(BaseModel):
    at: datetime
    after: Key | None = None
    batch_size: int
    batches: int
    next_batch_no: int


class InvoiceBatchRequest(BaseModel):
    run_id: str
    at: datetime
    batch: Batch


class InvoiceBatchResult(BaseModel):
    batch_no: int
    tenants: list[str] = Field(default_factory=list)  # tenants with charges to make
    due: int = 0
    invoiced: int = 0
    to_charge: int = 0
    not_charged: int = 0
    renewed: int = 0
    trials_converted: int = 0
    trials_paused: int = 0
    trials_canceled: int = 0
    trial_notices: int = 0
    ended: int = 0
    expired: int = 0
    collection_resumed: int = 0
    deferred: int = 0


class ChargeBatchRequest(BaseModel):
    run_id: str
    batch_no: int
    tenants: list[str]
    pacing: Pacing
    settle_wait_seconds: float = 60.0


class ChargeBatchResult(BaseModel):
    batch_no: int
    charged: int = 0
    succeeded: int = 0
    failed: int = 0
    handed_to_dunning: int = 0
    handed_to_customer: int = 0
    still_processing: int = 0
    waited_seconds: float = 0.0
    throttled: int = 0


class SweepResult(BaseModel):
    """What a run found owed from earlier runs or other paths: credit notes to issue, dunning starts."""

    credits_issued: int = 0
    dunning_started: int = 0
    settled: int = 0


RenewalRunInput.model_rebuild()
