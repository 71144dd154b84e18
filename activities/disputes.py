"""Activities of the dispute saga. Database steps are idempotent (insert-if-absent; every change is applied only
at the event_seq the workflow last saw); provider steps answer a dispute the provider opened, and are idempotent
by the dispute's own state there (a submission or close that already went through is answered as it stands)."""

from __future__ import annotations

import time
from collections.abc import Awaitable

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.fx.base import FxRates
from activities.providers.base import BalanceTransaction, DisputeResult, PaymentProvider, ProviderUnavailable
from activities.refunds import settled_by_provider
from activities.stores import disputes as dispute_store
from activities.stores import ledger, provider_settlements, splits
from activities.stores import payments as payment_store
from contracts.disputes import (
    DisputeChange,
    DisputeInput,
    DisputeView,
    ProviderDispute,
    SubmitDisputeEvidence,
    dispute_workflow_id,
)
from contracts.errors import INVALID_REQUEST, INVALID_TRANSITION
from domain.dispute import DisputeStatus, InvalidDisputeTransition, check_transition
from domain.ledger import dispute_funds_reinstated, dispute_funds_withdrawn
from domain.money import Money
from paysaga.db import tenant_tx

log = structlog.get_logger("paysaga.billing")


class DisputeActivities:
    def __init__(self, pool: asyncpg.Pool, provider: PaymentProvider, rates: FxRates | None = None) -> None:
        self._pool = pool
        self._provider = provider
        self._rates = rates

    async def _settled(self, provider_dispute_id: str, withdrawn: int | None, reinstated: int | None
                       ) -> list[BalanceTransaction]:
        wanted = {"dispute"} if withdrawn else set()
        wanted |= {"dispute_reversal"} if reinstated else set()
        if not wanted:
            return []
        found = []
        for category in sorted(wanted):
            found += await settled_by_provider(self._provider, provider_dispute_id, category)
        return found

    # --- database steps (local activities) ----------------------------------------------------------------
    @activity.defn
    async def record_dispute(self, inp: DisputeInput) -> DisputeView:
        """The dispute as it opened: needs_response, the disputed amount withdrawn (an inquiry withdraws none)."""
        withdrawn = 0 if inp.provider_status.startswith("warning_") else inp.amount_micros
        settled = await self._settled(inp.provider_dispute_id, withdrawn, None)
        async with tenant_tx(self._pool, inp.tenant_id) as conn:
            existing = await dispute_store.fetch_dispute(conn, inp.dispute_id)
            if existing is not None:
                return existing
            wf_id = dispute_workflow_id(inp.tenant_id, inp.dispute_id)
            view = await dispute_store.insert(conn, inp, withdrawn, wf_id)
            await post_funds(conn, view, withdrawn=withdrawn, settled=settled, rates=self._rates)
            await dispute_store.record_dispute_event(
                conn, view, 1, None, "dispute.created", inp.actor, wf_id,
                {"reason": inp.reason, "amount_micros": inp.amount_micros, "funds_withdrawn_micros": withdrawn,
                 "provider_dispute_id": inp.provider_dispute_id,
                 "evidence_due_by": inp.evidence_due_by.isoformat() if inp.evidence_due_by else None})
        log.info("billing.dispute.opened", dispute_id=view.id, payment_id=view.payment_id, tenant_id=view.tenant_id,
                 provider_dispute_id=view.provider_dispute_id, amount_micros=view.amount_micros,
                 currency=view.currency, reason=view.reason, correlation_id=wf_id)
        return view

    @activity.defn
    async def apply_dispute_change(self, req: DisputeChange) -> DisputeView:
        settled: list[BalanceTransaction] = []
        if req.funds_withdrawn_micros or req.funds_reinstated_micros:
            async with tenant_tx(self._pool, req.tenant_id) as conn:
                current = await dispute_store.fetch_dispute(conn, req.dispute_id)
            if current is not None:
                settled = await self._settled(current.provider_dispute_id, req.funds_withdrawn_micros,
                                              req.funds_reinstated_micros)
        async with tenant_tx(self._pool, req.tenant_id) as conn:
            row = await dispute_store.lock(conn, req.dispute_id)
            if row is None:
                raise ApplicationError(f"dispute {req.dispute_id} not found", type=INVALID_REQUEST,
                                       non_retryable=True)
            if row["event_seq"] != req.expected_seq:  # a retried activity whose first try committed
                view = await dispute_store.fetch_dispute(conn, req.dispute_id)
                assert view is not None
                return view
            old = DisputeStatus(row["status"])
            new = DisputeStatus(req.status) if req.status else old
            try:
                if new != old:
                    check_transition(old, new)
                elif old.is_terminal:
                    raise InvalidDisputeTransition(f"dispute is {old}: terminal")
            except InvalidDisputeTransition as exc:
                raise ApplicationError(str(exc), type=INVALID_TRANSITION, non_retryable=True) from exc
            seq = row["event_seq"] + 1
            view = await dispute_store.apply_change(conn, req, new.value, seq)
            await post_funds(conn, view, withdrawn=req.funds_withdrawn_micros, reinstated=req.funds_reinstated_micros,
                             settled=settled, rates=self._rates)
            metadata: dict[str, object] = {}
            if req.evidence is not None:
                metadata["evidence_fields"] = sorted(req.evidence)
            if req.funds_withdrawn_micros is not None:
                metadata["funds_withdrawn_micros"] = req.funds_withdrawn_micros
            if req.funds_reinstated_micros is not None:
                metadata["funds_reinstated_micros"] = req.funds_reinstated_micros
            await dispute_store.record_dispute_event(
                conn, view, seq, old.value, req.event or f"dispute.{new.value}", req.actor, req.correlation_id,
                metadata)
        if new.is_terminal:
            log.info("billing.execution.result", operation="dispute", dispute_id=view.id,
                     payment_id=view.payment_id, tenant_id=view.tenant_id, status=view.status,
                     amount_micros=view.amount_micros, currency=view.currency,
                     funds_withdrawn_micros=view.funds_withdrawn_micros,
                     funds_reinstated_micros=view.funds_reinstated_micros, correlation_id=req.correlation_id,
                     duration_ms=int((view.updated_at - view.created_at).total_seconds() * 1000))
        return view

    # --- provider steps (regular activities, retried) -----------------------------------------------------
    @activity.defn
    async def submit_dispute_evidence(self, req: SubmitDisputeEvidence) -> ProviderDispute:
        return await self._call("submit_dispute_evidence", req.provider_dispute_id,
                                self._provider.submit_dispute_evidence(req.provider_dispute_id, req.evidence,
                                                                       req.submit, req.idempotency_key))

    @activity.defn
    async def accept_dispute(self, provider_dispute_id: str) -> ProviderDispute:
        return await self._call("accept_dispute", provider_dispute_id,
                                self._provider.accept_dispute(provider_dispute_id))

    @activity.defn
    async def get_dispute(self, provider_dispute_id: str) -> ProviderDispute:
        return await self._call("get_dispute", provider_dispute_id,
                                self._provider.retrieve_dispute(provider_dispute_id))

    async def _call(self, operation: str, provider_dispute_id: str,
                    call: Awaitable[DisputeResult]) -> ProviderDispute:
        started = time.perf_counter()
        try:
            result = await call
        except ProviderUnavailable:
            raise
        except ValueError as exc:  # the provider refused: retrying cannot help
            raise ApplicationError(str(exc), type=INVALID_REQUEST, non_retryable=True) from exc
        info = activity.info()
        log.info("billing.rail.execution", operation=operation, provider=self._provider.name, status=result.status,
                 provider_dispute_id=provider_dispute_id, correlation_id=info.workflow_id,
                 activity_attempt=info.attempt, duration_ms=round((time.perf_counter() - started) * 1000, 2))
        return ProviderDispute(id=result.id, status=result.status)


async def post_funds(conn: asyncpg.Connection, view: DisputeView, *, withdrawn: int | None = None,
                     reinstated: int | None = None, settled: list[BalanceTransaction] | None = None,
                     rates: FxRates | None = None) -> None:
    """What moved with this change of the dispute, posted in its transaction (each movement once: the entry id
    names the dispute and the movement). A split charge's dispute takes back (and gives back) the fee and the
    seller's share in proportion; what the provider settled books its fee and conversion."""
    if not withdrawn and not reinstated:
        return
    split = await payment_store.lock_split(conn, view.payment_id)
    if withdrawn:
        amount = Money(withdrawn, view.currency)
        await ledger.post(conn, view.tenant_id, await splits.withdrawal_entry(conn, view.id, split, view.provider,
                                                                              amount) if split
                          else dispute_funds_withdrawn(view.id, view.provider, amount))
    if reinstated:
        amount = Money(reinstated, view.currency)
        await ledger.post(conn, view.tenant_id, await splits.reinstatement_entry(conn, view.id, split, view.provider,
                                                                                 amount) if split
                          else dispute_funds_reinstated(view.id, view.provider, amount))
    for bt in settled or []:
        back = bt.reporting_category == "dispute_reversal"
        if (back and not reinstated) or (not back and not withdrawn):
            continue
        moved = Money(reinstated if back else -(withdrawn or 0), view.currency)
        await provider_settlements.book(
            conn, view.tenant_id, view.provider, source_type="dispute", source_id=view.id,
            event="dispute.funds_reinstated" if back else "dispute.funds_withdrawn", bt=bt, presentment=moved,
            rates=rates)
