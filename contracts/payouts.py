"""Payout runs and payouts: the PayoutWorkflow's input, names and messages, the run's state as the layers see it,
the steps' requests, and the API's request bodies."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints
from temporalio.common import TypedSearchAttributes

from contracts import search_attributes as sa
from contracts.common import Body, Day, Id

# Names the workflows are registered and messaged under.
PAYOUT_WORKFLOW = "PayoutWorkflow"
PAYOUT_RUNS_WORKFLOW = "PayoutRunsWorkflow"  # the Schedule's: opens one PayoutWorkflow per tenant
PAYOUT_RUNS_SCHEDULE_ID = "paysaga-payout-runs"
OPENED_UPDATE = "opened"
DECIDE_UPDATE = "decide"
PAYOUT_EVENT_SIGNAL = "payout_event"
STATUS_QUERY = "status"

RunTrigger = Literal["schedule", "api", "cli"]


def payout_run_workflow_id(tenant_id: str, run_id: str) -> str:
    """One workflow id per run: a retried start joins it, a late webhook finds it."""
    return f"payout-run/{tenant_id}/{run_id}"


def scheduled_run_id(tenant_id: str, as_of: date) -> str:
    """The scheduled run of a tenant's day has one id, so a Schedule that fires twice opens one run. The tenant's
    hash keeps it unique across tenants: lifecycle events and outbox messages are keyed by run id."""
    return f"prun_{as_of:%Y%m%d}_" + hashlib.sha256(tenant_id.encode()).hexdigest()[:12]


def payout_id_for(tenant_id: str, payout_key: str) -> str:
    """Ours, derived from the payout's key (account, period, currency): the same payout has the same id in every
    run that would make it."""
    return "po_" + hashlib.sha256(f"{tenant_id}:{payout_key}".encode()).hexdigest()[:24]


def start_search_attributes(inp: PayoutRunInput) -> TypedSearchAttributes:
    pairs: list[tuple[Any, Any]] = [(sa.TENANT_ID, inp.tenant_id), (sa.PAYOUT_RUN_ID, inp.run_id),
                                    (sa.PAYOUT_STATUS, "computing")]
    if inp.connected_account_id:
        pairs.append((sa.CONNECTED_ACCOUNT_ID, inp.connected_account_id))
    return sa.at_start(*pairs)


# --- the API's requests ---------------------------------------------------------------------------------------
class PayoutRunCreate(Body):
    as_of: Day | None = Field(default=None, description="Pay the periods ending on or before this day (default: "
                                                        "today, UTC)")
    connected_account_id: Id | None = Field(default=None, description="Only this account (also one paid "
                                                                      "manually); default: every account")


class DecisionBody(Body):
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


# --- the workflow ---------------------------------------------------------------------------------------------
class PayoutRunInput(BaseModel):
    """The one input of PayoutWorkflow."""

    tenant_id: str
    run_id: str
    as_of: date
    trigger: RunTrigger = "schedule"
    requested_by: str = "schedule"
    connected_account_id: str | None = None
    idempotency_key: str | None = None
    start: Literal["open", "follow"] = "open"  # follow: a later run of the same id (continue-as-new, late news)
    # Timings travel with the input (not read from settings) so that a replay sees the values the run saw.
    batch_size: int = 200
    poll_seconds: float = 6 * 3600.0
    provider_call_timeout_seconds: float = 30.0


class RunState(BaseModel):
    """A payout run as the workflow and the API see it."""

    run_id: str
    tenant_id: str
    status: str
    as_of: date
    trigger: str
    requested_by: str
    connected_account_id: str | None = None
    approval_required: bool = False
    approval_hours: int = 48
    reminder_hours: int = 24
    approval_deadline: datetime | None = None
    decided_by: str | None = None
    decision_reason: str | None = None
    accounts: int = 0
    payable: int = 0
    payouts: dict[str, int] = Field(default_factory=dict)  # status → how many
    totals: dict[str, int] = Field(default_factory=dict)  # currency → net micros paid (or to pay)
    event_seq: int = 1
    workflow_id: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def open_payouts(self) -> int:
        return self.payouts.get("pending", 0) + self.payouts.get("in_transit", 0)


class RunStep(BaseModel):
    tenant_id: str
    run_id: str
    correlation_id: str = ""


class ComputePage(BaseModel):
    tenant_id: str
    run_id: str
    as_of: date
    connected_account_id: str | None = None
    after: str | None = None  # the last account id of the previous page
    limit: int = 200


class PageDone(BaseModel):
    next_after: str | None = None  # None: that was the last page
    accounts: int = 0
    payable: int = 0


class RunChange(BaseModel):
    """Move the run to `status` (applied only if it is still at `expected_seq`)."""

    tenant_id: str
    run_id: str
    status: str
    expected_seq: int
    actor: str
    correlation_id: str
    reason: str | None = None
    approval_deadline: datetime | None = None


class PayBatch(BaseModel):
    tenant_id: str
    run_id: str
    after: str | None = None  # "<account_id>/<currency>" of the last line of the previous batch
    limit: int = 200
    correlation_id: str = ""


class PayBatchDone(BaseModel):
    next_after: str | None = None
    made: int = 0
    returned: list[str] = Field(default_factory=list)  # payouts refused at once: their funds go back


class PayoutNews(BaseModel):
    """What a webhook or a poll says of one payout. `event_id` de-duplicates."""

    event_id: str
    payout_id: str
    status: str
    provider_payout_id: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None


class NewsBatch(BaseModel):
    tenant_id: str
    run_id: str
    news: list[PayoutNews]
    correlation_id: str = ""


class Settled(BaseModel):
    """After news: payouts whose funds must go back to the seller's balance, and the run as it now is."""

    returned: list[str] = Field(default_factory=list)
    failed: list[dict[str, str | int | None]] = Field(default_factory=list)  # for the notifications
    state: RunState


class ReturnFunds(BaseModel):
    tenant_id: str
    run_id: str
    payout_ids: list[str]
    correlation_id: str = ""


class DecisionRequest(BaseModel):
    request_id: str
    decision: Literal["approve", "reject"]
    actor: str
    reason: str | None = None


class PayoutRunsInput(BaseModel):
    """The Schedule's fan-out: one PayoutWorkflow per tenant with a payable connected account."""

    as_of: date | None = None  # None: the day the Schedule fired (UTC)
    after_tenant: str | None = None  # continue-as-new cursor
    batch_size: int = 200
    poll_seconds: float = 6 * 3600.0
    provider_call_timeout_seconds: float = 30.0


class PayoutRunsResult(BaseModel):
    as_of: date
    opened: int = 0
    already_open: int = 0
