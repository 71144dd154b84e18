"""Payout runs: start one (update-with-start of its PayoutWorkflow), read runs, their report (JSON and CSV) and
their payouts, approve or reject a run awaiting approval; and what a provider's payout or account webhook does."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.stores import connected_accounts as account_store
from activities.stores import payouts as store
from contracts.auth import Principal
from contracts.errors import PAYOUT_RUN_DECIDED, PAYOUT_RUN_NOT_AWAITING_APPROVAL
from contracts.payouts import (
    DECIDE_UPDATE,
    OPENED_UPDATE,
    PAYOUT_EVENT_SIGNAL,
    PAYOUT_WORKFLOW,
    DecisionRequest,
    PayoutNews,
    PayoutRunCreate,
    PayoutRunInput,
    RunState,
    RunTrigger,
    payout_run_workflow_id,
    start_search_attributes,
)
from contracts.webhooks import NormalizedEvent
from domain.connect import onboarding_from_provider
from domain.fx import Conversion, FxRate, parse_rate
from domain.money import Money, RoundingMode
from domain.payout_runs import from_provider
from domain.payouts import PayoutDecision, PayoutLine, PayoutPeriod, write_report_csv
from paysaga.db import tenant_tx
from paysaga.settings import Settings
from services import audit, idempotency, temporal
from services.context import AppContext
from services.errors import BadRequest, Conflict, Unprocessable, not_found, temporarily_unavailable
from services.ids import new_id

log = structlog.get_logger("paysaga.payouts")
RUNS_PATH = "/v1/payouts/runs"
CSV = "text/csv; charset=utf-8"


def run_json(state: RunState) -> dict[str, Any]:
    return {
        "id": state.run_id, "object": "payout_run", "status": state.status, "as_of": state.as_of.isoformat(),
        "trigger": state.trigger, "requested_by": state.requested_by,
        "connected_account_id": state.connected_account_id, "approval_required": state.approval_required,
        "approval_deadline": state.approval_deadline.isoformat() if state.approval_deadline else None,
        "decided_by": state.decided_by, "decision_reason": state.decision_reason, "accounts": state.accounts,
        "payable": state.payable, "payouts": state.payouts,
        "totals": {c: Money(n, c).to_decimal_string() for c, n in state.totals.items()},
        "workflow_id": state.workflow_id,
        "created_at": state.created_at.isoformat() if state.created_at else None,
        "updated_at": state.updated_at.isoformat() if state.updated_at else None,
    }


def run_input(settings: Settings, tenant_id: str, run_id: str, as_of: date, trigger: RunTrigger, requested_by: str,
              connected_account_id: str | None, key: str | None) -> PayoutRunInput:
    """The workflow's input; batch size and poll interval come from settings now and travel with the run."""
    return PayoutRunInput(tenant_id=tenant_id, run_id=run_id, as_of=as_of, trigger=trigger,
                          requested_by=requested_by, connected_account_id=connected_account_id, idempotency_key=key,
                          batch_size=settings.payout_batch_size, poll_seconds=settings.payout_poll_seconds,
                          provider_call_timeout_seconds=settings.provider_call_timeout_seconds)


async def open_run(client: Client, settings: Settings, inp: PayoutRunInput, admission: Any = None) -> RunState:
    """Start the run's workflow (or join it) and answer once the run is recorded."""
    def start() -> WithStartWorkflowOperation[Any, Any]:
        return WithStartWorkflowOperation(
            PAYOUT_WORKFLOW, inp, id=payout_run_workflow_id(inp.tenant_id, inp.run_id), task_queue=settings.task_queue,
            result_type=RunState, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE, search_attributes=start_search_attributes(inp))

    return await temporal.update_with_start(client, OPENED_UPDATE, start, result_type=RunState, admission=admission)


async def create_run(ctx: AppContext, who: Principal, body: PayoutRunCreate, key: str | None) -> idempotency.Answer:
    """Finance starts a run now (for every account, or one): it computes, waits for approval if the tenant asks
    for it, and pays."""
    key = idempotency.require_key(key)
    as_of = body.as_of or datetime.now(UTC).date()
    if as_of > datetime.now(UTC).date() + timedelta(days=1):
        raise Unprocessable("invalid-as-of", "Invalid day", "A run pays periods that have ended: as_of is not in "
                                                            "the future.")

    async def check(conn: asyncpg.Connection) -> None:
        if body.connected_account_id and await account_store.fetch(conn, body.connected_account_id) is None:
            raise Unprocessable("unknown-connected-account", "Unknown connected account",
                                f"No connected account {body.connected_account_id}.")

    async def act(run_id: str) -> idempotency.Answer:
        state = await open_run(ctx.temporal, ctx.settings, run_input(
            ctx.settings, who.tenant_id, run_id, as_of, "api", who.actor, body.connected_account_id, key),
            ctx.admission)
        return idempotency.Answer(201, run_json(state))

    async def record(conn: asyncpg.Connection, answer: idempotency.Answer) -> None:
        await audit.record(conn, who, "payout_run.create", "payout_run", answer.body["id"],
                           answer.body["workflow_id"], as_of=as_of.isoformat(),
                           connected_account_id=body.connected_account_id)

    return await idempotency.once(ctx, who, key, RUNS_PATH, body.model_dump(mode="json"), new_id("prun"), act,
                                  check=check, record=record)


async def _state(conn: asyncpg.Connection, run_id: str) -> RunState:
    row = await store.fetch_run(conn, run_id)
    if row is None:
        raise not_found("payout_run", run_id)
    return await store.run_state(conn, row)


async def get_run(ctx: AppContext, who: Principal, run_id: str) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        return run_json(await _state(conn, run_id))


async def list_runs(ctx: AppContext, who: Principal, limit: int, starting_after: str | None) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        try:
            rows, more = await store.list_runs(conn, limit, starting_after)
        except LookupError:
            raise BadRequest("invalid-cursor", "Invalid cursor", f"No payout run {starting_after}.") from None
        data = [run_json(await store.run_state(conn, r)) for r in rows]
    return {"object": "list", "data": data, "has_more": more, "next_cursor": data[-1]["id"] if more else None}


async def report(ctx: AppContext, who: Principal, run_id: str) -> dict[str, Any]:
    """The run's lines: per account and currency, gross, fees, refunds, disputes, reserve, net and FX."""
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        state = await _state(conn, run_id)
        rows = await store.lines_of(conn, run_id)
        payouts = {(p["account_id"], p["currency"]): p for p in await store.payouts_of_run(conn, run_id)}
    lines = []
    for row in rows:
        payout = payouts.get((row["account_id"], row["currency"]))
        lines.append({**store.line_json(row), "payout_id": payout["payout_id"] if payout else None,
                      "payout_status": payout["status"] if payout else None})
    return {"object": "payout_report", "run_id": run_id, "status": state.status, "as_of": state.as_of.isoformat(),
            "lines": lines}


def _line(row: asyncpg.Record) -> PayoutLine:
    currency = row["currency"]

    def money(name: str) -> Money:
        return Money(row[f"{name}_micros"], currency)

    fx = None
    if row["settlement_currency"]:
        rate = FxRate(currency, row["settlement_currency"], parse_rate(row["fx_rate"]), row["fx_as_of"],
                      row["fx_source"])
        fx = Conversion(money("net"), Money(row["settlement_net_micros"], row["settlement_currency"]), rate,
                        RoundingMode.HALF_EVEN, True)
    return PayoutLine(row["account_id"], currency, PayoutPeriod(row["period_start"], row["period_end"]),
                      money("brought_forward"), money("gross"), money("fees"), money("refunds"), money("disputes"),
                      money("other"), money("balance"), money("reserve"), money("net"), money("carried_forward"),
                      money("pending"), PayoutDecision(row["decision"]), fx)


async def report_csv(ctx: AppContext, who: Principal, run_id: str) -> str:
    """The same lines as CSV (domain/payouts.py write_report_csv)."""
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        await _state(conn, run_id)
        rows = await store.lines_of(conn, run_id)
    out = io.StringIO(newline="")
    write_report_csv([_line(r) for r in rows], out)
    return out.getvalue()


async def decide(ctx: AppContext, who: Principal, run_id: str, decision: str, reason: str | None) -> dict[str, Any]:
    """Finance's approval (the run pays) or rejection (it pays nothing), through the run's workflow."""
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        state = await _state(conn, run_id)
    request = DecisionRequest(request_id=f"{decision}-{run_id}", decision=decision,  # type: ignore[arg-type]
                              actor=who.actor, reason=reason)
    try:
        result = await temporal.update(ctx.temporal, state.workflow_id, DECIDE_UPDATE, request,
                                       update_id=f"decide-{run_id}-{decision}", result_type=RunState)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type in (PAYOUT_RUN_NOT_AWAITING_APPROVAL,
                                                                  PAYOUT_RUN_DECIDED):
            slug = "payout-run-decided" if cause.type == PAYOUT_RUN_DECIDED else "payout-run-not-awaiting-approval"
            raise Conflict(slug, "Payout run cannot be decided", cause.message) from exc
        raise
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        raise Conflict("payout-run-not-awaiting-approval", "Payout run cannot be decided",
                       f"The run is {state.status}.") from exc
    await audit.record_tx(ctx, who, f"payout_run.{decision}", "payout_run", run_id, state.workflow_id,
                          reason=reason, status=result.status)
    return run_json(result)


async def decide_run(client: Client, tenant_id: str, run_id: str, decision: str, actor: str, reason: str | None
                     ) -> RunState:
    """The same decision from the command line (by the run's workflow id; no API key involved)."""
    request = DecisionRequest(request_id=f"{decision}-{run_id}", decision=decision,  # type: ignore[arg-type]
                              actor=actor, reason=reason)
    try:
        return await temporal.update(client, payout_run_workflow_id(tenant_id, run_id), DECIDE_UPDATE, request,
                                     update_id=f"decide-{run_id}-{decision}", result_type=RunState)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise Conflict("payout-run-not-awaiting-approval", "Payout run cannot be decided",
                       cause.message if isinstance(cause, ApplicationError) else str(exc)) from exc


async def list_payouts(ctx: AppContext, who: Principal, limit: int, starting_after: str | None,
                       account_id: str | None, run_id: str | None) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        try:
            rows, more = await store.list_payouts(conn, limit, starting_after, account_id, run_id)
        except LookupError:
            raise BadRequest("invalid-cursor", "Invalid cursor", f"No payout {starting_after}.") from None
    data = [store.payout_json(r) for r in rows]
    return {"object": "list", "data": data, "has_more": more, "next_cursor": data[-1]["id"] if more else None}


async def get_payout(ctx: AppContext, who: Principal, payout_id: str) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        row = await store.fetch_payout(conn, payout_id)
    if row is None:
        raise not_found("payout", payout_id)
    return store.payout_json(row)


# --- webhooks -------------------------------------------------------------------------------------------------
async def on_webhook(ctx: AppContext, conn: asyncpg.Connection | None, event: NormalizedEvent
                     ) -> tuple[str, dict[str, Any]]:
    """News of a payout goes to its run's workflow (started again to follow it up when it has ended), in the
    transaction that recorded the event in the inbox: if the signal cannot be delivered, the provider retries."""
    notice = event.payout
    if conn is None or notice is None:
        return "ignored", {"received": True, "ignored": "not a paysaga payout"}
    row = await store.fetch_payout(conn, event.reference_id) if event.reference_id else None
    if row is None and notice.provider_payout_id:
        row = await store.payout_of_provider(conn, notice.provider_payout_id)
    if row is None:
        return "ignored", {"received": True, "ignored": "unknown payout"}
    if from_provider(notice.status) is None:
        return "no-op", {"received": True, "note": f"payout status {notice.status} not acted on"}
    news = PayoutNews(event_id=event.event_id, payout_id=row["payout_id"], status=notice.status or "",
                      provider_payout_id=notice.provider_payout_id, failure_code=notice.failure_code,
                      failure_message=notice.failure_message)
    try:
        await ctx.temporal.get_workflow_handle(row["workflow_id"]).signal(PAYOUT_EVENT_SIGNAL, news)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise temporarily_unavailable() from exc
        await _follow_up(ctx, conn, row, news)
    log.info("webhook.accepted", provider=event.provider, event_id=event.event_id, type=event.event_type,
             tenant_id=event.tenant_id, payout_id=row["payout_id"])
    return "accepted", {"received": True}


async def _follow_up(ctx: AppContext, conn: asyncpg.Connection, payout: asyncpg.Record, news: PayoutNews) -> None:
    """The run's workflow has ended (news came days later): a new run of the same id follows the payout up."""
    run = await store.fetch_run(conn, payout["run_id"])
    assert run is not None
    inp = run_input(ctx.settings, str(run["tenant_id"]), run["run_id"], run["as_of"], run["trigger"],
                    run["requested_by"], run["connected_account_id"], None).model_copy(update={"start": "follow"})
    try:
        await ctx.temporal.start_workflow(
            PAYOUT_WORKFLOW, inp, id=run["workflow_id"], task_queue=ctx.settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE, start_signal=PAYOUT_EVENT_SIGNAL,
            start_signal_args=[news], search_attributes=start_search_attributes(inp))
    except RPCError as exc:
        raise temporarily_unavailable() from exc


async def on_account_webhook(ctx: AppContext, conn: asyncpg.Connection | None, event: NormalizedEvent
                             ) -> tuple[str, dict[str, Any]]:
    """`account.updated`: where the connected account's onboarding stands, in the inbox's transaction."""
    notice = event.account
    if conn is None or notice is None:
        return "ignored", {"received": True, "ignored": "not a paysaga connected account"}
    row = await account_store.of_provider(conn, notice.provider_account_id)
    if row is None:
        return "ignored", {"received": True, "ignored": "unknown connected account"}
    status = onboarding_from_provider(payouts_enabled=notice.payouts_enabled,
                                      details_submitted=notice.details_submitted,
                                      disabled_reason=notice.disabled_reason)
    locked = await account_store.fetch(conn, row["account_id"], lock=True)
    assert locked is not None
    await account_store.update(conn, locked, {"onboarding_status": status.value}, f"webhook:{event.event_id}",
                               event.event_id)
    return "accepted", {"received": True}
