"""Activities of the refund saga. Database steps are idempotent by refund id and status guard; the provider is
called with idempotency key = the refund id (a business id), so a retried call never refunds twice."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.fx.base import FxRates
from activities.payments import SETTLEMENT_LOOKUP_SECONDS
from activities.providers.base import BalanceTransaction, PaymentProvider, ProviderUnavailable
from activities.stores import ledger, provider_settlements, splits
from activities.stores import payments as payment_store
from activities.stores import refunds as refund_store
from contracts.errors import INVALID_REQUEST, INVALID_TRANSITION
from contracts.refunds import (
    ProviderRefund,
    RecordedRefund,
    RefundInput,
    RefundRejection,
    RefundView,
    SettleRefund,
    SubmitRefund,
    refund_workflow_id,
)
from domain.ledger import refund_succeeded
from domain.money import Money, RoundingMode
from domain.refund import RefundNotAllowed, RefundStatus, plan_refund, settle
from paysaga.db import tenant_tx

log = structlog.get_logger("paysaga.billing")


class RefundActivities:
    def __init__(self, pool: asyncpg.Pool, provider: PaymentProvider, rates: FxRates | None = None) -> None:
        self._pool = pool
        self._provider = provider
        self._rates = rates

    @activity.defn
    async def record_refund(self, inp: RefundInput) -> RecordedRefund:
        async with tenant_tx(self._pool, inp.tenant_id) as conn:
            existing = await refund_store.fetch_refund(conn, inp.refund_id)
            if existing is not None:
                return RecordedRefund(view=existing)
            payment = await refund_store.lock_payment(conn, inp.payment_id)
            if payment is None or payment["status"] != "completed":
                status = payment["status"] if payment else "missing"
                return _rejected("payment_not_refundable", f"The payment is {status}; only completed payments "
                                 "can be refunded.")
            captured = Money(payment["amount_micros"], payment["currency"])
            prior = await refund_store.prior(conn, inp.payment_id, captured.currency)
            requested = Money(inp.amount_micros, captured.currency) if inp.amount_micros is not None else None
            try:
                amount = plan_refund(captured, prior, requested)
            except RefundNotAllowed as exc:
                return _rejected(exc.code, str(exc))
            wf_id = refund_workflow_id(inp.tenant_id, inp.refund_id)
            view = await refund_store.insert(conn, inp.refund_id, inp.tenant_id, inp.payment_id, amount, inp.reason,
                                             inp.idempotency_key, wf_id)
            await refund_store.record_refund_event(conn, view, 1, None, inp.actor, wf_id,
                                                   {"amount_micros": amount.micros, "reason": inp.reason})
        return RecordedRefund(view=view)

    @activity.defn
    async def submit_refund(self, req: SubmitRefund) -> ProviderRefund:
        started = time.perf_counter()
        async with tenant_tx(self._pool, req.tenant_id) as conn:
            row = await refund_store.submission(conn, req.refund_id)
        if row is None or row["provider_intent_id"] is None:
            raise ApplicationError(f"refund {req.refund_id} has no payment intent", type=INVALID_REQUEST,
                                   non_retryable=True)
        # Captured amounts were whole minor units, so every refund of them is too; HALF_EVEN names the rule.
        minor = Money(row["amount_micros"], row["currency"]).to_minor_units(RoundingMode.HALF_EVEN)
        try:
            result = await self._provider.refund(
                row["provider_intent_id"], minor, req.refund_id,
                metadata={"tenant_id": req.tenant_id, "refund_id": req.refund_id, "payment_id": req.payment_id},
            )
        except ProviderUnavailable:
            raise
        except ValueError as exc:
            raise ApplicationError(str(exc), type=INVALID_REQUEST, non_retryable=True) from exc
        info = activity.info()
        log.info("billing.rail.execution", operation="refund", provider=self._provider.name, status=result.status,
                 refund_id=req.refund_id, payment_id=req.payment_id, tenant_id=req.tenant_id,
                 correlation_id=info.workflow_id, activity_attempt=info.attempt,
                 duration_ms=round((time.perf_counter() - started) * 1000, 2))
        return ProviderRefund(id=result.id, status=result.status, failure_reason=result.failure_reason)

    @activity.defn
    async def get_refund(self, provider_refund_id: str) -> ProviderRefund:
        result = await self._provider.retrieve_refund(provider_refund_id)
        return ProviderRefund(id=result.id, status=result.status, failure_reason=result.failure_reason)

    @activity.defn
    async def attach_provider_refund(self, req: SettleRefund) -> RefundView:
        """Remember the provider's refund id (not a state change, so no lifecycle event)."""
        async with tenant_tx(self._pool, req.tenant_id) as conn:
            await refund_store.attach_provider_id(conn, req.refund_id, req.provider_refund_id)
            view = await refund_store.fetch_refund(conn, req.refund_id)
        assert view is not None
        return view

    @activity.defn
    async def settle_refund(self, req: SettleRefund) -> RefundView:
        settled = (await settled_by_provider(self._provider, req.provider_refund_id, "refund")
                   if req.outcome == RefundStatus.SUCCEEDED else [])
        async with tenant_tx(self._pool, req.tenant_id) as conn:
            row = await refund_store.lock(conn, req.refund_id)
            if row is None:
                raise ApplicationError(f"refund {req.refund_id} not found", type=INVALID_REQUEST, non_retryable=True)
            if row["status"] == req.outcome:  # a retried activity whose first try committed
                view = await refund_store.fetch_refund(conn, req.refund_id)
                assert view is not None
                return view
            try:
                outcome = settle(RefundStatus(row["status"]), RefundStatus(req.outcome))
            except ValueError as exc:
                raise ApplicationError(str(exc), type=INVALID_TRANSITION, non_retryable=True) from exc
            seq = row["event_seq"] + 1
            view = await refund_store.settle(conn, req.refund_id, outcome, req.failure_code, seq,
                                             req.provider_refund_id)
            if outcome == RefundStatus.SUCCEEDED:  # the money went back: the ledger says so in this transaction
                provider = await payment_store.provider_of(conn, view.payment_id) or "unknown"
                amount = Money(view.amount_micros, view.currency)
                split = await payment_store.lock_split(conn, view.payment_id)
                if split is not None:  # the fee and the seller's share are taken back in proportion
                    await ledger.post(conn, view.tenant_id, await splits.refund_entry(conn, view.id, split, provider,
                                                                                      amount))
                else:
                    await ledger.post(conn, view.tenant_id, refund_succeeded(view.id, provider, amount))
                for bt in settled:
                    await provider_settlements.book(conn, view.tenant_id, provider, source_type="refund",
                                                    source_id=view.id, event="refund.succeeded", bt=bt,
                                                    presentment=-amount, rates=self._rates)
            await refund_store.record_refund_event(conn, view, seq, row["status"], req.actor, req.correlation_id,
                                                   {"failure_code": req.failure_code} if req.failure_code else {})
        log.info("billing.execution.result", operation="refund", refund_id=view.id, payment_id=view.payment_id,
                 tenant_id=view.tenant_id, status=view.status, failure_code=view.failure_code,
                 correlation_id=req.correlation_id, amount_micros=view.amount_micros, currency=view.currency,
                 duration_ms=int((view.updated_at - view.created_at).total_seconds() * 1000))
        return view


async def settled_by_provider(provider: object, source_id: str | None, category: str) -> list[BalanceTransaction]:
    """The provider's balance transactions of an object, of one reporting category; best effort (none when it
    cannot say now: the movement is booked without its fee and conversion, and the settlement report shows it)."""
    lookup = getattr(provider, "balance_transactions_of", None)
    if source_id is None or lookup is None:
        return []
    try:
        found: list[BalanceTransaction] = await asyncio.wait_for(lookup(source_id), SETTLEMENT_LOOKUP_SECONDS)
    except Exception as exc:  # never a failed refund or dispute for it
        log.warning("billing.settlement.unavailable", source_id=source_id, error=f"{type(exc).__name__}: {exc}")
        return []
    return [bt for bt in found if bt.reporting_category == category]


def _rejected(code: str, message: str) -> RecordedRefund:
    return RecordedRefund(rejection=RefundRejection(code=code, message=message))
