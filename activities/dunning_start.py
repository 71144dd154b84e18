"""Handing a subscription's unpaid invoice to its DunningWorkflow, and telling those workflows news they wait for.

The failure that opens dunning is recorded first, in the payment's transaction (`subscription_dunning`, the
subscription past due); the start comes after the commit, by name (`contracts.dunning`), with id reuse rejected
and a running workflow of the same id used as it is, so a start made twice (a retry, the renewal run's sweep of
what is owed) is one workflow. Until it is started the row says the start is owed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

import asyncpg
import structlog
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.stores import subscriptions as store
from contracts import search_attributes as sa
from contracts.dunning import (
    DUNNING_WORKFLOW,
    PAYMENT_METHOD_SIGNAL,
    DunningInput,
    DunningPrepared,
    PaymentMethodUpdated,
    dunning_workflow_id,
)
from contracts.invoices import CollectionTimings
from paysaga.db import tenant_tx

log = structlog.get_logger("paysaga.billing")


class Prepare(Protocol):
    async def __call__(self, inp: DunningInput) -> DunningPrepared | None: ...


class DunningStarter:
    """`prepare` (when given) does each workflow's first steps before its start (`DunningPrepared`), so the run
    waits for its first retry at once; without it, or when preparing fails, the workflow does them itself."""

    def __init__(self, pool: asyncpg.Pool, task_queue: str, timings: CollectionTimings,
                 prepare: Prepare | None = None) -> None:
        self._pool = pool
        self._task_queue = task_queue
        self._timings = timings
        self._prepare = prepare

    async def _prepared(self, inp: DunningInput) -> DunningPrepared | None:
        if self._prepare is None:
            return None
        try:
            return await self._prepare(inp)
        except Exception as exc:  # an optimisation only: the workflow's own first task does the same
            log.warning("dunning.prepare_failed", invoice_id=inp.invoice_id, error=type(exc).__name__)
            return None

    async def start(self, client: Client, tenant_id: str, rows: Sequence[asyncpg.Record]) -> int:
        """Start the DunningWorkflow of each row (a `subscription_dunning` row) and record it started."""
        started: list[str] = []
        for row in rows:
            inp = DunningInput(
                tenant_id=tenant_id, invoice_id=row["invoice_id"], customer_id=row["customer_id"],
                subscription_id=row["subscription_id"], period_start=row["period_start"],
                # Never later than now: the workflow plans from its own clock, and this one may run ahead.
                first_failure_at=min(row["failed_at"], datetime.now(UTC).replace(microsecond=0)),
                decline_code=row["decline_code"],
                failed_payment_id=row["payment_id"], attempts_before=1, collection=self._timings)
            inp.prepared = await self._prepared(inp)
            try:
                await client.start_workflow(
                    DUNNING_WORKFLOW, inp, id=dunning_workflow_id(tenant_id, row["invoice_id"]),
                    task_queue=self._task_queue, id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    search_attributes=sa.at_start((sa.TENANT_ID, tenant_id), (sa.CUSTOMER_ID, row["customer_id"]),
                                                  (sa.INVOICE_ID, row["invoice_id"]),
                                                  (sa.SUBSCRIPTION_ID, row["subscription_id"])))
            except WorkflowAlreadyStartedError:
                pass  # it ran (and closed) already: that start was this one
            started.append(row["invoice_id"])
        if started:
            async with tenant_tx(self._pool, tenant_id) as conn:
                await store.mark_dunning_started(conn, started)
        return len(started)

    async def start_invoices(self, client: Client, tenant_id: str, invoice_ids: Sequence[str]) -> int:
        async with tenant_tx(self._pool, tenant_id) as conn:
            rows = [r for r in await store.dunning_rows(conn, invoice_ids) if r["started_at"] is None]
        return await self.start(client, tenant_id, rows)

    async def start_owed(self, client: Client, limit: int = 500) -> int:
        """Every start still owed, all tenants (a failure recorded by a process that died before starting)."""
        owed: dict[str, list[str]] = {}
        for r in await self._pool.fetch("SELECT tenant_id::text, invoice_id FROM paysaga.owed_dunning_starts($1)",
                                        limit):
            owed.setdefault(r["tenant_id"], []).append(r["invoice_id"])
        n = 0
        for tenant_id, invoice_ids in owed.items():
            n += await self.start_invoices(client, tenant_id, invoice_ids)
        return n


async def signal_payment_method(client: Client, conn: asyncpg.Connection, tenant_id: str, customer_id: str,
                                payment_method_id: str, event_id: str, *, subscription_id: str | None = None) -> int:
    """A new default payment method — the customer's, or `subscription_id`'s own — told to the DunningWorkflow of
    each subscription invoice still unpaid in dunning that it will be charged for (it retries at once). Told to
    the others, dunning would retry at once the card that just failed. A workflow that is gone is no one to tell."""
    n = 0
    for row in await store.open_dunning_of_customer(conn, customer_id, subscription_id):
        try:
            await client.get_workflow_handle(dunning_workflow_id(tenant_id, row["invoice_id"])).signal(
                PAYMENT_METHOD_SIGNAL, PaymentMethodUpdated(event_id=event_id, payment_method_id=payment_method_id,
                                                            at=datetime.now(UTC).replace(microsecond=0)))
            n += 1
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
    return n
