"""Set-based writes of the renewal run: hundreds of subscriptions, invoices, lines, tax records, journal entries,
payments, lifecycle events and outbox messages per statement, in the caller's (one tenant's) transaction.

Each write is what the one-at-a-time stores write for one item (the same rows, ids and payloads), only many at a
time: `jsonb_to_recordset` or `unnest` of arrays, `ON CONFLICT DO NOTHING` where a retry may meet its own rows,
status guards in every UPDATE. The rules stay the domain's: the callers build the aggregates' new states (and the
entries) with it, these functions only store them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from activities.stores import invoices as invoice_store
from activities.stores import subscriptions
from activities.stores.payments import aggregate_from_row
from activities.stores.subscriptions import Loaded, columns_of, event_payload, next_action_at
from activities.subscription_invoices import SERIES, PlannedInvoice
from activities.tax.ledger import stable_id
from contracts.invoice_views import generated_event, invoice_json
from contracts.invoices import GENERATED_EVENT_TYPE, invoice_workflow_id
from contracts.payments import PaymentView, payment_workflow_id
from domain import invoice_postings as postings
from domain.billing_cycle import iso
from domain.invoice import Invoice, InvoiceRefused, InvoiceStatus
from domain.ledger import JournalEntry, payment_completed
from domain.money import Money
from domain.payment import InvalidTransition, LifecycleEvent, PaymentStatus, TransitionCommand
from domain.subscription import Collection, Subscription, SubscriptionEvent
from paysaga.json_text import dumps

log = structlog.get_logger("paysaga.billing")


# --- outbox and ledger ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Message:
    event_id: str
    event_type: str  # billing.<type>.v1
    subject: str
    payload: dict[str, Any]


def message(event_id: str, kind: str, payload: dict[str, Any]) -> Message:
    """What `outbox.enqueue` writes for one event of `kind` (e.g. invoice.finalized)."""
    return Message(event_id, f"billing.{kind}.v1", f"billing.{kind}", {"event_id": event_id, "type": kind, **payload})


async def write_outbox(conn: asyncpg.Connection, tenant_id: str, messages: Sequence[Message]) -> None:
    # Arrays, not one JSON document of the batch: each payload is parsed once, into its own jsonb value, instead
    # of the whole batch being parsed and every payload copied out of it (a third less of the statement's time).
    if not messages:
        return
    await conn.execute(
        """INSERT INTO paysaga.outbox (tenant_id, event_id, event_type, subject, payload)
           SELECT $1, r.event_id, r.event_type, r.subject, r.payload::json
             FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])
                  WITH ORDINALITY AS r(event_id, event_type, subject, payload, n)
            ORDER BY r.n  -- the relay publishes in outbox order: an aggregate's events in the order they happened
           ON CONFLICT (event_id) DO NOTHING""",
        tenant_id, [m.event_id for m in messages], [m.event_type for m in messages],
        [m.subject for m in messages], [dumps(m.payload) for m in messages])


async def post_entries(conn: asyncpg.Connection, tenant_id: str, entries: Iterable[JournalEntry | None]) -> None:
    """`ledger.post` for many entries: each once (its id names its business event), accounts made on first use."""
    todo = [e for e in entries if e is not None]
    if not todo:
        return
    posted = {r["entry_id"] for r in await conn.fetch(
        """INSERT INTO paysaga.journal_entries (tenant_id, entry_id, source_type, source_id, event, memo, reverses)
           SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
           ON CONFLICT DO NOTHING RETURNING entry_id""",
        tenant_id, [e.entry_id for e in todo], [e.source_type for e in todo], [e.source_id for e in todo],
        [e.event for e in todo], [e.memo for e in todo], [e.reverses for e in todo])}
    fresh = [e for e in todo if e.entry_id in posted]
    if not fresh:
        return
    accounts = sorted({line.account for e in fresh for line in e.lines}, key=lambda a: a.account_id)
    await conn.execute(
        """INSERT INTO paysaga.ledger_accounts (tenant_id, account_id, code, subject, currency, type)
           SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
           ON CONFLICT DO NOTHING""",
        tenant_id, [a.account_id for a in accounts], [a.code.value for a in accounts], [a.subject for a in accounts],
        [a.currency for a in accounts], [a.type.value for a in accounts])
    lines = [(e.entry_id, n, line) for e in fresh for n, line in enumerate(e.lines, start=1)]
    await conn.execute(
        """INSERT INTO paysaga.journal_lines (tenant_id, entry_id, line_no, account_id, currency, amount_micros)
           SELECT $1, * FROM unnest($2::text[], $3::int[], $4::text[], $5::text[], $6::bigint[])""",
        tenant_id, [x[0] for x in lines], [x[1] for x in lines], [x[2].account.account_id for x in lines],
        [x[2].currency for x in lines], [x[2].amount_micros for x in lines])


# --- subscriptions --------------------------------------------------------------------------------------------
@dataclass
class SubscriptionChange:
    """One subscription's steps in this batch: its state before, after, and the events between."""

    before: Loaded
    after: Subscription
    events: list[SubscriptionEvent] = field(default_factory=list)
    columns: dict[str, Any] = field(default_factory=dict)  # latest_invoice_id, trial_notified, next_action_at


async def save_subscriptions(conn: asyncpg.Connection, tenant_id: str, changes: Sequence[SubscriptionChange],
                             actor: str, correlation_id: str) -> list[Loaded]:
    """Each subscription's new state (guarded by the sequence it was loaded at), its events and outbox messages."""
    if not changes:
        return []
    rows = []
    for c in changes:
        row = {**columns_of(c.after), "subscription_id": c.after.subscription_id,
               "old_seq": c.before.subscription.event_seq,
               "latest_invoice_id": c.columns.get("latest_invoice_id", c.before.row["latest_invoice_id"]),
               "trial_notified": c.columns.get("trial_notified", c.before.row["trial_notified"])}
        row["next_action_at"] = c.columns["next_action_at"] if "next_action_at" in c.columns else next_action_at(
            c.after, trial_notified=row["trial_notified"], collection_method=c.before.row["collection_method"],
            days_until_due=c.before.row["days_until_due"])
        rows.append(row)
    updated = await conn.fetch(
        """UPDATE paysaga.subscriptions s SET
               customer_id = r.customer_id, price_id = r.price_id, quantity = r.quantity, status = r.status,
               default_payment_method_id = r.default_payment_method_id, cycle_anchor = r.cycle_anchor,
               cycle_interval = r.cycle_interval, cycle_interval_count = r.cycle_interval_count,
               cycle_day_of_month = r.cycle_day_of_month, period_start = r.period_start, period_end = r.period_end,
               period_basis_start = r.period_basis_start, trial_start = r.trial_start, trial_end = r.trial_end,
               trial_end_behavior = r.trial_end_behavior, prorate_first_period = r.prorate_first_period,
               cancel_at_period_end = r.cancel_at_period_end, canceled_at = r.canceled_at, ended_at = r.ended_at,
               pause_behavior = r.pause_behavior, pause_resumes_at = r.pause_resumes_at,
               scheduled_price_id = r.scheduled_price_id, scheduled_quantity = r.scheduled_quantity,
               event_seq = r.event_seq, latest_invoice_id = r.latest_invoice_id, trial_notified = r.trial_notified,
               next_action_at = r.next_action_at, updated_at = now()
             FROM jsonb_to_recordset($1::text::jsonb) AS r(
               subscription_id text, old_seq int, customer_id text, price_id text, quantity int, status text,
               default_payment_method_id text, cycle_anchor timestamptz, cycle_interval text,
               cycle_interval_count int, cycle_day_of_month int, period_start timestamptz, period_end timestamptz,
               period_basis_start timestamptz, trial_start timestamptz, trial_end timestamptz,
               trial_end_behavior text, prorate_first_period boolean, cancel_at_period_end boolean,
               canceled_at timestamptz, ended_at timestamptz, pause_behavior text, pause_resumes_at timestamptz,
               scheduled_price_id text, scheduled_quantity int, event_seq int, latest_invoice_id text,
               trial_notified boolean, next_action_at timestamptz)
            WHERE s.subscription_id = r.subscription_id AND s.event_seq = r.old_seq
           RETURNING s.*""", dumps(rows))
    if len(updated) != len(changes):  # unreachable under the rows' locks; kept as the guard
        raise RuntimeError(f"{len(changes) - len(updated)} subscriptions changed concurrently")
    new_state = {c.after.subscription_id: c.after for c in changes}
    after = {r["subscription_id"]: Loaded(new_state[r["subscription_id"]], r) for r in updated}
    events = [(after[c.after.subscription_id], e) for c in changes for e in c.events]
    await write_subscription_events(conn, tenant_id, events, actor, correlation_id)
    return list(after.values())


async def write_subscription_events(conn: asyncpg.Connection, tenant_id: str,
                                    events: Sequence[tuple[Loaded, SubscriptionEvent]], actor: str,
                                    correlation_id: str) -> None:
    if not events:
        return
    await conn.execute(
        """INSERT INTO paysaga.subscription_events (event_id, tenant_id, subscription_id, seq, type, old_status,
               new_status, occurred_at, data, actor, correlation_id)
           SELECT r.event_id, $1, r.subscription_id, r.seq, r.type, r.old_status, r.new_status, r.occurred_at,
                  r.data, $2, $3
             FROM jsonb_to_recordset($4::text::jsonb) AS r(event_id text, subscription_id text, seq int, type text,
                  old_status text, new_status text, occurred_at timestamptz, data jsonb)""",
        tenant_id, actor, correlation_id, dumps([
            {"event_id": e.event_id, "subscription_id": e.subscription_id, "seq": e.seq, "type": e.type.value,
             "old_status": e.old_status.value if e.old_status else None, "new_status": e.new_status.value,
             "occurred_at": e.at, "data": dict(e.data)} for _, e in events]))
    await write_outbox(conn, tenant_id, [message(e.event_id, f"subscription.{e.type.value}",
                                                 event_payload(loaded, e, correlation_id)) for loaded, e in events])


# --- invoices -------------------------------------------------------------------------------------------------
async def take_numbers(conn: asyncpg.Connection, tenant_id: str, series: str, n: int) -> list[str]:
    """`n` consecutive numbers of the series, held (row-locked) until the transaction ends: gapless as one at a
    time would be."""
    if n == 0:
        return []
    last = await conn.fetchval(
        """INSERT INTO paysaga.invoice_sequences (tenant_id, series, last_number) VALUES ($1, $2, $3)
           ON CONFLICT (tenant_id, series) DO UPDATE SET last_number = invoice_sequences.last_number + $3
           RETURNING last_number""", tenant_id, series, n)
    return [f"{series}-{k:06d}" for k in range(last - n + 1, last + 1)]


def _status_after(planned: PlannedInvoice) -> list[tuple[str, InvoiceStatus]]:
    """The events a period's invoice goes through in its first transaction, after `invoice.created`."""
    inv = planned.invoice
    if planned.collect is Collection.KEEP_AS_DRAFT:
        return []
    steps = [("invoice.finalized", inv.status)]
    if planned.collect is Collection.MARK_UNCOLLECTIBLE and inv.status is InvoiceStatus.OPEN:
        steps.append(("invoice.marked_uncollectible", InvoiceStatus.UNCOLLECTIBLE))
    elif planned.collect is Collection.VOID and inv.status is InvoiceStatus.OPEN:
        steps.append(("invoice.voided", InvoiceStatus.VOID))
    return steps


async def write_invoices(conn: asyncpg.Connection, tenant_id: str, planned: Sequence[PlannedInvoice], *,
                         actor: str, correlation_id: str, tax_provider: str, now: datetime
                         ) -> list[PlannedInvoice]:
    """The period's invoices, their lines, numbers, lifecycle (finalized; written off or voided when collection is
    paused so), events, outbox messages (`billing.invoice.generated.v1` included), journal entries and, with the
    built-in tax engine, the committed tax. Answers the invoices written (with their numbers); one that exists
    already (a retried batch) is not written again."""
    if not planned:
        return []
    # Born in their final state: numbered, finalized (and written off or voided) as they are inserted, instead of
    # inserted as drafts and rewritten, every row and index entry twice. The numbers are taken for the invoices
    # not written yet (a retried batch's are skipped first), so the series stays gapless.
    known = {r["invoice_id"] for r in await conn.fetch(
        "SELECT invoice_id FROM paysaga.invoices WHERE invoice_id = ANY($1::text[])", [p.invoice_id for p in planned])}
    planned = [p for p in planned if p.invoice_id not in known]
    numbers = iter(await take_numbers(
        conn, tenant_id, SERIES, sum(1 for p in planned if p.collect is not Collection.KEEP_AS_DRAFT)))
    out = [p if p.collect is Collection.KEEP_AS_DRAFT else replace(p, invoice=replace(p.invoice, number=next(numbers)))
           for p in planned]
    # No ON CONFLICT: the subscriptions' row locks keep other writers of these invoices out, so a conflict would
    # be a bug, and it fails the batch (retried) instead of leaving a hole in the numbers.
    await conn.execute(
        """INSERT INTO paysaga.invoices (invoice_id, tenant_id, customer_id, currency, collection_method,
               days_until_due, series, period_start, period_end, subscription_id, metadata, workflow_id, event_seq,
               status, number, due_date, finalized_at, customer_snapshot, seller_snapshot, tax_quote, locale,
               credit_applied_micros, paid_at, uncollectible_at, voided_at, void_reason, updated_at)
           SELECT r.invoice_id, $1, r.customer_id, r.currency, r.collection_method, r.days_until_due, $2,
                  r.period_start, r.period_end, r.subscription_id, r.metadata, r.workflow_id, r.event_seq,
                  r.status, r.number, r.due_date, CASE WHEN r.status <> 'draft' THEN $4::timestamptz END,
                  r.customer_snapshot, r.seller_snapshot, r.tax_quote, r.locale, r.credit_applied_micros,
                  CASE WHEN r.status = 'paid' THEN $4::timestamptz END,
                  CASE WHEN r.status = 'uncollectible' THEN $4::timestamptz END,
                  CASE WHEN r.status = 'void' THEN $4::timestamptz END,
                  CASE WHEN r.status = 'void' THEN 'collection paused (void)' END,
                  CASE WHEN r.status <> 'draft' THEN $4::timestamptz ELSE now() END
             FROM jsonb_to_recordset($3::text::jsonb) AS r(invoice_id text, customer_id text, currency text,
                  collection_method text, days_until_due int, period_start date, period_end date,
                  subscription_id text, metadata jsonb, workflow_id text, event_seq int, status text, number text,
                  due_date date, customer_snapshot jsonb, seller_snapshot jsonb, tax_quote jsonb, locale text,
                  credit_applied_micros bigint)""",
        tenant_id, SERIES, dumps([_insert_row(p, tenant_id) for p in out]), now)
    lines = [(p, n, line) for p in out for n, line in enumerate(p.invoice.lines, start=1)]
    await conn.execute(
        """INSERT INTO paysaga.invoice_lines (tenant_id, invoice_id, line_id, position, description, quantity,
               unit_amount, amount_micros, period_start, period_end, tax_code, taxes, price_id, proration)
           SELECT $1, r.invoice_id, r.line_id, r.position, r.description, r.quantity, r.unit_amount,
                  r.amount_micros, r.period_start, r.period_end, r.tax_code, r.taxes, r.price_id, r.proration
             FROM jsonb_to_recordset($2::text::jsonb) AS r(invoice_id text, line_id text, position int,
                  description text, quantity text, unit_amount text, amount_micros bigint, period_start date,
                  period_end date, tax_code text, taxes jsonb, price_id text, proration boolean)""",
        tenant_id, dumps([{
            "invoice_id": p.invoice_id, "line_id": line.line_id, "position": n, "description": line.description,
            "quantity": line.quantity, "unit_amount": line.unit_amount, "amount_micros": line.amount.micros,
            "period_start": line.period_start, "period_end": line.period_end, "tax_code": line.tax_code,
            "taxes": invoice_store.taxes_json(line.taxes), "price_id": p.price_ids.get(line.line_id),
            "proration": line.line_id in p.prorations} for p, n, line in lines]))
    written = [p for p in out if p.collect is not Collection.KEEP_AS_DRAFT]
    await _invoice_events(conn, tenant_id, out, actor, correlation_id, now)
    entries: list[JournalEntry | None] = []
    for p in written:
        entries.append(postings.finalized(p.invoice))
        final = _status_after(p)[-1][1]
        if final is InvoiceStatus.UNCOLLECTIBLE:
            entries.append(postings.marked_uncollectible(p.invoice))
        elif final is InvoiceStatus.VOID:
            entries.append(postings.voided(p.invoice))
    await post_entries(conn, tenant_id, entries)
    committed = [p for p in written if p.tax_quote is not None and _status_after(p)[-1][1] is not InvoiceStatus.VOID]
    if tax_provider == "builtin" and committed:
        await commit_tax(conn, tenant_id, committed)
    return out


def _insert_row(p: PlannedInvoice, tenant_id: str) -> dict[str, Any]:
    """The invoice's row as it stands after its first transaction (see `_status_after`)."""
    steps = _status_after(p)
    final = steps[-1][1] if steps else InvoiceStatus.DRAFT
    row: dict[str, Any] = {
        "invoice_id": p.invoice_id, "customer_id": p.invoice.customer_id, "currency": p.invoice.currency,
        "collection_method": p.invoice.collection_method, "days_until_due": p.invoice.days_until_due,
        "period_start": p.period_start.date(), "period_end": p.period_end.date(),
        "subscription_id": p.subscription_id, "metadata": p.metadata,
        "workflow_id": invoice_workflow_id(tenant_id, p.invoice_id), "event_seq": 1 + len(steps),
        "status": final.value, "locale": p.locale, "credit_applied_micros": 0}  # a draft's locale: its customer's
    if steps:
        row.update({"number": p.invoice.number, "due_date": p.invoice.due_date,
                    "customer_snapshot": p.customer_snapshot, "seller_snapshot": p.seller_snapshot,
                    "tax_quote": p.tax_quote.model_dump(mode="json") if p.tax_quote else None,
                    "credit_applied_micros": p.invoice.credit_applied.micros if p.invoice.credit_applied else 0})
    return row


def _invoice_row(p: PlannedInvoice, tenant_id: str, now: datetime, status: InvoiceStatus) -> dict[str, Any]:
    """What `invoice_json` and `generated_event` read of an invoice row."""
    return {"description": None, "series": SERIES, "period_start": p.period_start.date(),
            "period_end": p.period_end.date(), "subscription_id": p.subscription_id,
            "tax_quote": p.tax_quote.model_dump(mode="json") if p.tax_quote else None, "paid_out_of_band": False,
            "workflow_id": invoice_workflow_id(tenant_id, p.invoice_id), "metadata": p.metadata,
            "finalized_at": now if status is not InvoiceStatus.DRAFT else None,
            "paid_at": now if status is InvoiceStatus.PAID else None, "created_at": now, "updated_at": now}


async def _invoice_events(conn: asyncpg.Connection, tenant_id: str, planned: Sequence[PlannedInvoice], actor: str,
                          correlation_id: str, now: datetime) -> None:
    rows: list[dict[str, Any]] = []
    messages: list[Message] = []
    for p in planned:
        draft = replace(p.invoice, status=InvoiceStatus.DRAFT, number=None)
        history: list[tuple[str, InvoiceStatus | None, Invoice]] = [("invoice.created", None, draft)]
        previous = InvoiceStatus.DRAFT
        for event_type, status in _status_after(p):
            history.append((event_type, previous, replace(p.invoice, status=status)))
            previous = status
        for seq, (event_type, old, invoice) in enumerate(history, start=1):
            event_id = invoice_store.transition_id(p.invoice_id, seq)
            row = _invoice_row(p, tenant_id, now, invoice.status)
            rows.append({"transition_id": event_id, "invoice_id": p.invoice_id, "seq": seq, "type": event_type,
                         "old_status": old.value if old else None, "new_status": invoice.status.value,
                         "metadata": {"number": invoice.number} if event_type == "invoice.finalized" else {}})
            messages.append(message(event_id, event_type, {
                "old_status": old.value if old else None, "new_status": invoice.status.value,
                "correlation_id": correlation_id, "invoice": invoice_json(invoice, row)}))
        if p.collect is not Collection.KEEP_AS_DRAFT:
            event_id = f"evt_{p.invoice_id}_generated"
            finalized = replace(p.invoice, status=_status_after(p)[0][1])
            messages.append(Message(event_id, GENERATED_EVENT_TYPE, "billing.invoice.generated", generated_event(
                finalized, _invoice_row(p, tenant_id, now, finalized.status), event_id, now)))
    await conn.execute(
        """INSERT INTO paysaga.invoice_events (transition_id, tenant_id, invoice_id, seq, type, old_status,
               new_status, metadata, actor, correlation_id)
           SELECT r.transition_id, $1, r.invoice_id, r.seq, r.type, r.old_status, r.new_status, r.metadata, $2, $3
             FROM jsonb_to_recordset($4::text::jsonb) AS r(transition_id text, invoice_id text, seq int, type text,
                  old_status text, new_status text, metadata jsonb)""",
        tenant_id, actor, correlation_id, dumps(rows))
    await write_outbox(conn, tenant_id, messages)


async def commit_tax(conn: asyncpg.Connection, tenant_id: str, planned: Sequence[PlannedInvoice]) -> None:
    """What the built-in engine's commit records for each quote (same ids: a later commit of the same quote, e.g.
    before a credit note's reversal, finds it and answers it)."""
    rows = []
    for p in planned:
        q = p.tax_quote
        assert q is not None
        rows.append({"reference": q.reference, "transaction_id": stable_id("taxtxn", tenant_id, q.reference),
                     "provider": q.provider, "quote_id": q.quote_id, "currency": q.currency, "tax_date": q.tax_date,
                     "tax_micros": q.tax_micros, "lines": [line.model_dump(mode="json") for line in q.lines],
                     "notes": q.notes})
    await conn.execute(
        """INSERT INTO paysaga.tax_transactions (tenant_id, reference, transaction_id, provider, quote_id, currency,
               tax_date, tax_micros, lines, notes, provider_line_ids)
           SELECT $1, r.reference, r.transaction_id, r.provider, r.quote_id, r.currency, r.tax_date, r.tax_micros,
                  r.lines, r.notes, '{}'::jsonb
             FROM jsonb_to_recordset($2::text::jsonb) AS r(reference text, transaction_id text, provider text,
                  quote_id text, currency text, tax_date date, tax_micros bigint, lines jsonb, notes jsonb)
           ON CONFLICT DO NOTHING""", tenant_id, dumps(rows))


# --- payments -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NewCharge:
    payment_id: str
    invoice_id: str
    subscription_id: str
    period_start: datetime
    customer_id: str
    payment_method_id: str
    amount_micros: int
    currency: str
    description: str


def payment_view(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """The payment as its outbox messages carry it (PaymentView's JSON, as `payments.record_event` writes it)."""
    data = dict(row)
    data["id"] = data.pop("payment_id", data.get("id"))
    data["tenant_id"] = str(data["tenant_id"])
    return PaymentView.model_validate(
        {k: data.get(k) for k in PaymentView.model_fields if k in data}).model_dump(mode="json")


async def create_charges(conn: asyncpg.Connection, tenant_id: str, charges: Sequence[NewCharge], *, provider: str,
                         run_id: str, batch_no: int, actor: str) -> int:
    """The payments of a batch's invoices, in state `created` (with their `payment.created` events and outbox
    messages), and the batch's record of them. A payment written before (a retried batch) is not written again."""
    if not charges:
        return 0
    inserted = await conn.fetch(
        """INSERT INTO paysaga.payments (payment_id, tenant_id, customer_id, payment_method_id, amount_micros,
               currency, description, metadata, provider, workflow_id, event_seq, invoice_id)
           SELECT r.payment_id, $1, r.customer_id, r.payment_method_id, r.amount_micros, r.currency, r.description,
                  r.metadata, $2, r.workflow_id, 1, r.invoice_id
             FROM jsonb_to_recordset($3::text::jsonb) AS r(payment_id text, customer_id text, payment_method_id text,
                  amount_micros bigint, currency text, description text, metadata jsonb, workflow_id text,
                  invoice_id text)
           ON CONFLICT DO NOTHING RETURNING *""",
        tenant_id, provider, dumps([{
            "payment_id": c.payment_id, "customer_id": c.customer_id, "payment_method_id": c.payment_method_id,
            "amount_micros": c.amount_micros, "currency": c.currency, "description": c.description,
            "metadata": {"invoice_id": c.invoice_id, "subscription_id": c.subscription_id},
            "workflow_id": payment_workflow_id(tenant_id, c.payment_id), "invoice_id": c.invoice_id}
            for c in charges]))
    fresh = {r["payment_id"]: r for r in inserted}
    created = [c for c in charges if c.payment_id in fresh]
    events = [LifecycleEvent(c.payment_id, 1, "payment.created", "create", None, PaymentStatus.CREATED,
                             {"amount_micros": c.amount_micros, "currency": c.currency}) for c in created]
    await write_payment_events(conn, tenant_id, [(fresh[e.payment_id], e) for e in events], actor,
                               lambda pid: payment_workflow_id(tenant_id, pid))
    await conn.execute(
        """INSERT INTO paysaga.renewal_charges (tenant_id, payment_id, invoice_id, subscription_id, period_start,
               run_id, batch_no)
           SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::int[])
           ON CONFLICT DO NOTHING""",
        tenant_id, [c.payment_id for c in created], [c.invoice_id for c in created],
        [c.subscription_id for c in created], [c.period_start for c in created], [run_id] * len(created),
        [batch_no] * len(created))
    return len(created)


async def write_payment_events(conn: asyncpg.Connection, tenant_id: str,
                               events: Sequence[tuple[asyncpg.Record | dict[str, Any], LifecycleEvent]], actor: str,
                               correlation: Any) -> None:
    """`payments.record_event` for many: each lifecycle event and its outbox message with the payment as it is."""
    if not events:
        return
    await conn.execute(
        """INSERT INTO paysaga.payment_events (transition_id, tenant_id, payment_id, seq, type, old_status,
               new_status, metadata, actor, correlation_id)
           SELECT r.transition_id, $1, r.payment_id, r.seq, r.type, r.old_status, r.new_status, r.metadata, $2,
                  r.correlation_id
             FROM jsonb_to_recordset($3::text::jsonb) AS r(transition_id text, payment_id text, seq int, type text,
                  old_status text, new_status text, metadata jsonb, correlation_id text)""",
        tenant_id, actor, dumps([{
            "transition_id": e.transition_id, "payment_id": e.payment_id, "seq": e.seq, "type": e.type,
            "old_status": e.old_status.value if e.old_status else None, "new_status": e.new_status.value,
            "metadata": {**e.metadata, "transition": e.transition}, "correlation_id": correlation(e.payment_id)}
            for _, e in events]))
    await write_outbox(conn, tenant_id, [message(e.transition_id, e.type, {
        "transition": e.transition, "old_status": e.old_status.value if e.old_status else None,
        "new_status": e.new_status.value, "correlation_id": correlation(e.payment_id), "payment": payment_view(row)})
        for row, e in events])


# --- outcomes of charges --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Move:
    """One payment's transition (with its data) as the provider's answer or news drives it, and the transitions
    that follow it at once (`then`: a charge confirmed and succeeded in the same answer is processing, then
    completed)."""

    payment_id: str
    command: TransitionCommand
    then: tuple[TransitionCommand, ...] = ()


async def transition_payments(conn: asyncpg.Connection, tenant_id: str, moves: Sequence[Move], actor: str
                              ) -> list[asyncpg.Record]:
    """Many payments' transitions, each as `payments.apply_transition` makes it (the domain's aggregate, an
    UPDATE guarded by the old status, the lifecycle event and its outbox message). A move of several transitions
    is one UPDATE to the last state, with an event (and message) for each step. A payment that moved on
    meanwhile (a webhook settled it first) is left as it is. Answers the rows that moved, as they are now."""
    if not moves:
        return []
    wanted = {m.payment_id: m for m in moves}
    rows = await conn.fetch("SELECT * FROM paysaga.payments WHERE payment_id = ANY($1::text[]) "
                            "ORDER BY payment_id FOR NO KEY UPDATE", list(wanted))
    changes: list[dict[str, Any]] = []
    steps: dict[str, list[tuple[LifecycleEvent, dict[str, Any]]]] = {}
    for row in rows:
        payment = aggregate_from_row(row)
        old = payment.status
        move = wanted[row["payment_id"]]
        taken: list[tuple[LifecycleEvent, dict[str, Any]]] = []
        for command in (move.command, *move.then):
            try:  # a step the payment is past (it moved on meanwhile) is skipped, as its own call would be
                event = payment.apply(command)
            except InvalidTransition:
                continue
            taken.append((event, {"status": payment.status.value, "event_seq": payment.event_seq}))
        if not taken:
            continue
        steps[payment.payment_id] = taken
        changes.append({"payment_id": payment.payment_id, "old_status": old.value, "status": payment.status.value,
                        "event_seq": payment.event_seq, "provider_intent_id": payment.provider_intent_id,
                        "failure_code": payment.failure_code, "failure_message": payment.failure_message})
    if not changes:
        return []
    moved = await conn.fetch(
        """UPDATE paysaga.payments p SET status = r.status, event_seq = r.event_seq,
               provider_intent_id = r.provider_intent_id, failure_code = r.failure_code,
               failure_message = r.failure_message
             FROM jsonb_to_recordset($1::text::jsonb) AS r(payment_id text, old_status text, status text,
                  event_seq int, provider_intent_id text, failure_code text, failure_message text)
            WHERE p.payment_id = r.payment_id AND p.status = r.old_status
           RETURNING p.*""", dumps(changes))
    # Each step's message carries the payment as it stood after that step.
    await write_payment_events(conn, tenant_id, [({**dict(r), **state}, event) for r in moved
                                                 for event, state in steps[r["payment_id"]]], actor,
                               lambda pid: payment_workflow_id(tenant_id, pid))
    completed = [r for r in moved if r["status"] == PaymentStatus.COMPLETED.value]
    await post_entries(conn, tenant_id, [payment_completed(
        r["payment_id"], r["customer_id"], r["provider"], Money(r["amount_micros"], r["currency"]),
        r["invoice_id"]) for r in completed])
    return list(moved)


async def settle_invoices(conn: asyncpg.Connection, tenant_id: str, payments: Sequence[asyncpg.Record],
                          correlation_id: str, now: datetime) -> list[invoice_store.Loaded]:
    """`invoices.settle_by_payment` for many completed payments: each invoice paid (guarded by its status), with
    its event, outbox message and (an uncollectible one) the recovery entry; then their subscriptions hear it,
    as one at a time they would. A payment that no longer matches its invoice leaves it (logged)."""
    by_invoice = {r["invoice_id"]: r for r in payments if r["invoice_id"]}
    if not by_invoice:
        return []
    rows = await conn.fetch("SELECT * FROM paysaga.invoices WHERE invoice_id = ANY($1::text[]) "
                            "ORDER BY invoice_id FOR NO KEY UPDATE", list(by_invoice))
    loaded = await invoice_store.load_many(conn, list(rows))
    paid: list[tuple[invoice_store.Loaded, Invoice, str]] = []
    for before in loaded:
        payment = by_invoice[before.invoice.invoice_id]
        try:
            after = before.invoice.pay(Money(payment["amount_micros"], payment["currency"]))
        except InvoiceRefused as refused:
            log.warning("invoice.payment_unapplied", invoice_id=before.invoice.invoice_id,
                        payment_id=payment["payment_id"], status=before.invoice.status.value, reason=refused.code)
            continue
        paid.append((before, after, payment["payment_id"]))
    if not paid:
        return []
    updated = {r["invoice_id"]: r for r in await conn.fetch(
        """UPDATE paysaga.invoices i SET status = 'paid', amount_paid_micros = r.amount_paid, paid_at = $2,
               event_seq = i.event_seq + 1, updated_at = $2
             FROM jsonb_to_recordset($1::text::jsonb) AS r(invoice_id text, old_status text, amount_paid bigint)
            WHERE i.invoice_id = r.invoice_id AND i.status = r.old_status RETURNING i.*""",
        dumps([{"invoice_id": a.invoice_id, "old_status": b.invoice.status.value,
                "amount_paid": a.amount_paid.micros if a.amount_paid else 0} for b, a, _ in paid]), now)}
    done = [(b, a, pid) for b, a, pid in paid if a.invoice_id in updated]
    events, messages = [], []
    for before, after, payment_id in done:
        row = updated[after.invoice_id]
        event_id = invoice_store.transition_id(after.invoice_id, row["event_seq"])
        events.append({"transition_id": event_id, "invoice_id": after.invoice_id, "seq": row["event_seq"],
                       "type": "invoice.paid", "old_status": before.invoice.status.value, "new_status": "paid",
                       "metadata": {"payment_id": payment_id}})
        messages.append(message(event_id, "invoice.paid", {
            "old_status": before.invoice.status.value, "new_status": "paid", "correlation_id": correlation_id,
            "invoice": invoice_json(after, row)}))
    await conn.execute(
        """INSERT INTO paysaga.invoice_events (transition_id, tenant_id, invoice_id, seq, type, old_status,
               new_status, metadata, actor, correlation_id)
           SELECT r.transition_id, $1, r.invoice_id, r.seq, r.type, r.old_status, r.new_status, r.metadata,
                  'workflow', $2
             FROM jsonb_to_recordset($3::text::jsonb) AS r(transition_id text, invoice_id text, seq int, type text,
                  old_status text, new_status text, metadata jsonb)""", tenant_id, correlation_id, dumps(events))
    await write_outbox(conn, tenant_id, messages)
    await post_entries(conn, tenant_id, [postings.recovered(b.invoice) for b, _, _ in done])
    settled = [invoice_store.Loaded(a, updated[a.invoice_id]) for _, a, _ in done]
    await subscriptions_paid(conn, tenant_id, settled, correlation_id)
    return settled


async def subscriptions_paid(conn: asyncpg.Connection, tenant_id: str, invoices: Sequence[invoice_store.Loaded],
                             correlation_id: str) -> None:
    """`subscriptions.on_invoice_paid` for many invoices (`paid_step` decides each)."""
    by_sub = {i.row["subscription_id"]: i for i in invoices if i.row["subscription_id"]}
    if not by_sub:
        return
    rows = await conn.fetch("SELECT * FROM paysaga.subscriptions WHERE subscription_id = ANY($1::text[]) "
                            "ORDER BY subscription_id FOR NO KEY UPDATE", list(by_sub))
    in_dunning = {r["invoice_id"] for r in await subscriptions.dunning_rows(
        conn, [i.invoice.invoice_id for i in invoices])}
    changes = []
    for loaded in await subscriptions.load_rows(conn, rows):
        invoice = by_sub[loaded.subscription.subscription_id]
        current = (invoice.row["metadata"] or {}).get("subscription_period_start") == iso(
            loaded.subscription.current_period.start)
        step = subscriptions.paid_step(loaded, invoice.invoice.invoice_id, bills_current_period=current,
                                       in_dunning=invoice.invoice.invoice_id in in_dunning)
        if step is not None:
            changes.append(SubscriptionChange(loaded, step.subscription, [step.event]))
    await save_subscriptions(conn, tenant_id, changes, "workflow", correlation_id)


@dataclass(frozen=True)
class Failure:
    payment: asyncpg.Record  # failed (or canceled)
    decline_code: str | None


async def charges_failed(conn: asyncpg.Connection, tenant_id: str, failures: Sequence[Failure],
                         correlation_id: str, now: datetime) -> list[asyncpg.Record]:
    """What an invoice's first charge failing does, for many: the invoice hands over (`invoice.payment_failed`,
    as its workflow's hand-over writes it), the subscription records it (`failed_step`) and, when it owes
    dunning, the dunning record is written. Answers the dunning rows written (their starts are owed)."""
    by_invoice = {f.payment["invoice_id"]: f for f in failures if f.payment["invoice_id"]}
    if not by_invoice:
        return []
    updated = await conn.fetch(
        """UPDATE paysaga.invoices SET event_seq = event_seq + 1, updated_at = $2
            WHERE invoice_id = ANY($1::text[]) AND status IN ('open', 'uncollectible') RETURNING *""",
        list(by_invoice), now)
    handed = await invoice_store.load_many(conn, list(updated))
    events, messages = [], []
    for inv in handed:
        f = by_invoice[inv.invoice.invoice_id]
        event_id = invoice_store.transition_id(inv.invoice.invoice_id, inv.row["event_seq"])
        meta = {"payment_id": f.payment["payment_id"], "failure_code": f.decline_code}
        events.append({"transition_id": event_id, "invoice_id": inv.invoice.invoice_id, "seq": inv.row["event_seq"],
                       "type": "invoice.payment_failed", "old_status": inv.invoice.status.value,
                       "new_status": inv.invoice.status.value, "metadata": meta})
        messages.append(message(event_id, "invoice.payment_failed", {
            "old_status": inv.invoice.status.value, "new_status": inv.invoice.status.value,
            "correlation_id": correlation_id, "invoice": invoice_json(inv.invoice, inv.row)}))
    if events:
        await conn.execute(
            """INSERT INTO paysaga.invoice_events (transition_id, tenant_id, invoice_id, seq, type, old_status,
                   new_status, metadata, actor, correlation_id)
               SELECT r.transition_id, $1, r.invoice_id, r.seq, r.type, r.old_status, r.new_status, r.metadata,
                      'workflow', $2
                 FROM jsonb_to_recordset($3::text::jsonb) AS r(transition_id text, invoice_id text, seq int,
                      type text, old_status text, new_status text, metadata jsonb)""",
            tenant_id, correlation_id, dumps(events))
        await write_outbox(conn, tenant_id, messages)
    subs = {i.row["subscription_id"]: i for i in handed if i.row["subscription_id"]}
    rows = await conn.fetch("SELECT * FROM paysaga.subscriptions WHERE subscription_id = ANY($1::text[]) "
                            "ORDER BY subscription_id FOR NO KEY UPDATE", list(subs))
    changes, owed = [], []
    for loaded in await subscriptions.load_rows(conn, rows):
        inv = subs[loaded.subscription.subscription_id]
        f = by_invoice[inv.invoice.invoice_id]
        step, owes = subscriptions.failed_step(loaded, inv.invoice.invoice_id, f.payment["payment_id"],
                                               f.decline_code)
        if step is None:
            continue
        changes.append(SubscriptionChange(loaded, step.subscription, [step.event]))
        if owes:
            owed.append({"invoice_id": inv.invoice.invoice_id, "subscription_id": loaded.subscription.subscription_id,
                         "customer_id": loaded.subscription.customer_id, "payment_id": f.payment["payment_id"],
                         "period_start": loaded.subscription.current_period.start, "decline_code": f.decline_code,
                         "failed_at": step.event.at})
    written = await conn.fetch(
        """INSERT INTO paysaga.subscription_dunning (tenant_id, invoice_id, subscription_id, customer_id, payment_id,
               period_start, decline_code, failed_at)
           SELECT $1, r.invoice_id, r.subscription_id, r.customer_id, r.payment_id, r.period_start, r.decline_code,
                  r.failed_at
             FROM jsonb_to_recordset($2::text::jsonb) AS r(invoice_id text, subscription_id text, customer_id text,
                  payment_id text, period_start timestamptz, decline_code text, failed_at timestamptz)
           ON CONFLICT DO NOTHING RETURNING *""", tenant_id, dumps(owed)) if owed else []
    fresh = {r["invoice_id"] for r in written}
    changes = [c for c in changes if not c.events[0].type.value == "renewal_failed"
               or c.events[0].data.get("invoice_id") in fresh]
    await save_subscriptions(conn, tenant_id, changes, "workflow", correlation_id)
    return list(written)


async def set_charge_state(conn: asyncpg.Connection, payment_ids: Sequence[str], state: str) -> None:
    if payment_ids:
        await conn.execute("""UPDATE paysaga.renewal_charges SET state = $2, updated_at = now()
                               WHERE payment_id = ANY($1::text[]) AND state <> 'settled'""", list(payment_ids), state)


async def charge_state(conn: asyncpg.Connection, payment_id: str) -> str | None:
    """The state of the renewal charge that made the payment, or None when no renewal made it."""
    state: str | None = await conn.fetchval(
        "SELECT state FROM paysaga.renewal_charges WHERE payment_id = $1", payment_id)
    return state


async def owns_payment(conn: asyncpg.Connection, payment_id: str) -> bool:
    """Whether the renewal run (not a workflow of the payment's own) holds the payment: its news is applied
    where it arrives."""
    return await charge_state(conn, payment_id) in ("created", "submitted")
