"""Activities of the dunning workflow: the tenant's policy, advice on when and how to retry, the dunning events of
the invoice, and the final action. Retries themselves are collection attempts (`workflows.collection`).

The advisory personalisation (`RetryAdvisor`) is a port like the fraud scorer: the built-in one reads the
customer's own history — the UTC hour its payments usually succeed at, and how its invoices went before — and
explains what it advises. The planner (`domain.dunning.plan_next`) takes advice only within the policy's limits,
and the policy is the fallback whenever the advisor is slow, wrong or absent.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Protocol

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.notifications import Notifier
from activities.stores import invoices as store
from activities.stores import subscriptions
from contracts.dunning import (
    AdviceRequest,
    DunningInput,
    DunningPolicyModel,
    DunningPrepared,
    DunningRecord,
    DunningSetup,
    FinalDunning,
    RetryAdviceModel,
    dunning_notification,
    notification_key,
)
from contracts.errors import INVALID_REQUEST
from contracts.invoices import InvoiceStep
from domain import invoice_postings as postings
from domain.dunning import DunningAction, plan_next
from domain.invoice import COLLECTABLE, Invoice, InvoiceRefused, InvoiceStatus
from paysaga.db import tenant_tx

log = structlog.get_logger("paysaga.dunning")

MIN_HISTORY = 3  # successful payments before an hour is worth advising
ADVICE_TIMEOUT_SECONDS = 2.0


class RetryAdvisor(Protocol):
    async def advise(self, conn: asyncpg.Connection, req: AdviceRequest) -> RetryAdviceModel: ...


class HistoryAdvisor:
    """The built-in advisor: the hour the customer's payments succeed at most often, and a tone from how its
    earlier invoices went (dunned before: firm; a long record of paying: friendly)."""

    model = "builtin-history-v1"

    async def advise(self, conn: asyncpg.Connection, req: AdviceRequest) -> RetryAdviceModel:
        hours = [int(h) for h in await conn.fetchval(
            """SELECT coalesce(array_agg(extract(hour FROM updated_at AT TIME ZONE 'UTC')::int), '{}')
                 FROM paysaga.payments WHERE customer_id = $1 AND status = 'completed'
                  AND updated_at > now() - interval '365 days'""", req.customer_id)]
        dunned_before = await conn.fetchval(
            """SELECT count(DISTINCT e.invoice_id) FROM paysaga.invoice_events e
                 JOIN paysaga.invoices i USING (tenant_id, invoice_id)
                WHERE i.customer_id = $1 AND e.type = 'invoice.dunning_started' AND e.invoice_id <> $2""",
            req.customer_id, req.invoice_id)
        reasons, hour, tone = [], None, None
        if len(hours) >= MIN_HISTORY:
            hour, seen = Counter(hours).most_common(1)[0]
            reasons.append(f"{seen} of the customer's {len(hours)} successful payments in a year were at "
                           f"{hour:02d}:00 UTC")
        if dunned_before:
            tone = "firm"
            reasons.append(f"{dunned_before} earlier invoice(s) of the customer went to dunning")
        elif len(hours) >= 6:
            tone = "friendly"
            reasons.append(f"{len(hours)} payments made without dunning")
        return RetryAdviceModel(hour_of_day=hour, tone=tone, reason="; ".join(reasons), model=self.model)


class DunningActivities:
    def __init__(self, pool: asyncpg.Pool, advisor: RetryAdvisor | None = None) -> None:
        self._pool = pool
        self._advisor = advisor or HistoryAdvisor()

    @activity.defn
    async def dunning_setup(self, step: InvoiceStep) -> DunningSetup:
        """The tenant's policy (the built-in defaults where it sets nothing) and the invoice as it stands."""
        async with tenant_tx(self._pool, step.tenant_id) as conn:
            loaded = await store.load(conn, step.invoice_id)
            if loaded is None:
                raise ApplicationError(f"invoice {step.invoice_id} not found", type=INVALID_REQUEST,
                                       non_retryable=True)
            policy = await _tenant_policy(conn)
        return _setup(loaded.invoice, policy)

    @activity.defn
    async def advise_retry(self, req: AdviceRequest) -> RetryAdviceModel | None:
        """Advisory: a slow or failing advisor costs the retry nothing (the policy decides alone)."""
        try:
            async with tenant_tx(self._pool, req.tenant_id) as conn:
                advice = await asyncio.wait_for(self._advisor.advise(conn, req), ADVICE_TIMEOUT_SECONDS)
        except Exception as exc:  # advice never blocks a retry
            log.warning("dunning.advice_failed", invoice_id=req.invoice_id, error=type(exc).__name__)
            return None
        log.info("dunning.advice", invoice_id=req.invoice_id, attempt=req.attempt, hour=advice.hour_of_day,
                 tone=advice.tone, reason=advice.reason, model=advice.model)
        return advice

    @activity.defn
    async def record_dunning(self, record: DunningRecord) -> None:
        """A dunning event of the invoice: its lifecycle event and outbox message (once per stage and kind)."""
        async with tenant_tx(self._pool, record.tenant_id) as conn:
            loaded = await store.load(conn, record.invoice_id, lock=True)
            assert loaded is not None
            await _record(conn, loaded, record)

    async def prepare(self, inp: DunningInput, notifier: Notifier) -> DunningPrepared | None:
        """The first task's steps of a DunningWorkflow about to start (`DunningPrepared`), or None when the invoice
        is no longer collectable (the workflow then finds that out and stops). Each step is idempotent, like the
        workflow's own: a start prepared twice records and notifies once."""
        async with tenant_tx(self._pool, inp.tenant_id) as conn:
            loaded = await store.load(conn, inp.invoice_id, lock=True)
            if loaded is None or loaded.invoice.status not in COLLECTABLE:
                return None
            setup = _setup(loaded.invoice, await _tenant_policy(conn))
            await _record(conn, loaded, inp.started_record())
        advice = await self.advise_retry(AdviceRequest(tenant_id=inp.tenant_id, customer_id=inp.customer_id,
                                                       invoice_id=inp.invoice_id, attempt=2))
        first = inp.first_failure()
        now = max(datetime.now(UTC).replace(microsecond=0), first.at)
        plan = plan_next(setup.policy.to_domain(), [first], now, advice=advice.to_domain() if advice else None)
        notified = []
        if plan.notification is not None and plan.action is not DunningAction.FINAL_ACTION:
            key = notification_key(plan, 1)
            await notifier.send(dunning_notification(inp, plan, key, setup.amount_remaining_micros))
            notified.append(key)
        return DunningPrepared(setup=setup, advice=advice, notified=notified)

    @activity.defn
    async def finish_dunning(self, final: FinalDunning) -> None:
        """The policy's final action on the invoice: written off as uncollectible (or left open), and the event
        that dunning is exhausted."""
        async with tenant_tx(self._pool, final.tenant_id) as conn:
            loaded = await store.load(conn, final.invoice_id, lock=True)
            assert loaded is not None
            invoice = loaded.invoice
            correlation = f"dunning/{final.tenant_id}/{final.invoice_id}"
            if final.mark_invoice_uncollectible and invoice.status is InvoiceStatus.OPEN:
                try:
                    loaded = await store.save_change(
                        conn, loaded, invoice.mark_uncollectible(), "invoice.marked_uncollectible", "workflow",
                        correlation, columns={"uncollectible_at": store.NOW},
                        entries=[postings.marked_uncollectible(invoice)], metadata={"reason": "dunning exhausted"})
                except InvoiceRefused as exc:
                    log.warning("dunning.write_off_refused", invoice_id=final.invoice_id, reason=exc.code)
            if loaded.row["subscription_id"] is not None:
                # The policy's end for the subscription whose invoice this is (and no other of the customer's).
                await subscriptions.apply_dunning_outcome(
                    conn, loaded.row["subscription_id"], f"exhausted_{final.subscription_end}", datetime.now(UTC),
                    invoice_id=final.invoice_id)
            done = await conn.fetchval("SELECT true FROM paysaga.invoice_events WHERE invoice_id = $1 AND type = "
                                       "'invoice.dunning_exhausted'", final.invoice_id)
            if not done:
                await store.save_change(conn, loaded, loaded.invoice, "invoice.dunning_exhausted", "workflow",
                                        correlation, metadata={"subscription_end": final.subscription_end,
                                                               "explanation": final.explanation})


def _setup(invoice: Invoice, policy: DunningPolicyModel) -> DunningSetup:
    return DunningSetup(policy=policy, currency=invoice.currency, number=invoice.number,
                        amount_remaining_micros=invoice.amount_remaining.micros)


async def _record(conn: asyncpg.Connection, loaded: store.Loaded, record: DunningRecord) -> None:
    event = f"invoice.{record.type}"
    key = record.metadata.get("key")
    done = await conn.fetchval(
        """SELECT true FROM paysaga.invoice_events WHERE invoice_id = $1 AND type = $2
            AND metadata->>'key' IS NOT DISTINCT FROM $3""", record.invoice_id, event, key)
    if not done:
        await store.save_change(conn, loaded, loaded.invoice, event, "workflow",
                                f"dunning/{record.tenant_id}/{record.invoice_id}", metadata=record.metadata)
    attempt = record.metadata.get("attempt")
    if (record.type == "dunning_retry_failed" and loaded.row["subscription_id"] is not None
            and isinstance(attempt, int)):
        # The subscription's own lifecycle says the retry failed too (once per attempt).
        await subscriptions.apply_dunning_outcome(conn, loaded.row["subscription_id"], "retry_failed",
                                                  datetime.now(UTC), attempt=attempt, invoice_id=record.invoice_id)


async def _tenant_policy(conn: asyncpg.Connection) -> DunningPolicyModel:
    """The tenant's stored policy, when it has one."""
    stored = await conn.fetchval("""SELECT dunning_policy FROM paysaga.tenant_billing_policies
                                     WHERE tenant_id = paysaga.current_tenant()""")
    return DunningPolicyModel.model_validate(stored) if stored else DunningPolicyModel()
