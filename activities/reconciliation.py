"""Reconciliation of payments stuck in pending/processing: ask the provider, then move the payment.

A running payment workflow is told by signal (it applies the transition itself, so its history stays the
record); a payment whose workflow is gone gets the transition applied directly, as actor `reconciler`.
Idempotent (signals carry deterministic event ids, transitions are guarded), bounded per run, heartbeating.
"""

from __future__ import annotations

import asyncpg
import structlog
from temporalio import activity
from temporalio.service import RPCError, RPCStatusCode

from activities.payments import outcome_of
from activities.providers.base import PaymentProvider
from activities.stores import payments as store
from contracts.payments import PROVIDER_EVENT_SIGNAL, RECONCILIATION_EVENT, ProviderEvent
from contracts.reconciliation import ReconcileInput, ReconcileReport
from domain.payment import PaymentStatus
from domain.reconciliation import decide
from paysaga.db import tenant_tx

log = structlog.get_logger("paysaga.reconcile")


class ReconcileActivities:
    def __init__(self, pool: asyncpg.Pool, provider: PaymentProvider) -> None:
        self._pool = pool
        self._provider = provider

    @activity.defn
    async def reconcile_stale_payments(self, inp: ReconcileInput) -> ReconcileReport:
        report = ReconcileReport(dry_run=inp.dry_run)
        for row in await store.stale(self._pool, inp.older_than_seconds, inp.limit):
            activity.heartbeat(row["payment_id"])
            report.examined += 1
            try:
                await self._one(row, inp.dry_run, report)
            except Exception as exc:  # one bad payment must not stop the run; it is counted and logged
                report.errors += 1
                log.warning("reconcile.error", payment_id=row["payment_id"], error=f"{type(exc).__name__}: {exc}")
        log.info("reconcile.run", **report.model_dump(exclude={"actions"}))
        return report

    async def _one(self, row: asyncpg.Record, dry_run: bool, report: ReconcileReport) -> None:
        if not row["provider_intent_id"]:
            report.unchanged += 1
            return
        outcome = outcome_of(await self._provider.retrieve(row["provider_intent_id"]))
        status = PaymentStatus(row["status"])
        command = decide(status, outcome.status, outcome.decline_code, outcome.failure_message)
        if command is None:
            report.unchanged += 1
            return
        report.actions.append({"payment_id": row["payment_id"], "from": status.value,
                               "provider_status": outcome.status, "transition": command.transition.value})
        if dry_run:
            return
        event = ProviderEvent(
            # Deterministic: a second run that finds the same news sends the same id, de-duplicated by the saga.
            event_id=f"reconcile:{row['payment_id']}:{status.value}:{outcome.status}",
            type=RECONCILIATION_EVENT, intent_id=outcome.intent_id, intent_status=outcome.status,
            decline_code=outcome.decline_code, failure_message=outcome.failure_message,
        )
        try:
            await activity.client().get_workflow_handle(row["workflow_id"]).signal(PROVIDER_EVENT_SIGNAL, event)
            report.signalled += 1
            return
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
        async with tenant_tx(self._pool, str(row["tenant_id"])) as conn:
            await store.apply_transition(conn, row["payment_id"], command, {}, "reconciler", row["workflow_id"])
        report.transitioned += 1
