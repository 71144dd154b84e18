"""Activities of the renewal run: plan the batches, invoice a batch, charge a batch, and sweep what is owed.

Invoicing a batch is one transaction per tenant: the due subscriptions are locked in keyset order and stepped
by the domain (renewal, a trial's end or its notice, an unpaid first invoice's expiry, a paused collection's
end, a scheduled cancellation), their invoices planned (tax from the tax port, the customer's credit applied)
and everything written set-based (activities/stores/renewals.py): subscriptions, events, invoices, lines, tax,
journal entries, payments to make, outbox. A retry after a crash selects nothing already done: each renewal
moved its subscription's next due instant out of the batch's range in the same transaction, and the period's
invoice id is derived from (subscription, period start).

Charging a batch sends its payments to the provider in chunks (paced by a token bucket per provider account
shared by every worker; 429s back off), records the answers set-based (processing, declined: the subscription
past due and its DunningWorkflow started, customer action needed: the payment's own PaymentWorkflow takes it),
then polls the provider in bulk for the asynchronous outcomes until they are in or the wait is over (webhooks,
applied where they arrive, and the next run's sweep take what is left)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from activities import subscription_credits
from activities.dunning_start import DunningStarter
from activities.notifications import Notifier
from activities.providers.base import ChargeResult, CreateIntent, IntentStatus, PaymentProvider
from activities.stores import catalogue, customer_credit
from activities.stores import renewals as bulk
from activities.stores import subscriptions as subs
from activities.stores import tax as tax_store
from activities.subscription_invoices import NotInvoiceable, PlannedInvoice, customers_of, plan
from activities.tax.port import TaxProvider
from activities.tax.seller import Seller
from contracts import search_attributes as sa
from contracts.invoices import ACTION_UPDATE, CollectionTimings, InvoiceAction, collection_payment_id
from contracts.notifications import Notification
from contracts.payments import PAYMENT_WORKFLOW, PaymentInput, payment_workflow_id
from contracts.renewals import (
    Batch,
    ChargeBatchRequest,
    ChargeBatchResult,
    InvoiceBatchRequest,
    InvoiceBatchResult,
    Key,
    Pacing,
    PlanRequest,
    SweepResult,
)
from domain.billing_cycle import iso
from domain.invoice import InvoiceStatus
from domain.money import Money, RoundingMode
from domain.payment import Transition, TransitionCommand
from domain.subscription import (
    Collection,
    EventType,
    Subscription,
    SubscriptionRefused,
    SubscriptionStatus,
    charge_key,
    trial_will_end_at,
)
from paysaga.db import analyze_grown_tables, tenant_tx

log = structlog.get_logger("paysaga.renewals")
S = SubscriptionStatus
E = EventType
MAX_STEPS = 24  # a subscription far behind renews one period per step; more waits for the next batch
DEFER = timedelta(hours=1)  # a subscription that cannot be invoiced now is tried again this much later
ACTOR = "renewal_run"


@dataclass
class _Work:
    """What one tenant's part of a batch writes."""

    changes: list[bulk.SubscriptionChange] = field(default_factory=list)
    planned: list[PlannedInvoice] = field(default_factory=list)
    charges: list[bulk.NewCharge] = field(default_factory=list)
    no_method: list[tuple[str, str]] = field(default_factory=list)  # (subscription, invoice) failed at once
    notices: list[Notification] = field(default_factory=list)
    voids: list[tuple[str, str, str]] = field(default_factory=list)  # (invoice, customer, currency)
    deferred: list[str] = field(default_factory=list)
    owed_dunning: list[dict[str, Any]] = field(default_factory=list)


KIND = {E.RENEWED: "renewed", E.ENDED_AT_PERIOD_END: "ended", E.TRIAL_CONVERTED: "trials_converted",
        E.TRIAL_PAUSED: "trials_paused", E.TRIAL_CANCELED: "trials_canceled", E.FIRST_INVOICE_EXPIRED: "expired",
        E.COLLECTION_RESUMED: "collection_resumed"}


class RenewalActivities:
    def __init__(self, pool: asyncpg.Pool, provider: PaymentProvider, tax: TaxProvider, notifier: Notifier, *,
                 task_queue: str, timings: CollectionTimings, dunning: DunningStarter) -> None:
        self._pool = pool
        self._provider = provider
        self._tax = tax
        self._notifier = notifier
        self._task_queue = task_queue
        self._timings = timings
        self._dunning = dunning

    def _client(self) -> Client:
        return activity.client()

    # --- planning -------------------------------------------------------------------------------------------
    @activity.defn
    async def plan_batches(self, req: PlanRequest) -> list[Batch]:
        """The next batches of what is due, by their keys only (the rows are read by the batches themselves)."""
        after = req.after
        rows = await self._pool.fetch(
            "SELECT * FROM paysaga.due_subscription_batches($1, $2, $3::uuid, $4, $5, $6)", req.at,
            after.at if after else None, after.tenant_id if after else None, after.subscription_id if after else None,
            req.batch_size, req.batches)
        out = []
        previous = after
        for n, r in enumerate(rows):
            last = Key(at=r["last_at"], tenant_id=str(r["last_tenant"]), subscription_id=r["last_id"])
            out.append(Batch(batch_no=req.next_batch_no + n, after=previous, last=last,
                             tenants=sorted(str(t) for t in r["tenants"]), n=r["n"]))
            previous = last
        return out

    @activity.defn
    async def due_summary(self, at: datetime) -> dict[str, int]:
        """What a dry run reports: the subscriptions due, by what would happen to them."""
        out: dict[str, int] = {}
        for r in await self._pool.fetch("SELECT * FROM paysaga.due_subscription_summary($1)", at):
            kind = {"trialing": "trial_ends_or_notices", "incomplete": "incomplete_expiries"}.get(
                r["status"], "cancellations_at_period_end" if r["cancel_at_period_end"] else f"renewals_{r['status']}")
            out[kind] = out.get(kind, 0) + int(r["n"])
        return out

    # --- invoicing ------------------------------------------------------------------------------------------
    @activity.defn
    async def invoice_batch(self, req: InvoiceBatchRequest) -> InvoiceBatchResult:
        result = InvoiceBatchResult(batch_no=req.batch.batch_no)
        at = req.at.astimezone(UTC).replace(microsecond=0)
        for tenant_id in req.batch.tenants:
            activity.heartbeat(tenant_id)
            work, counts, has_charges = await self._invoice_tenant(tenant_id, req, at)
            for name, n in counts.items():
                setattr(result, name, getattr(result, name) + n)
            if has_charges:
                result.tenants.append(tenant_id)
            await self._after_invoicing(tenant_id, work)
        await self._refresh_statistics()
        return result

    async def _refresh_statistics(self) -> None:
        """A run grows its tables many times over; plans made on statistics of the tables as they were would
        rescan them per row. The tables that outgrew their statistics get fresh ones after each bulk step."""
        analyzed = await analyze_grown_tables(self._pool)
        if analyzed:
            log.info("renewal.statistics_refreshed", tables=analyzed)

    async def _invoice_tenant(self, tenant_id: str, req: InvoiceBatchRequest, at: datetime
                              ) -> tuple[_Work, dict[str, int], bool]:
        batch = req.batch
        counts: dict[str, int] = {}
        work = _Work()
        correlation = f"renewals/{req.run_id}/{batch.batch_no}"
        async with tenant_tx(self._pool, tenant_id) as conn:
            done = await conn.fetchrow(
                "SELECT counts, has_charges FROM paysaga.renewal_batch_results WHERE run_id = $1 AND batch_no = $2",
                req.run_id, batch.batch_no)
            if done is not None:
                return work, {k: int(v) for k, v in done["counts"].items()}, done["has_charges"]
            counts = await self._invoice_rows(conn, tenant_id, req, at, work, correlation)
            await conn.execute(
                """INSERT INTO paysaga.renewal_batch_results (tenant_id, run_id, batch_no, counts, has_charges)
                   VALUES ($1, $2, $3, $4::text::jsonb, $5)""",
                tenant_id, req.run_id, batch.batch_no, bulk.dumps(counts), bool(work.charges))
        return work, counts, bool(work.charges)

    async def _invoice_rows(self, conn: asyncpg.Connection, tenant_id: str, req: InvoiceBatchRequest, at: datetime,
                            work: _Work, correlation: str) -> dict[str, int]:
        batch = req.batch
        counts: dict[str, int] = {}
        after = batch.after  # keys order across tenants; row-level security keeps this tenant's rows only
        rows = await conn.fetch(
            """SELECT * FROM paysaga.subscriptions
                WHERE next_action_at IS NOT NULL AND next_action_at <= $1
                  AND ($2::timestamptz IS NULL OR (next_action_at, tenant_id, subscription_id) > ($2, $3::uuid, $4))
                  AND (next_action_at, tenant_id, subscription_id) <= ($5, $6::uuid, $7)
                ORDER BY next_action_at, tenant_id, subscription_id FOR NO KEY UPDATE""",
            at, after.at if after else None, after.tenant_id if after else None,
            after.subscription_id if after else None, batch.last.at, batch.last.tenant_id,
            batch.last.subscription_id)
        counts["due"] = len(rows)
        if not rows:
            return counts
        loaded = await subs.load_rows(conn, rows)
        seller = Seller(await tax_store.fetch_profile(conn), await tax_store.list_registrations(conn))
        customers = await customers_of(conn, [x.subscription.customer_id for x in loaded])
        pending = await subs.open_pending_lines(conn, [x.subscription.subscription_id for x in loaded])
        price_ids = {x.subscription.item.price.price_id for x in loaded} | {
            x.subscription.scheduled_change.price.price_id for x in loaded if x.subscription.scheduled_change}
        price_ids |= {p["price_id"] for lines in pending.values() for p in lines}
        tax_codes = await catalogue.tax_codes(conn, price_ids)
        credits = await customer_credit.available_many(
            conn, [(x.subscription.customer_id, x.subscription.currency) for x in loaded])
        methods = await _methods(conn, loaded, customers)
        for item in loaded:
            await self._advance(item, at, work, counts, seller=seller, customer=customers[
                item.subscription.customer_id], pending=pending.get(item.subscription.subscription_id, []),
                tax_codes=tax_codes, credits=credits, methods=methods)
        await bulk.save_subscriptions(conn, tenant_id, work.changes, ACTOR, correlation)
        written = await bulk.write_invoices(conn, tenant_id, work.planned, actor=ACTOR,
                                            correlation_id=correlation, tax_provider=self._tax.name,
                                            now=datetime.now(UTC))
        numbers = {p.invoice_id: p.invoice.number for p in written}
        await subs.mark_pending_billed(conn, [line for p in written for line in p.pending_line_ids],
                                       [p.invoice_id for p in written for _ in p.pending_line_ids])
        charges = [replace(c, description=f"Invoice {numbers.get(c.invoice_id) or c.invoice_id}")
                   for c in work.charges if c.invoice_id in numbers]
        counts["to_charge"] = await bulk.create_charges(
            conn, tenant_id, charges, provider=self._provider.name, run_id=req.run_id, batch_no=batch.batch_no,
            actor=ACTOR)
        if work.owed_dunning:
            await conn.execute(
                """INSERT INTO paysaga.subscription_dunning (tenant_id, invoice_id, subscription_id, customer_id,
                       payment_id, period_start, decline_code, failed_at)
                   SELECT $1, r.invoice_id, r.subscription_id, r.customer_id, NULL, r.period_start,
                          r.decline_code, r.failed_at
                     FROM jsonb_to_recordset($2::text::jsonb) AS r(invoice_id text, subscription_id text,
                          customer_id text, period_start timestamptz, decline_code text, failed_at timestamptz)
                   ON CONFLICT DO NOTHING""", tenant_id, bulk.dumps(work.owed_dunning))
        if work.deferred:
            await conn.execute("UPDATE paysaga.subscriptions SET next_action_at = $2 "
                               "WHERE subscription_id = ANY($1::text[])", work.deferred, at + DEFER)
        counts["invoiced"] = sum(1 for p in written if p.invoice.status is not InvoiceStatus.DRAFT)
        counts["not_charged"] = len(written) - counts["to_charge"]
        return counts

    async def _advance(self, item: subs.Loaded, at: datetime, work: _Work, counts: dict[str, int], *,
                       seller: Seller, customer: asyncpg.Record, pending: list[asyncpg.Record],
                       tax_codes: dict[str, str], credits: dict[tuple[str, str], Money],
                       methods: dict[str, asyncpg.Record]) -> None:
        """Every step due for one subscription at `at`, with the invoices they ask for (in memory: the caller
        writes them all at once)."""
        s = item.subscription
        row = item.row
        change = bulk.SubscriptionChange(item, s)
        planned: list[PlannedInvoice] = []
        charges: list[bulk.NewCharge] = []
        local_counts: dict[str, int] = {}
        notices: list[Notification] = []
        voids: list[tuple[str, str, str]] = []
        owed: list[dict[str, Any]] = []
        trial_notified = row["trial_notified"]
        try:
            for _ in range(MAX_STEPS):
                if s.collection_resume_due(at):
                    step = s.resume_collection(at)
                elif s.status is S.TRIALING and s.trial_start and s.trial_end and not trial_notified and (
                        trial_will_end_at(s.trial_start, s.trial_end) <= at < s.trial_end):
                    notices.append(_trial_notice(s, customer))
                    trial_notified = True
                    change.columns["trial_notified"] = True
                    local_counts["trial_notices"] = local_counts.get("trial_notices", 0) + 1
                    continue
                elif s.status is S.TRIALING and s.trial_end is not None and s.trial_end <= at:
                    if not s.default_payment_method and customer["default_payment_method_id"]:
                        # The customer's default payment method is the subscription's when it has none.
                        adopted = s.update_payment_method(at, customer["default_payment_method_id"])
                        change.events.append(adopted.event)
                        s = adopted.subscription
                    step = s.end_trial(at)
                elif s.status is S.INCOMPLETE and subs.incomplete_until(
                        s, row["collection_method"], row["days_until_due"]) <= at:
                    step = s.expire_incomplete(at)
                    if row["latest_invoice_id"]:
                        voids.append((row["latest_invoice_id"], s.customer_id, s.currency))
                elif s.status in (S.ACTIVE, S.PAST_DUE, S.UNPAID) and s.current_period.end <= at:
                    step = s.renew(at)
                else:
                    break
                kind = KIND.get(step.event.type)
                if kind:
                    local_counts[kind] = local_counts.get(kind, 0) + 1
                change.events.append(step.event)
                s = step.subscription
                if not (step.invoice_now and step.lines):
                    continue
                assert step.collect is not None
                invoice = await plan(
                    tax=self._tax, seller=seller, customer=customer, subscription=s, lines=step.lines,
                    collect=step.collect, pending=pending if not planned else [], tax_codes=tax_codes,
                    collection_method=row["collection_method"], days_until_due=row["days_until_due"],
                    credit_available=credits.get((s.customer_id, s.currency)))
                planned.append(invoice)
                change.columns["latest_invoice_id"] = invoice.invoice_id
                applied = invoice.invoice.credit_applied
                if applied is not None and applied.is_positive():
                    credits[(s.customer_id, s.currency)] = credits[(s.customer_id, s.currency)] - applied
                if invoice.invoice.status is InvoiceStatus.PAID:  # nothing to pay: paid as it was finalized
                    paid = (s.first_invoice_paid(at, invoice.invoice_id) if s.status is S.INCOMPLETE
                            else s.renewal_paid(at, s.current_period.start, invoice.invoice_id))
                    change.events.append(paid.event)
                    s = paid.subscription
                    continue
                chargeable = (step.collect is Collection.CHARGE and row["collection_method"] == "charge_automatically"
                              and invoice.invoice.status is InvoiceStatus.OPEN)
                if not chargeable:
                    continue
                method = methods.get(s.default_payment_method or "") or methods.get(
                    customer["default_payment_method_id"] or "")
                if method is None or method["customer_id"] != s.customer_id or method["detached_at"] is not None:
                    # Nothing to charge: the renewal failed as a decline would, and dunning waits for a method.
                    failed = s.renewal_failed(at, s.current_period.start, "no_payment_method")
                    change.events.append(failed.event)
                    s = failed.subscription
                    owed.append({"invoice_id": invoice.invoice_id, "subscription_id": s.subscription_id,
                                 "customer_id": s.customer_id, "period_start": s.current_period.start,
                                 "decline_code": "no_payment_method", "failed_at": at})
                    continue
                charges.append(bulk.NewCharge(
                    payment_id=collection_payment_id(invoice.invoice_id, 1), invoice_id=invoice.invoice_id,
                    subscription_id=s.subscription_id, period_start=s.current_period.start,
                    customer_id=s.customer_id, payment_method_id=method["payment_method_id"],
                    amount_micros=invoice.invoice.amount_remaining.micros, currency=s.currency, description=""))
        except NotInvoiceable as exc:
            log.warning("renewal.deferred", subscription_id=s.subscription_id, reason=exc.code, detail=str(exc))
            work.deferred.append(item.subscription.subscription_id)
            counts["deferred"] = counts.get("deferred", 0) + 1
            return
        except SubscriptionRefused as exc:  # a rule the stored state breaks: looked at again later, not looped on
            log.error("renewal.refused", subscription_id=s.subscription_id, reason=exc.code, detail=str(exc))
            work.deferred.append(item.subscription.subscription_id)
            counts["deferred"] = counts.get("deferred", 0) + 1
            return
        change.after = s
        if change.events or change.columns:
            work.changes.append(change)
        work.planned += planned
        work.charges += charges
        work.notices += notices
        work.voids += voids
        work.owed_dunning += owed
        for name, n in local_counts.items():
            counts[name] = counts.get(name, 0) + n

    async def _after_invoicing(self, tenant_id: str, work: _Work) -> None:
        """What follows the commit: trial notices, the void of expired first invoices, owed dunning starts."""
        for note in work.notices:
            try:
                await self._notifier.send(note)
            except Exception as exc:  # a notice never stops renewals; it is logged (and not sent again)
                log.error("renewal.notice_failed", notification_id=note.notification_id, error=str(exc))
        for invoice_id, customer_id, currency in work.voids:
            await _void(self._client(), self._task_queue, self._timings, tenant_id, invoice_id, customer_id, currency)
        if work.owed_dunning:
            await self._dunning.start_invoices(self._client(), tenant_id, [o["invoice_id"] for o in work.owed_dunning])

    # --- charging -------------------------------------------------------------------------------------------
    @activity.defn
    async def charge_batch(self, req: ChargeBatchRequest) -> ChargeBatchResult:
        result = ChargeBatchResult(batch_no=req.batch_no)
        for tenant_id in req.tenants:
            await self._charge_tenant(tenant_id, req.run_id, req.batch_no, req.pacing, result)
        await self._refresh_statistics()
        deadline = time.monotonic() + req.settle_wait_seconds
        for tenant_id in req.tenants:
            await self._settle_tenant(tenant_id, req.run_id, req.batch_no, deadline, result)
        return await self._tally(req, result)

    async def _tally(self, req: ChargeBatchRequest, result: ChargeBatchResult) -> ChargeBatchResult:
        """The batch's outcomes as the database has them: a retried batch (the worker died after some charges were
        recorded) reports every charge of the batch once, not just those of its last attempt."""
        out = ChargeBatchResult(batch_no=req.batch_no, waited_seconds=result.waited_seconds,
                                throttled=result.throttled)
        for tenant_id in req.tenants:
            async with tenant_tx(self._pool, tenant_id) as conn:
                row = await conn.fetchrow(
                    """SELECT count(*) FILTER (WHERE c.state <> 'created') AS charged,
                              count(*) FILTER (WHERE p.status = 'completed') AS succeeded,
                              count(*) FILTER (WHERE p.status IN ('failed', 'canceled')) AS failed,
                              count(*) FILTER (WHERE c.state = 'handed_over') AS handed_to_customer,
                              count(*) FILTER (WHERE c.state = 'submitted') AS still_processing,
                              count(d.invoice_id) AS handed_to_dunning
                         FROM paysaga.renewal_charges c JOIN paysaga.payments p USING (tenant_id, payment_id)
                         LEFT JOIN paysaga.subscription_dunning d
                                ON d.tenant_id = c.tenant_id AND d.invoice_id = c.invoice_id
                               AND d.payment_id = c.payment_id
                        WHERE c.run_id = $1 AND c.batch_no = $2""", req.run_id, req.batch_no)
            for name in ("charged", "succeeded", "failed", "handed_to_customer", "still_processing",
                         "handed_to_dunning"):
                setattr(out, name, getattr(out, name) + int(row[name]))
        return out

    async def _charge_tenant(self, tenant_id: str, run_id: str | None, batch_no: int | None, pacing: Pacing,
                             result: ChargeBatchResult) -> None:
        async with tenant_tx(self._pool, tenant_id) as conn:
            rows = await conn.fetch(
                """SELECT c.payment_id, c.invoice_id, c.subscription_id, c.period_start, c.attempt, p.customer_id,
                          p.payment_method_id, p.amount_micros, p.currency, p.description, p.status,
                          m.provider_token
                     FROM paysaga.renewal_charges c JOIN paysaga.payments p USING (tenant_id, payment_id)
                     JOIN paysaga.payment_methods m ON m.tenant_id = p.tenant_id
                                                  AND m.payment_method_id = p.payment_method_id
                    WHERE c.state = 'created' AND ($1::text IS NULL OR c.run_id = $1)
                      AND ($2::int IS NULL OR c.batch_no = $2)
                    ORDER BY c.payment_id""", run_id, batch_no)
        if not rows:
            return
        gate = asyncio.Semaphore(max(1, pacing.concurrency))
        chunks = [rows[i:i + pacing.chunk] for i in range(0, len(rows), max(1, pacing.chunk))]

        async def one(chunk: Sequence[asyncpg.Record]) -> None:
            async with gate:
                answers = await self._send(tenant_id, chunk, pacing, result)
                await self._record(tenant_id, chunk, answers, result)

        await asyncio.gather(*(one(c) for c in chunks))

    async def _send(self, tenant_id: str, chunk: Sequence[asyncpg.Record], pacing: Pacing,
                    result: ChargeBatchResult) -> dict[str, ChargeResult]:
        """Each charge of the chunk once to the provider (idempotent by the renewal's charge key); throttled or
        failed requests again, backing off, until all answered or the tries are spent (then the activity's retry
        takes them: they are still `created`)."""
        todo = {r["payment_id"]: r for r in chunk}
        answers: dict[str, ChargeResult] = {}
        backoff = 1.0
        for _ in range(8):
            await self._paced(pacing, len(todo), result)
            reqs = [_create_intent(tenant_id, r) for r in todo.values()]
            for answer in await self._provider.create_and_confirm_many(reqs):
                if answer.error is None:
                    answers[answer.payment_id] = answer
                    todo.pop(answer.payment_id, None)
                elif answer.throttled:
                    result.throttled += 1
            if not todo:
                return answers
            activity.heartbeat(f"{len(todo)} charges to retry")
            await asyncio.sleep(backoff)
            result.waited_seconds += backoff
            backoff = min(backoff * 2, 30.0)
        if answers:
            return answers  # record what was answered; the rest stays created for the retry
        raise ApplicationError(f"the provider answered none of {len(todo)} charges; trying again later")

    async def _paced(self, pacing: Pacing, n: int, result: ChargeBatchResult) -> None:
        """Take `n` tokens of the provider account's bucket (shared by every worker), waiting for them."""
        if pacing.rate_per_second <= 0 or n == 0:
            return
        want = n
        while want > 0:
            row = await self._pool.fetchrow("SELECT * FROM paysaga.take_provider_tokens($1, $2, $3, $4)",
                                            pacing.account, want, pacing.rate_per_second, pacing.burst)
            want -= row["granted"]
            if want > 0:
                wait = max(0.05, min(float(row["wait_seconds"]), 5.0))
                activity.heartbeat(f"paced: {want} charges wait for tokens")
                await asyncio.sleep(wait)
                result.waited_seconds += wait

    async def _record(self, tenant_id: str, chunk: Sequence[asyncpg.Record], answers: dict[str, ChargeResult],
                      result: ChargeBatchResult) -> None:
        """The provider's answers, set-based, in one transaction: processing (or succeeded) payments move on,
        declines fail (the subscription past due, dunning owed), customer action hands the payment to its own
        workflow (started after the commit)."""
        by_id = {r["payment_id"]: r for r in chunk}
        moves, handed, settled_now = [], [], []
        for payment_id, answer in answers.items():
            if answer.declined:
                moves.append(bulk.Move(payment_id, TransitionCommand(
                    Transition.MARK_FAILED, failure_code=answer.decline_code,
                    failure_message=answer.failure_message)))
                continue
            intent = answer.intent
            assert intent is not None
            if intent.status == IntentStatus.REQUIRES_ACTION:
                handed.append(payment_id)
                continue
            succeeded = intent.status == IntentStatus.SUCCEEDED
            moves.append(bulk.Move(payment_id, TransitionCommand(Transition.MARK_PROCESSING,
                                                                 provider_intent_id=intent.id),
                                   then=(TransitionCommand(Transition.MARK_COMPLETED),) if succeeded else ()))
            if succeeded:
                settled_now.append(payment_id)
        correlation = "renewals/charges"
        now = datetime.now(UTC)
        async with tenant_tx(self._pool, tenant_id) as conn:
            moved = await bulk.transition_payments(conn, tenant_id, moves, ACTOR)
            failed = [r for r in moved if r["status"] == "failed"]
            owed = await bulk.charges_failed(conn, tenant_id, [bulk.Failure(r, r["failure_code"]) for r in failed],
                                             correlation, now)
            done = [r for r in moved if r["status"] == "completed"]
            await bulk.settle_invoices(conn, tenant_id, done, correlation, now)
            result.succeeded += len(done)
            await bulk.set_charge_state(conn, [r["payment_id"] for r in failed] + settled_now, "settled")
            await bulk.set_charge_state(conn, [r["payment_id"] for r in moved if r["status"] == "processing"
                                               and r["payment_id"] not in settled_now], "submitted")
            await bulk.set_charge_state(conn, handed, "handed_over")
        result.charged += len(answers)
        result.failed += len(failed)
        if owed:
            result.handed_to_dunning += await self._dunning.start(self._client(), tenant_id, owed)
        for payment_id in handed:
            await self._hand_to_customer(tenant_id, by_id[payment_id])
            result.handed_to_customer += 1

    async def _hand_to_customer(self, tenant_id: str, row: asyncpg.Record) -> None:
        """The issuer wants the customer (3-D Secure): the payment gets its own PaymentWorkflow, which finds the
        intent the batch made (same payment and attempt) and waits for the customer like any payment."""
        t = self._timings
        inp = PaymentInput(
            tenant_id=tenant_id, payment_id=row["payment_id"], customer_id=row["customer_id"],
            payment_method_id=row["payment_method_id"], amount_micros=row["amount_micros"], currency=row["currency"],
            description=row["description"], metadata={"invoice_id": row["invoice_id"],
                                                      "subscription_id": row["subscription_id"]},
            actor=ACTOR, invoice_id=row["invoice_id"], **t.model_dump())
        attributes = sa.at_start((sa.TENANT_ID, tenant_id), (sa.CUSTOMER_ID, inp.customer_id),
                                 (sa.PAYMENT_ID, inp.payment_id), (sa.CURRENCY, inp.currency),
                                 (sa.PAYMENT_STATUS, "created"), (sa.INVOICE_ID, row["invoice_id"]),
                                 (sa.SUBSCRIPTION_ID, row["subscription_id"]))
        try:
            await self._client().start_workflow(
                PAYMENT_WORKFLOW, inp, id=payment_workflow_id(tenant_id, row["payment_id"]),
                task_queue=self._task_queue, id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING, search_attributes=attributes,
                execution_timeout=timedelta(days=7))
        except WorkflowAlreadyStartedError:
            pass

    async def _settle_tenant(self, tenant_id: str, run_id: str | None, batch_no: int | None, deadline: float,
                             result: ChargeBatchResult) -> None:
        """Poll the provider in bulk for the batch's payments still processing, until all are settled or the wait
        is over; what is left is settled by webhook (or by the next run's sweep)."""
        wait = 0.2
        while True:
            async with tenant_tx(self._pool, tenant_id) as conn:
                rows = await conn.fetch(
                    """SELECT c.payment_id, p.status, p.provider_intent_id FROM paysaga.renewal_charges c
                         JOIN paysaga.payments p USING (tenant_id, payment_id)
                        WHERE c.state = 'submitted' AND ($1::text IS NULL OR c.run_id = $1)
                          AND ($2::int IS NULL OR c.batch_no = $2)""", run_id, batch_no)
                gone = [r["payment_id"] for r in rows if r["status"] != "processing"]  # settled by a webhook
                if gone:
                    await bulk.set_charge_state(conn, gone, "settled")
                    result.succeeded += sum(1 for r in rows if r["status"] == "completed")
                    result.failed += sum(1 for r in rows if r["status"] in ("failed", "canceled"))
            open_ = [r for r in rows if r["status"] == "processing" and r["provider_intent_id"]]
            if not open_:
                return
            if time.monotonic() >= deadline:
                result.still_processing += len(open_)
                return
            await asyncio.sleep(wait)
            wait = min(wait * 2, 5.0)
            activity.heartbeat(f"{len(open_)} charges settling")
            intents: dict[str, Any] = {}
            for i in range(0, len(open_), 500):
                for intent in await self._provider.retrieve_many([r["provider_intent_id"] for r in open_[i:i + 500]]):
                    intents[intent.id] = intent
            await self._apply_news(tenant_id, open_, intents, result)

    async def _apply_news(self, tenant_id: str, rows: Sequence[asyncpg.Record], intents: dict[str, Any],
                          result: ChargeBatchResult) -> None:
        succeeded = [r["payment_id"] for r in rows if (i := intents.get(r["provider_intent_id"]))
                     and i.status == IntentStatus.SUCCEEDED]
        declined = [(r["payment_id"], i) for r in rows if (i := intents.get(r["provider_intent_id"]))
                    and (i.status == IntentStatus.CANCELED or (i.status == IntentStatus.REQUIRES_PAYMENT_METHOD
                                                                and i.decline_code))]
        if not succeeded and not declined:
            return
        correlation = "renewals/charges"
        now = datetime.now(UTC)
        async with tenant_tx(self._pool, tenant_id) as conn:
            done = await bulk.transition_payments(conn, tenant_id, [bulk.Move(
                p, TransitionCommand(Transition.MARK_COMPLETED)) for p in succeeded], ACTOR)
            await bulk.settle_invoices(conn, tenant_id, done, correlation, now)
            failed = await bulk.transition_payments(conn, tenant_id, [bulk.Move(p, TransitionCommand(
                Transition.MARK_FAILED, failure_code=i.decline_code or "canceled_by_provider",
                failure_message=i.failure_message)) for p, i in declined], ACTOR)
            owed = await bulk.charges_failed(conn, tenant_id, [bulk.Failure(r, r["failure_code"]) for r in failed],
                                             correlation, now)
            await bulk.set_charge_state(conn, [r["payment_id"] for r in done] + [r["payment_id"] for r in failed],
                                        "settled")
        result.succeeded += len(done)
        result.failed += len(failed)
        if owed:
            result.handed_to_dunning += await self._dunning.start(self._client(), tenant_id, owed)

    # --- what earlier runs (or other paths) left owed -------------------------------------------------------
    @activity.defn
    async def sweep(self, run_id: str) -> SweepResult:
        """Before invoicing: credit notes owed (so the customer's credit is there for the invoice), dunning
        starts owed, and charges earlier runs left unsent or unsettled (a run cut short)."""
        client = self._client()
        result = SweepResult()
        result.credits_issued = await subscription_credits.issue_owed(self._pool, client, self._task_queue,
                                                                      self._timings)
        result.dunning_started = await self._dunning.start_owed(client)
        leftovers: dict[str, set[str]] = {}
        for r in await self._pool.fetch("SELECT tenant_id::text, payment_id, state FROM "
                                        "paysaga.open_renewal_charges(NULL, 5000)"):
            leftovers.setdefault(r["tenant_id"], set()).add(r["state"])
        charge = ChargeBatchResult(batch_no=-1)
        for tenant_id, states in leftovers.items():
            activity.heartbeat(tenant_id)
            if "created" in states:
                await self._charge_tenant(tenant_id, None, None, Pacing(), charge)
            await self._settle_tenant(tenant_id, None, None, time.monotonic() + 5.0, charge)
        result.settled = charge.succeeded + charge.failed
        return result


# --- helpers --------------------------------------------------------------------------------------------------
async def _methods(conn: asyncpg.Connection, loaded: Sequence[subs.Loaded], customers: dict[str, asyncpg.Record]
                   ) -> dict[str, asyncpg.Record]:
    ids = {x.subscription.default_payment_method for x in loaded if x.subscription.default_payment_method}
    ids |= {c["default_payment_method_id"] for c in customers.values() if c["default_payment_method_id"]}
    rows = await conn.fetch("SELECT * FROM paysaga.payment_methods WHERE payment_method_id = ANY($1::text[])",
                            list(ids))
    return {r["payment_method_id"]: r for r in rows}


def _create_intent(tenant_id: str, row: asyncpg.Record) -> CreateIntent:
    minor = Money(row["amount_micros"], row["currency"]).to_minor_units(RoundingMode.HALF_EVEN)
    return CreateIntent(payment_id=row["payment_id"], tenant_id=tenant_id, attempt=row["attempt"],
                        amount_minor=minor, currency=row["currency"], payment_method=row["provider_token"],
                        description=row["description"], off_session=True,
                        key=charge_key(row["subscription_id"], row["period_start"], row["attempt"]))


def _trial_notice(s: Subscription, customer: asyncpg.Record) -> Notification:
    assert s.trial_end is not None
    return Notification(
        notification_id=f"ntf_{s.subscription_id}_trial_will_end", tenant_id=s.tenant_id,
        kind="subscription.trial_will_end", subject=f"Your trial ends on {s.trial_end.date().isoformat()}",
        data={"subscription_id": s.subscription_id, "customer_id": s.customer_id, "trial_end": iso(s.trial_end),
              "has_payment_method": bool(s.default_payment_method or customer["default_payment_method_id"])})


async def _void(client: Client, task_queue: str, timings: CollectionTimings, tenant_id: str, invoice_id: str,
                customer_id: str, currency: str) -> None:
    """The first invoice of a subscription that expired unpaid is voided (through its workflow, which reverses
    its tax)."""
    try:
        await client.execute_update_with_start_workflow(
            ACTION_UPDATE, InvoiceAction(request_id=f"expire-{invoice_id}", kind="void", actor=ACTOR,
                                         reason="subscription incomplete_expired: first invoice not paid in time"),
            start_workflow_operation=subscription_credits.invoice_start(tenant_id, invoice_id, customer_id,
                                                                        currency, "open", task_queue, timings),
            result_type=dict, id=f"void-expire-{invoice_id}")
    except Exception as exc:  # already paid or void meanwhile: nothing to void
        log.info("renewal.expired_invoice_not_voided", invoice_id=invoice_id, reason=str(exc))


__all__ = ["RenewalActivities"]
