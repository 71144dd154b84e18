"""Subscriptions: create, read, list, cancel (now or at the period's end, and undo), pause and resume collection,
resume a paused subscription, change the price or quantity, change the payment method, preview the next invoice.

Every change is one transaction: the subscription (the domain's step, its lifecycle event and outbox message)
with what it bills — an invoice drafted for what is invoiced now, proration charges kept for the next invoice,
unused time owed as a credit note on the line that billed it. After the commit, the invoice is finalized and
collected through its InvoiceWorkflow and owed credits are issued through theirs (and if this process dies in
between, the renewal run issues what is owed; an unfinalized draft is finalized by the next call for it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from activities import subscription_credits
from activities.dunning_start import signal_payment_method
from activities.stores import catalogue as catalogue_store
from activities.stores import customer_credit, customers
from activities.stores import invoices as invoice_store
from activities.stores import subscriptions as store
from activities.stores import tax as tax_store
from activities.subscription_invoices import NotInvoiceable, invoice_lines, plan
from activities.tax import build_tax_provider
from activities.tax.seller import Seller
from contracts.auth import Principal
from contracts.invoice_views import invoice_json
from contracts.invoices import invoice_workflow_id
from contracts.subscription_views import event_json, subscription_json
from contracts.subscriptions import (
    SUBSCRIPTIONS_PATH,
    PauseCollectionBody,
    PaymentMethodBody,
    SubscriptionCancel,
    SubscriptionChange,
    SubscriptionCreate,
    change_invoice_id,
    period_invoice_id,
    proration_credit_note_id,
)
from domain.billing_cycle import BillingCycle, BillingCycleRefused, iso
from domain.billing_line import BillingLine, Item
from domain.catalogue import CatalogueRefused, Price
from domain.invoice import InvoiceStatus, credit_line
from domain.money import Money
from domain.proration import ProrationRefused
from domain.refusal import Refused
from domain.subscription import (
    Collection,
    EventType,
    Step,
    Subscription,
    SubscriptionEvent,
    SubscriptionStatus,
    TrialEndBehavior,
)
from paysaga.db import tenant_tx
from services import idempotency
from services import invoices as invoice_service
from services.context import AppContext
from services.errors import Conflict, ServiceError, Unprocessable, not_found
from services.ids import new_id

log = structlog.get_logger("paysaga.billing")
S = SubscriptionStatus
# Refusals about the request's content (422); the others are about the subscription's state (409).
UNPROCESSABLE = {"invalid-id", "invalid-instant", "invalid-trial-end", "cycle-mismatch", "anchor-too-far",
                 "invalid-day-of-month", "invalid-month", "invalid-time-of-day", "invalid-interval",
                 "invalid-interval-count", "currency-change", "no-change", "proration-date-outside-period",
                 "invalid-proration-behavior", "invalid-timing", "invalid-pause-behavior", "invalid-resumes-at",
                 "invalid-quantity", "invalid-trial-end-behavior", "instant-out-of-range", "unknown-price",
                 "unknown-product", "payment-method-required", "seller-profile-required",
                 "customer-address-required", "tax-refused", "invalid-attempt"}


def refusal(exc: Refused) -> ServiceError:
    error = Unprocessable if exc.code in UNPROCESSABLE else Conflict
    return error(exc.code, "Subscription refused", str(exc))


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def view(loaded: store.Loaded, invoice: dict[str, Any] | None = None) -> dict[str, Any]:
    body = subscription_json(loaded.subscription, loaded.row)
    if invoice is not None:
        body["latest_invoice"] = invoice
    return body


# --- what a step bills --------------------------------------------------------------------------------------
@dataclass
class Billing:
    """What to do after the commit: invoices to finalize (through their workflows), credits to issue."""

    invoices: list[str] = field(default_factory=list)
    credits: list[str] = field(default_factory=list)
    signal_payment_method: str | None = None


async def _draft(conn: asyncpg.Connection, who: Principal, loaded: store.Loaded, s: Subscription, invoice_id: str,
                 lines: Sequence[BillingLine], pending: Sequence[asyncpg.Record], correlation_id: str) -> None:
    """A draft invoice of the subscription with these lines (and the proration charges kept for it)."""
    codes = await catalogue_store.tax_codes(conn, {line.price_id for line in lines} | {p["price_id"] for p in pending})
    items, price_ids, prorations = invoice_lines(invoice_id, lines, pending, codes)
    row = loaded.row
    fresh = await invoice_store.insert_draft(
        conn, tenant_id=s.tenant_id, invoice_id=invoice_id, customer_id=s.customer_id, currency=s.currency,
        collection_method=row["collection_method"],
        days_until_due=row["days_until_due"] if row["collection_method"] == "send_invoice" else None, due_date=None,
        description=None, series="INV", period_start=s.current_period.start.date(),
        period_end=s.current_period.end.date(),
        metadata={"subscription_period_start": iso(s.current_period.start)}, idempotency_key=None,
        workflow_id=invoice_workflow_id(s.tenant_id, invoice_id), subscription_id=s.subscription_id)
    if not fresh:
        return
    await invoice_store.insert_lines(conn, s.tenant_id, invoice_id, items, first_position=1, price_ids=price_ids,
                                     prorations=prorations)
    await store.mark_pending_billed(conn, [p["line_id"] for p in pending], [invoice_id] * len(pending))
    created = await invoice_store.load(conn, invoice_id)
    assert created is not None
    await invoice_store.record_event(conn, created.row, "invoice.created", None, who.actor, correlation_id,
                                     invoice_json(created.invoice, created.row))


async def _owe_credits(conn: asyncpg.Connection, before: Subscription, step: Step, credits: Sequence[BillingLine]
                       ) -> tuple[list[str], int]:
    """Unused time credited on the lines that billed it (newest first): each part a credit note owed. What no
    line billed (time that was free) is not credited. Answers the credit notes owed and what was not credited."""
    owed: list[str] = []
    uncredited = 0
    n = 0
    for credit in credits:
        want = -credit.amount.micros
        rows = await conn.fetch(
            """SELECT l.invoice_id, l.line_id, l.amount_micros FROM paysaga.invoice_lines l
                 JOIN paysaga.invoices i ON i.tenant_id = l.tenant_id AND i.invoice_id = l.invoice_id
                WHERE i.subscription_id = $1 AND l.price_id = $2 AND i.status IN ('open', 'paid', 'uncollectible')
                  AND l.period_start <= $3 AND l.period_end >= $4
                ORDER BY i.created_at DESC, l.position DESC""",
            before.subscription_id, credit.price_id, credit.period_start.date(), credit.period_end.date())
        owed_on = await store.credited_on_lines(conn, [(r["invoice_id"], r["line_id"]) for r in rows])
        loaded = {r["invoice_id"]: await invoice_store.load(conn, r["invoice_id"]) for r in rows}
        for r in rows:
            if want <= 0:
                break
            invoice = loaded[r["invoice_id"]]
            assert invoice is not None
            credited, _ = invoice.invoice.credited_on(r["line_id"])
            room = r["amount_micros"] - credited.micros - owed_on.get((r["invoice_id"], r["line_id"]), 0)
            part = min(room, want)
            if part <= 0:
                continue
            n += 1
            credit_note_id = proration_credit_note_id(before.subscription_id, step.event.seq, n)
            await store.owe_credit(conn, before.tenant_id, credit_note_id, before.subscription_id, r["invoice_id"],
                                   r["line_id"], part, credit.description[:500])
            owed.append(credit_note_id)
            want -= part
        uncredited += max(want, 0)
    return owed, uncredited


async def _bill(conn: asyncpg.Connection, who: Principal, loaded: store.Loaded, step: Step, correlation_id: str,
                *, invoice_pending: bool = False) -> tuple[Billing, dict[str, Any], Step]:
    """What the step's lines become: credits owed, an invoice now, or charges kept for the next invoice."""
    billing = Billing()
    columns: dict[str, Any] = {}
    s = step.subscription
    credits = [line for line in step.lines if line.is_credit]
    charges = [line for line in step.lines if not line.is_credit]
    if credits:
        billing.credits, uncredited = await _owe_credits(conn, loaded.subscription, step, credits)
        if uncredited:
            step = _with_data(step, {"uncredited_micros": uncredited})
    pending = (await store.open_pending_lines(conn, [s.subscription_id])).get(s.subscription_id, [])
    if (step.invoice_now and charges) or (invoice_pending and pending):
        resets = step.proration is not None and step.proration.resets_cycle
        invoice_id = (period_invoice_id(s.subscription_id, s.current_period.start)
                      if resets or step.event.type.value in ("created", "resumed", "trial_converted")
                      else change_invoice_id(s.subscription_id, step.event.seq))
        await _draft(conn, who, loaded, s, invoice_id, charges if step.invoice_now else [], pending, correlation_id)
        columns["latest_invoice_id"] = invoice_id
        if step.collect is not Collection.KEEP_AS_DRAFT:
            billing.invoices.append(invoice_id)
    elif charges:
        await store.add_pending_lines(conn, s.tenant_id, s.subscription_id, step.event.seq, charges)
    return billing, columns, step


def _with_data(step: Step, data: dict[str, Any]) -> Step:
    return replace(step, event=replace(step.event, data={**step.event.data, **data}))


async def _follow_up(ctx: AppContext, who: Principal, billing: Billing) -> dict[str, Any] | None:
    """After the commit: credits first (a paid invoice's credit then waits in the customer's balance for the
    invoice finalized next), then the invoices. Answers the last invoice as finalized."""
    settings = ctx.settings
    timings = invoice_service.collection_timings(settings)
    for credit_note_id in billing.credits:
        await subscription_credits.issue(ctx.pool, ctx.temporal, settings.task_queue, timings, who.tenant_id,
                                         credit_note_id)
    invoice: dict[str, Any] | None = None
    for invoice_id in billing.invoices:
        invoice = await invoice_service.finalize(ctx, who, invoice_id)
    return invoice


# --- the operations -------------------------------------------------------------------------------------------
async def _price(conn: asyncpg.Connection, price_id: str, *, offered: bool) -> Price:
    row = await catalogue_store.price_record(conn, price_id)
    if row is None:
        raise Unprocessable("unknown-price", "Unknown price", f"No price {price_id}.")
    price = catalogue_store.price_of(row)
    if offered:
        product = await catalogue_store.product_row(conn, price.product_id)
        if not price.active:
            raise Conflict("price-inactive", "Price archived", f"{price_id} is archived: use a newer version.")
        if product is None or not product["active"]:
            raise Conflict("product-inactive", "Product archived", f"Product {price.product_id} is archived.")
    return price


async def _method(conn: asyncpg.Connection, customer_id: str, payment_method_id: str) -> None:
    method = await conn.fetchrow("SELECT customer_id, detached_at FROM paysaga.payment_methods "
                                 "WHERE payment_method_id = $1", payment_method_id)
    if method is None or method["customer_id"] != customer_id or method["detached_at"] is not None:
        raise Unprocessable("unknown-payment-method", "Unknown payment method",
                            f"{payment_method_id} is not an attached payment method of {customer_id}.")


async def _invoiceable(conn: asyncpg.Connection, customer: asyncpg.Record) -> None:
    """An invoice can be finalized only with a seller and a customer whose country is known: refuse before
    anything is written rather than leave a subscription with an invoice that cannot be issued."""
    if await tax_store.fetch_profile(conn) is None:
        raise Unprocessable("seller-profile-required", "Subscription refused",
                            "Set the tenant's legal name and address first (PUT /v1/tenant/profile).")
    if not (customer["address"] or customer["country"]):
        raise Unprocessable("customer-address-required", "Subscription refused",
                            "The customer needs an address (at least a country): tax depends on it.")


async def create(ctx: AppContext, who: Principal, body: SubscriptionCreate, key: str | None) -> idempotency.Answer:
    key = idempotency.require_key(key)
    if body.days_until_due is not None and body.collection_method != "send_invoice":
        raise Unprocessable("invalid-days-until-due", "Subscription refused",
                            "days_until_due is for collection_method send_invoice.")

    async def check(conn: asyncpg.Connection) -> None:
        if not await customers.exists(conn, body.customer_id):
            raise Unprocessable("unknown-customer", "Unknown customer", f"No customer {body.customer_id}.")

    async def act(subscription_id: str) -> idempotency.Answer:
        billing = Billing()
        async with tenant_tx(ctx.pool, who.tenant_id) as conn:
            existing = await store.load(conn, subscription_id)
            if existing is not None:  # a retry after the commit: the subscription it made
                return idempotency.Answer(201, view(existing))
            customer = await customers.fetch(conn, body.customer_id)
            assert customer is not None
            price = await _price(conn, body.price_id, offered=True)
            policy = await catalogue_store.billing_policy(conn)
            method = body.default_payment_method_id
            if method is not None:
                await _method(conn, body.customer_id, method)
            start = now()
            trial_end = body.trial_end or (start + timedelta(days=body.trial_period_days)
                                           if body.trial_period_days else None)
            if not trial_end:
                await _invoiceable(conn, customer)
            try:
                cycle = None
                if body.billing_cycle_anchor is not None:
                    cycle = BillingCycle(body.billing_cycle_anchor.replace(microsecond=0), price.interval,
                                         price.interval_count)
                elif body.billing_cycle_anchor_config is not None:
                    c = body.billing_cycle_anchor_config
                    cycle = BillingCycle.calendar(trial_end or start, price.interval, price.interval_count,
                                                  day_of_month=c.day_of_month, month=c.month, hour=c.hour,
                                                  minute=c.minute, second=c.second)
                step = Subscription.create(
                    subscription_id, who.tenant_id, body.customer_id, Item(price, body.quantity), start,
                    cycle=cycle, trial_end=trial_end, default_payment_method=method,
                    trial_end_behavior=TrialEndBehavior(body.trial_end_behavior) if body.trial_end_behavior
                    else policy.trial_end_behavior, prorate_first_period=body.prorate_first_period)
            except (Refused, BillingCycleRefused, CatalogueRefused) as exc:
                raise refusal(exc) from exc
            loaded = await store.insert(conn, step, collection_method=body.collection_method,
                                        days_until_due=body.days_until_due, metadata=body.metadata,
                                        idempotency_key=key, actor=who.actor, correlation_id=who.request_id or "")
            assert loaded is not None
            if step.invoice_now:
                billing, columns, _ = await _bill(conn, who, loaded, step, who.request_id or "")
                loaded = await store.set_columns(conn, loaded, columns)
        invoice = await _follow_up(ctx, who, billing)
        async with tenant_tx(ctx.pool, who.tenant_id) as conn:
            after = await store.load(conn, subscription_id)
        assert after is not None
        return idempotency.Answer(201, view(after, invoice))

    return await idempotency.once(ctx, who, key, SUBSCRIPTIONS_PATH, body.model_dump(mode="json"), new_id("sub"),
                                  act, check=check, final_errors=(Conflict, Unprocessable))


async def get(ctx: AppContext, who: Principal, subscription_id: str) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        loaded = await store.load(conn, subscription_id)
    if loaded is None:
        raise not_found("subscription", subscription_id)
    return view(loaded)


async def list_page(ctx: AppContext, who: Principal, limit: int, starting_after: str | None, *,
                    customer_id: str | None, status: str | None, price_id: str | None) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        try:
            page, more = await store.list_page(conn, limit, starting_after, customer_id=customer_id, status=status,
                                               price_id=price_id)
        except LookupError:
            raise Unprocessable("invalid-cursor", "Invalid cursor", f"No subscription {starting_after}.") from None
    data = [view(x) for x in page]
    return {"object": "list", "data": data, "has_more": more, "next_cursor": data[-1]["id"] if more else None}


async def events(ctx: AppContext, who: Principal, subscription_id: str) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        if await store.load(conn, subscription_id) is None:
            raise not_found("subscription", subscription_id)
        rows = await store.events(conn, subscription_id)
    data = [event_json(SubscriptionEvent(
        r["subscription_id"], r["seq"], EventType(r["type"]), S(r["old_status"]) if r["old_status"] else None,
        S(r["new_status"]), r["occurred_at"], r["data"])) for r in rows]
    return {"object": "list", "data": data, "has_more": False}


Change = Callable[[asyncpg.Connection, store.Loaded, datetime], Awaitable[list[Step]]]


async def _apply(ctx: AppContext, who: Principal, subscription_id: str, change: Change, *,
                 invoice_pending: bool = False) -> dict[str, Any]:
    """One request's steps on the subscription, each with what it bills, in one transaction; then what follows."""
    total = Billing()
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        loaded = await store.load(conn, subscription_id, lock=True)
        if loaded is None:
            raise not_found("subscription", subscription_id)
        try:
            steps = await change(conn, loaded, now())
        except (Refused, BillingCycleRefused, CatalogueRefused, ProrationRefused) as exc:
            raise refusal(exc) from exc
        for step in steps:
            billing, columns, step = await _bill(conn, who, loaded, step, who.request_id or "",
                                                 invoice_pending=invoice_pending)
            loaded = await store.save(conn, loaded, step, who.actor, who.request_id or "", columns=columns)
            total.invoices += billing.invoices
            total.credits += billing.credits
            if step.event.type.value == "payment_method_updated":
                total.signal_payment_method = step.subscription.default_payment_method
    invoice = await _follow_up(ctx, who, total)
    if total.signal_payment_method:
        async with tenant_tx(ctx.pool, who.tenant_id) as conn:
            await signal_payment_method(ctx.temporal, conn, who.tenant_id, loaded.subscription.customer_id,
                                        total.signal_payment_method,
                                        f"pm_{subscription_id}_{loaded.subscription.event_seq}",
                                        subscription_id=subscription_id)
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        after = await store.load(conn, subscription_id)
    assert after is not None
    return view(after, invoice)


async def cancel(ctx: AppContext, who: Principal, subscription_id: str, body: SubscriptionCancel) -> dict[str, Any]:
    """Now (unused time credited with `prorate`; proration charges still pending are invoiced) or at the end of
    the period (undo until then)."""
    async def change(conn: asyncpg.Connection, loaded: store.Loaded, at: datetime) -> list[Step]:
        s = loaded.subscription
        if body.at_period_end:
            return [s.schedule_cancel(at)]
        return [s.cancel(at, prorate=body.prorate, reason=body.reason)]

    return await _apply(ctx, who, subscription_id, change, invoice_pending=not body.at_period_end)


async def undo_cancel(ctx: AppContext, who: Principal, subscription_id: str) -> dict[str, Any]:
    async def change(conn: asyncpg.Connection, loaded: store.Loaded, at: datetime) -> list[Step]:
        return [loaded.subscription.unschedule_cancel(at)]

    return await _apply(ctx, who, subscription_id, change)


async def pause_collection(ctx: AppContext, who: Principal, subscription_id: str,
                           body: PauseCollectionBody) -> dict[str, Any]:
    async def change(conn: asyncpg.Connection, loaded: store.Loaded, at: datetime) -> list[Step]:
        resumes = body.resumes_at.replace(microsecond=0) if body.resumes_at else None
        return [loaded.subscription.pause_collection(at, body.behavior, resumes)]

    return await _apply(ctx, who, subscription_id, change)


async def resume_collection(ctx: AppContext, who: Principal, subscription_id: str) -> dict[str, Any]:
    async def change(conn: asyncpg.Connection, loaded: store.Loaded, at: datetime) -> list[Step]:
        return [loaded.subscription.resume_collection(at)]

    return await _apply(ctx, who, subscription_id, change)


async def resume(ctx: AppContext, who: Principal, subscription_id: str) -> dict[str, Any]:
    """A paused subscription (its trial ended without a payment method) starts again now, with a first invoice;
    the customer's default payment method becomes its own if it has none."""
    async def change(conn: asyncpg.Connection, loaded: store.Loaded, at: datetime) -> list[Step]:
        s = loaded.subscription
        steps: list[Step] = []
        customer = await customers.fetch(conn, s.customer_id)
        assert customer is not None
        if s.status is S.PAUSED:
            await _invoiceable(conn, customer)
        if s.status is S.PAUSED and not s.default_payment_method and customer["default_payment_method_id"]:
            steps.append(s.update_payment_method(at, customer["default_payment_method_id"]))
            s = steps[-1].subscription
        steps.append(s.resume(at))
        return steps

    return await _apply(ctx, who, subscription_id, change)


async def change_item(ctx: AppContext, who: Principal, subscription_id: str,
                      body: SubscriptionChange) -> dict[str, Any]:
    """A new price and/or quantity, now or at the period's end as the tenant's change policy (or the request)
    says; prorations per the behaviour: credited unused time (a credit note), charged remaining time (invoiced
    now, or kept for the next invoice)."""
    async def change(conn: asyncpg.Connection, loaded: store.Loaded, at: datetime) -> list[Step]:
        s = loaded.subscription
        price = s.item.price
        if body.price_id is not None and body.price_id != price.price_id:
            price = await _price(conn, body.price_id, offered=True)
        item = Item(price, body.quantity if body.quantity is not None else s.item.quantity)
        policy = await catalogue_store.billing_policy(conn)
        proration_date = body.proration_date.replace(microsecond=0) if body.proration_date else None
        return [s.change(at, item, policy.change_policy, proration_date=proration_date,
                         proration_behavior=body.proration_behavior, timing=body.timing)]

    return await _apply(ctx, who, subscription_id, change)


async def cancel_scheduled_change(ctx: AppContext, who: Principal, subscription_id: str) -> dict[str, Any]:
    async def change(conn: asyncpg.Connection, loaded: store.Loaded, at: datetime) -> list[Step]:
        return [loaded.subscription.unschedule_change(at)]

    return await _apply(ctx, who, subscription_id, change)


async def update_payment_method(ctx: AppContext, who: Principal, subscription_id: str,
                                body: PaymentMethodBody) -> dict[str, Any]:
    """Its new default payment method; an unpaid invoice in dunning is retried with it at once."""
    async def change(conn: asyncpg.Connection, loaded: store.Loaded, at: datetime) -> list[Step]:
        await _method(conn, loaded.subscription.customer_id, body.payment_method_id)
        return [loaded.subscription.update_payment_method(at, body.payment_method_id)]

    return await _apply(ctx, who, subscription_id, change)


# --- the next invoice, previewed --------------------------------------------------------------------------------
async def upcoming_invoice(ctx: AppContext, who: Principal, subscription_id: str) -> dict[str, Any]:
    """The invoice the next renewal (or the trial's end) will issue, computed as the renewal run computes it
    (the same lines, proration charges kept for it, tax, the customer's credit applied), nothing written."""
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        loaded = await store.load(conn, subscription_id)
        if loaded is None:
            raise not_found("subscription", subscription_id)
        s = loaded.subscription
        customer = await customers.fetch(conn, s.customer_id)
        assert customer is not None
        try:
            step = _next_step(s, customer)
        except Refused as exc:
            raise refusal(exc) from exc
        if step is None or not (step.invoice_now and step.lines) or step.collect is None:
            raise Conflict("no-upcoming-invoice", "No upcoming invoice",
                           f"A subscription that is {s.status.value} has no next invoice to preview.")
        after = step.subscription
        pending = (await store.open_pending_lines(conn, [s.subscription_id])).get(s.subscription_id, [])
        codes = await catalogue_store.tax_codes(
            conn, {line.price_id for line in step.lines} | {p["price_id"] for p in pending})
        seller = Seller(await tax_store.fetch_profile(conn), await tax_store.list_registrations(conn))
        credit = (await customer_credit.available_many(conn, [(s.customer_id, s.currency)], lock=False)).get(
            (s.customer_id, s.currency), Money.zero(s.currency)) + await _owed_to_balance(conn, s.customer_id,
                                                                                         s.currency)
        tax = build_tax_provider(ctx.settings, ctx.pool)
        try:
            planned = await plan(tax=tax, seller=seller, customer=customer, subscription=after, lines=step.lines,
                                 collect=step.collect, pending=pending, tax_codes=codes,
                                 collection_method=loaded.row["collection_method"],
                                 days_until_due=loaded.row["days_until_due"], credit_available=credit)
        except NotInvoiceable as exc:
            raise Unprocessable(exc.code, "No upcoming invoice", str(exc)) from exc
        finally:
            await tax.aclose()
    invoice = planned.invoice
    row = {"period_start": planned.period_start.date(), "period_end": planned.period_end.date(),
           "subscription_id": s.subscription_id, "tax_quote": planned.tax_quote.model_dump(mode="json")
           if planned.tax_quote else None, "metadata": planned.metadata, "series": "INV",
           "workflow_id": invoice_workflow_id(s.tenant_id, invoice.invoice_id)}
    body = invoice_json(invoice, row)
    return {**body, "number": None, "status": "draft", "actions": [], "pdf": None, "preview": True,
            "period_start_at": iso(planned.period_start), "period_end_at": iso(planned.period_end)}


def _next_step(s: Subscription, customer: asyncpg.Record) -> Step | None:
    """The step the renewal run will take next for this subscription, as of when it is due."""
    if s.status in (S.ACTIVE, S.PAST_DUE, S.UNPAID):
        at = s.current_period.end
        if s.collection_pause is not None and s.collection_resume_due(at):
            s = s.resume_collection(at).subscription
        return s.renew(at)
    if s.status is S.TRIALING and s.trial_end is not None:
        if not s.default_payment_method and customer["default_payment_method_id"]:
            s = s.update_payment_method(s.trial_end, customer["default_payment_method_id"]).subscription
        return s.end_trial(s.trial_end)
    return None


async def _owed_to_balance(conn: asyncpg.Connection, customer_id: str, currency: str) -> Money:
    """Credits owed on invoices already paid: when issued they land in the customer's balance (with their tax)."""
    total = Money.zero(currency)
    rows = await conn.fetch(
        """SELECT c.invoice_id, c.line_id, c.amount_micros FROM paysaga.subscription_credits c
             JOIN paysaga.invoices i ON i.tenant_id = c.tenant_id AND i.invoice_id = c.invoice_id
            WHERE c.state = 'owed' AND i.customer_id = $1 AND i.currency = $2 AND i.status = 'paid'""",
        customer_id, currency)
    for r in rows:
        loaded = await invoice_store.load(conn, r["invoice_id"])
        if loaded is not None and loaded.invoice.status is InvoiceStatus.PAID:
            total = total + credit_line(loaded.invoice, r["line_id"], Money(r["amount_micros"], currency)).total
    return total
