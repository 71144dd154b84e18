"""Persistence of the Subscription aggregate: its row, its lifecycle events and outbox messages, always in the
caller's one transaction; what its invoices' payments do to it (paid, first charge failed), in theirs; and the
dunning engineer's entry point, `apply_dunning_outcome`.

Loading gives back the domain aggregate (domain/subscription.py), so every rule runs on it; saving writes what
the domain's `Step` says, guarded by the event sequence the aggregate was loaded at."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
import structlog

from activities.stores import catalogue, outbox
from contracts.subscription_views import subscription_json
from domain.billing_cycle import BillingCycle, Period, iso
from domain.billing_line import BillingLine, Item
from domain.catalogue import Price
from domain.dunning import DunningEnd
from domain.subscription import (
    PauseBehavior,
    PauseCollection,
    Step,
    Subscription,
    SubscriptionEvent,
    SubscriptionRefused,
    SubscriptionStatus,
    TrialEndBehavior,
    incomplete_expires_at,
    trial_will_end_at,
)

log = structlog.get_logger("paysaga.billing")
S = SubscriptionStatus
DunningOutcome = Literal["retry_failed", "recovered", "exhausted_unpaid", "exhausted_canceled"]


@dataclass(frozen=True)
class Loaded:
    subscription: Subscription
    row: asyncpg.Record

    @property
    def tenant_id(self) -> str:
        return str(self.row["tenant_id"])


def aggregate(row: asyncpg.Record | dict[str, Any], prices: dict[str, Price]) -> Subscription:
    """The domain aggregate a row holds (its prices resolved from `prices`, archived ones included)."""
    pause = None
    if row["pause_behavior"] is not None:
        pause = PauseCollection(PauseBehavior(row["pause_behavior"]), row["pause_resumes_at"])
    scheduled = None
    if row["scheduled_price_id"] is not None:
        scheduled = Item(prices[row["scheduled_price_id"]], row["scheduled_quantity"])
    return Subscription(
        subscription_id=row["subscription_id"], tenant_id=str(row["tenant_id"]), customer_id=row["customer_id"],
        item=Item(prices[row["price_id"]], row["quantity"]), status=SubscriptionStatus(row["status"]),
        cycle=BillingCycle(row["cycle_anchor"], row["cycle_interval"], row["cycle_interval_count"],
                           row["cycle_day_of_month"]),
        current_period=Period(row["period_start"], row["period_end"], row["period_basis_start"]),
        created_at=row["started_at"], trial_start=row["trial_start"], trial_end=row["trial_end"],
        default_payment_method=row["default_payment_method_id"],
        trial_end_behavior=TrialEndBehavior(row["trial_end_behavior"]),
        prorate_first_period=row["prorate_first_period"], cancel_at_period_end=row["cancel_at_period_end"],
        canceled_at=row["canceled_at"], ended_at=row["ended_at"], collection_pause=pause,
        scheduled_change=scheduled, event_seq=row["event_seq"])


def columns_of(s: Subscription) -> dict[str, Any]:
    """The aggregate's state as the row's columns."""
    pause, scheduled = s.collection_pause, s.scheduled_change
    assert s.current_period.basis_start is not None
    return {
        "customer_id": s.customer_id, "price_id": s.item.price.price_id, "quantity": s.item.quantity,
        "status": s.status.value, "default_payment_method_id": s.default_payment_method,
        "cycle_anchor": s.cycle.anchor, "cycle_interval": s.cycle.interval.value,
        "cycle_interval_count": s.cycle.interval_count, "cycle_day_of_month": s.cycle.day_of_month,
        "period_start": s.current_period.start, "period_end": s.current_period.end,
        "period_basis_start": s.current_period.basis_start, "started_at": s.created_at,
        "trial_start": s.trial_start, "trial_end": s.trial_end, "trial_end_behavior": s.trial_end_behavior.value,
        "prorate_first_period": s.prorate_first_period, "cancel_at_period_end": s.cancel_at_period_end,
        "canceled_at": s.canceled_at, "ended_at": s.ended_at,
        "pause_behavior": pause.behavior.value if pause else None,
        "pause_resumes_at": pause.resumes_at if pause else None,
        "scheduled_price_id": scheduled.price.price_id if scheduled else None,
        "scheduled_quantity": scheduled.quantity if scheduled else None, "event_seq": s.event_seq,
    }


def incomplete_until(s: Subscription, collection_method: str, days_until_due: int | None) -> datetime:
    """When an unpaid first invoice expires the subscription: 23 hours, or for an invoice sent to be paid by
    transfer, the end of its due date (a customer given 30 days is not expired after one)."""
    expires = incomplete_expires_at(s.created_at)
    if collection_method == "send_invoice":
        due_end = datetime.combine(s.created_at.date() + timedelta(days=(days_until_due or 0) + 1),
                                   datetime.min.time(), tzinfo=UTC)
        expires = max(expires, due_end)
    return expires


def next_action_at(s: Subscription, *, trial_notified: bool, collection_method: str,
                   days_until_due: int | None) -> datetime | None:
    """When the renewal run must next look at the subscription (None: nothing is due until someone acts)."""
    if s.status is S.INCOMPLETE:
        return incomplete_until(s, collection_method, days_until_due)
    if s.status is S.TRIALING:
        assert s.trial_start is not None and s.trial_end is not None
        notice = trial_will_end_at(s.trial_start, s.trial_end)
        return notice if not trial_notified and notice < s.trial_end else s.trial_end
    if s.status in (S.ACTIVE, S.PAST_DUE, S.UNPAID):
        due = s.current_period.end
        pause = s.collection_pause
        if pause is not None and pause.resumes_at is not None:
            due = min(due, pause.resumes_at)
        return due
    return None


def now() -> datetime:
    """The transaction's instant for events nobody passed a time for: whole seconds, as the domain wants."""
    return datetime.now(UTC).replace(microsecond=0)


# --- reading ----------------------------------------------------------------------------------------------------
async def load(conn: asyncpg.Connection, subscription_id: str, *, lock: bool = False) -> Loaded | None:
    row = await conn.fetchrow(
        f"SELECT * FROM paysaga.subscriptions WHERE subscription_id = $1{' FOR NO KEY UPDATE' if lock else ''}",
        subscription_id)
    if row is None:
        return None
    return (await load_rows(conn, [row]))[0]


async def load_rows(conn: asyncpg.Connection, rows: Sequence[asyncpg.Record]) -> list[Loaded]:
    """Aggregates of rows already read: one query for their prices, whatever their number."""
    ids = {r["price_id"] for r in rows} | {r["scheduled_price_id"] for r in rows if r["scheduled_price_id"]}
    prices = await catalogue.prices(conn, ids)
    return [Loaded(aggregate(r, prices), r) for r in rows]


async def list_page(conn: asyncpg.Connection, limit: int, starting_after: str | None, *,
                    customer_id: str | None, status: str | None, price_id: str | None
                    ) -> tuple[list[Loaded], bool]:
    """Newest first, keyset-paginated; LookupError if the cursor names no subscription."""
    cursor = None
    if starting_after:
        cursor = await conn.fetchrow(
            "SELECT created_at, subscription_id FROM paysaga.subscriptions WHERE subscription_id = $1",
            starting_after)
        if cursor is None:
            raise LookupError(starting_after)
    rows = await conn.fetch(
        """SELECT * FROM paysaga.subscriptions
            WHERE ($1::timestamptz IS NULL OR (created_at, subscription_id) < ($1, $2))
              AND ($3::text IS NULL OR customer_id = $3) AND ($4::text IS NULL OR status = $4)
              AND ($5::text IS NULL OR price_id = $5)
            ORDER BY created_at DESC, subscription_id DESC LIMIT $6""",
        cursor["created_at"] if cursor else None, cursor["subscription_id"] if cursor else None, customer_id,
        status, price_id, limit + 1)
    return await load_rows(conn, rows[:limit]), len(rows) > limit


async def events(conn: asyncpg.Connection, subscription_id: str) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        "SELECT * FROM paysaga.subscription_events WHERE subscription_id = $1 ORDER BY seq", subscription_id))


# --- writing ----------------------------------------------------------------------------------------------------
async def insert(conn: asyncpg.Connection, step: Step, *, collection_method: str, days_until_due: int | None,
                 metadata: dict[str, Any], idempotency_key: str | None, actor: str, correlation_id: str,
                 latest_invoice_id: str | None = None) -> Loaded | None:
    """A new subscription and its `created` event; None when it exists already (a retried create)."""
    s = step.subscription
    cols = {**columns_of(s), "subscription_id": s.subscription_id, "tenant_id": s.tenant_id,
            "collection_method": collection_method, "days_until_due": days_until_due, "metadata": metadata,
            "idempotency_key": idempotency_key, "latest_invoice_id": latest_invoice_id,
            "next_action_at": next_action_at(s, trial_notified=False, collection_method=collection_method,
                                             days_until_due=days_until_due)}
    names = ", ".join(cols)
    marks = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    row = await conn.fetchrow(
        f"INSERT INTO paysaga.subscriptions ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING RETURNING *",
        *cols.values())
    if row is None:
        return None
    loaded = Loaded(s, row)
    await record_event(conn, loaded, step.event, actor, correlation_id)
    return loaded


async def save(conn: asyncpg.Connection, before: Loaded, step: Step, actor: str, correlation_id: str, *,
               columns: dict[str, Any] | None = None) -> Loaded:
    """One step: the row as the new aggregate (and `columns`), guarded by the sequence it was loaded at, with its
    lifecycle event and outbox message."""
    s = step.subscription
    extra = dict(columns or {})
    trial_notified = extra.get("trial_notified", before.row["trial_notified"])
    sets = {**columns_of(s), **extra, "next_action_at": next_action_at(
        s, trial_notified=trial_notified, collection_method=before.row["collection_method"],
        days_until_due=before.row["days_until_due"])}
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(sets, start=3))
    row = await conn.fetchrow(
        f"""UPDATE paysaga.subscriptions SET {assignments}, updated_at = now()
            WHERE subscription_id = $1 AND event_seq = $2 RETURNING *""",
        s.subscription_id, before.subscription.event_seq, *sets.values())
    if row is None:  # unreachable under the row lock; kept as the guard
        raise RuntimeError(f"subscription {s.subscription_id} changed concurrently")
    after = Loaded(s, row)
    await record_event(conn, after, step.event, actor, correlation_id)
    return after


async def set_columns(conn: asyncpg.Connection, loaded: Loaded, columns: dict[str, Any]) -> Loaded:
    """Bookkeeping that is no state change (the latest invoice, the trial notice sent): no event."""
    trial_notified = columns.get("trial_notified", loaded.row["trial_notified"])
    s = loaded.subscription
    sets = {**columns, "next_action_at": next_action_at(
        s, trial_notified=trial_notified, collection_method=loaded.row["collection_method"],
        days_until_due=loaded.row["days_until_due"])}
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(sets, start=2))
    row = await conn.fetchrow(
        f"UPDATE paysaga.subscriptions SET {assignments}, updated_at = now() WHERE subscription_id = $1 RETURNING *",
        s.subscription_id, *sets.values())
    return Loaded(s, row)


def event_payload(loaded: Loaded, event: SubscriptionEvent, correlation_id: str) -> dict[str, Any]:
    return {"old_status": event.old_status.value if event.old_status else None, "new_status": event.new_status.value,
            "occurred_at": iso(event.at), "data": dict(event.data), "correlation_id": correlation_id,
            "subscription": subscription_json(loaded.subscription, loaded.row)}


async def record_event(conn: asyncpg.Connection, loaded: Loaded, event: SubscriptionEvent, actor: str,
                       correlation_id: str) -> None:
    """The lifecycle event and its outbox message `billing.subscription.<type>.v1`, in the caller's transaction."""
    await conn.execute(
        """INSERT INTO paysaga.subscription_events (event_id, tenant_id, subscription_id, seq, type, old_status,
               new_status, occurred_at, data, actor, correlation_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
        event.event_id, loaded.tenant_id, event.subscription_id, event.seq, event.type.value,
        event.old_status.value if event.old_status else None, event.new_status.value, event.at, dict(event.data),
        actor, correlation_id)
    await outbox.enqueue(conn, loaded.tenant_id, event.event_id, f"subscription.{event.type.value}",
                         event_payload(loaded, event, correlation_id))


# --- proration charges kept for the next invoice ----------------------------------------------------------------
def pending_line_id(subscription_id: str, seq: int, n: int) -> str:
    return f"pl_{subscription_id}_{seq}_{n}"


async def add_pending_lines(conn: asyncpg.Connection, tenant_id: str, subscription_id: str, seq: int,
                            lines: Sequence[BillingLine]) -> None:
    charges = [line for line in lines if line.amount.is_positive()]
    if not charges:
        return
    await conn.execute(
        """INSERT INTO paysaga.subscription_pending_lines (tenant_id, line_id, subscription_id, kind, description,
               amount_micros, currency, price_id, quantity, period_start, period_end)
           SELECT $1, l.id, $2, l.kind, l.description, l.amount, l.currency, l.price_id, l.quantity, l.ps, l.pe
             FROM unnest($3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::int[],
                         $10::timestamptz[], $11::timestamptz[])
                  AS l(id, kind, description, amount, currency, price_id, quantity, ps, pe)
           ON CONFLICT DO NOTHING""",
        tenant_id, subscription_id, [pending_line_id(subscription_id, seq, n) for n in range(len(charges))],
        [c.kind.value for c in charges], [c.description for c in charges], [c.amount.micros for c in charges],
        [c.amount.currency for c in charges], [c.price_id for c in charges], [c.quantity for c in charges],
        [c.period_start for c in charges], [c.period_end for c in charges])


async def open_pending_lines(conn: asyncpg.Connection, subscription_ids: Iterable[str]
                             ) -> dict[str, list[asyncpg.Record]]:
    out: dict[str, list[asyncpg.Record]] = {}
    for row in await conn.fetch(
            """SELECT * FROM paysaga.subscription_pending_lines
                WHERE subscription_id = ANY($1::text[]) AND invoice_id IS NULL ORDER BY subscription_id, created_at,
                      line_id""", list(subscription_ids)):
        out.setdefault(row["subscription_id"], []).append(row)
    return out


async def mark_pending_billed(conn: asyncpg.Connection, line_ids: Sequence[str], invoice_ids: Sequence[str]) -> None:
    if line_ids:
        await conn.execute(
            """UPDATE paysaga.subscription_pending_lines p SET invoice_id = u.invoice_id
                 FROM unnest($1::text[], $2::text[]) AS u(line_id, invoice_id)
                WHERE p.line_id = u.line_id AND p.invoice_id IS NULL""", list(line_ids), list(invoice_ids))


# --- credits owed (unused time) ---------------------------------------------------------------------------------
async def owe_credit(conn: asyncpg.Connection, tenant_id: str, credit_note_id: str, subscription_id: str,
                     invoice_id: str, line_id: str, amount_micros: int, description: str) -> None:
    await conn.execute(
        """INSERT INTO paysaga.subscription_credits (tenant_id, credit_note_id, subscription_id, invoice_id, line_id,
               amount_micros, description) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
        tenant_id, credit_note_id, subscription_id, invoice_id, line_id, amount_micros, description)


async def credit_row(conn: asyncpg.Connection, credit_note_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM paysaga.subscription_credits WHERE credit_note_id = $1{' FOR UPDATE' if lock else ''}",
        credit_note_id)


async def owed_credits(conn: asyncpg.Connection, subscription_id: str) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        "SELECT * FROM paysaga.subscription_credits WHERE subscription_id = $1 AND state = 'owed' ORDER BY created_at",
        subscription_id))


async def settle_credit(conn: asyncpg.Connection, credit_note_id: str, state: Literal["issued", "refused"],
                        refusal: str | None = None) -> None:
    await conn.execute(
        """UPDATE paysaga.subscription_credits SET state = $2, refusal = $3, issued_at = now()
            WHERE credit_note_id = $1 AND state = 'owed'""", credit_note_id, state, refusal)


async def credited_on_lines(conn: asyncpg.Connection, line_keys: Sequence[tuple[str, str]]
                            ) -> dict[tuple[str, str], int]:
    """(invoice, line) -> what credits still owed will take off it (not yet a credit note)."""
    rows = await conn.fetch(
        """SELECT invoice_id, line_id, sum(amount_micros) AS owed FROM paysaga.subscription_credits
            WHERE state = 'owed' AND (invoice_id, line_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
            GROUP BY invoice_id, line_id""", [k[0] for k in line_keys], [k[1] for k in line_keys])
    return {(r["invoice_id"], r["line_id"]): int(r["owed"]) for r in rows}


# --- dunning ----------------------------------------------------------------------------------------------------
async def owe_dunning(conn: asyncpg.Connection, tenant_id: str, *, invoice_id: str, subscription_id: str,
                      customer_id: str, payment_id: str | None, period_start: datetime | None,
                      decline_code: str | None, failed_at: datetime) -> bool:
    """The invoice is handed to dunning: its DunningWorkflow's start is owed (made by whoever recorded the failure
    after its commit, else by the renewal run). False when it was handed over already."""
    return bool(await conn.fetchval(
        """INSERT INTO paysaga.subscription_dunning (tenant_id, invoice_id, subscription_id, customer_id, payment_id,
               period_start, decline_code, failed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT DO NOTHING RETURNING true""",
        tenant_id, invoice_id, subscription_id, customer_id, payment_id, period_start, decline_code, failed_at))


async def dunning_row(conn: asyncpg.Connection, invoice_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM paysaga.subscription_dunning WHERE invoice_id = $1", invoice_id)


async def dunning_rows(conn: asyncpg.Connection, invoice_ids: Sequence[str]) -> list[asyncpg.Record]:
    return list(await conn.fetch("SELECT * FROM paysaga.subscription_dunning WHERE invoice_id = ANY($1::text[])",
                                 list(invoice_ids)))


async def mark_dunning_started(conn: asyncpg.Connection, invoice_ids: Sequence[str]) -> None:
    if invoice_ids:
        await conn.execute("""UPDATE paysaga.subscription_dunning SET started_at = now()
                               WHERE invoice_id = ANY($1::text[]) AND started_at IS NULL""", list(invoice_ids))


async def open_dunning_of_customer(conn: asyncpg.Connection, customer_id: str,
                                   subscription_id: str | None = None) -> list[asyncpg.Record]:
    """The customer's subscription invoices in dunning that are still unpaid and that a new payment method will
    be charged for: those of `subscription_id` (its own method changed), else (the customer's default changed)
    those of the subscriptions without a method of their own, which are charged to the customer's default."""
    return list(await conn.fetch(
        """SELECT d.* FROM paysaga.subscription_dunning d JOIN paysaga.invoices i USING (tenant_id, invoice_id)
             JOIN paysaga.subscriptions s ON s.tenant_id = d.tenant_id AND s.subscription_id = d.subscription_id
            WHERE d.customer_id = $1 AND i.status IN ('open', 'uncollectible')
              AND CASE WHEN $2::text IS NULL THEN s.default_payment_method_id IS NULL
                       ELSE d.subscription_id = $2 END
            ORDER BY d.created_at""",
        customer_id, subscription_id))


async def apply_dunning_outcome(conn: asyncpg.Connection, subscription_id: str, outcome: DunningOutcome,
                                at: datetime, *, attempt: int | None = None, invoice_id: str | None = None) -> None:
    """What dunning decided, applied to the subscription in the caller's transaction with its lifecycle event and
    outbox message: `retry_failed` (attempt >= 2), `recovered` (the invoice was paid), or the policy's final
    action (`exhausted_unpaid`, `exhausted_canceled`). Idempotent: an outcome already applied (the same retry's
    failure, a subscription already recovered or exhausted) changes nothing; one the subscription no longer
    accepts (it was canceled meanwhile) is logged and left."""
    loaded = await load(conn, subscription_id, lock=True)
    if loaded is None:
        raise LookupError(f"subscription {subscription_id} not found")
    s = loaded.subscription
    at = at.astimezone(UTC).replace(microsecond=0)
    actor, correlation_id = "dunning", f"dunning/{loaded.tenant_id}/{invoice_id or ''}"
    try:
        if outcome == "retry_failed":
            if attempt is None:
                raise ValueError("retry_failed needs the attempt that failed")
            if await conn.fetchval(
                    """SELECT true FROM paysaga.subscription_events WHERE subscription_id = $1 AND type = 'retry_failed'
                          AND (data->>'attempt')::int = $2 AND data->>'invoice_id' IS NOT DISTINCT FROM $3""",
                    subscription_id, attempt, invoice_id):
                return
            step = s.retry_failed(at, attempt)
            step = _with_data(step, {"invoice_id": invoice_id})
        elif outcome == "recovered":
            if s.status is S.ACTIVE:
                return
            step = s.recover(at, invoice_id)
        elif outcome in ("exhausted_unpaid", "exhausted_canceled"):
            end = DunningEnd.UNPAID if outcome == "exhausted_unpaid" else DunningEnd.CANCELED
            if (end is DunningEnd.UNPAID and s.status is S.UNPAID) or (
                    end is DunningEnd.CANCELED and s.status is S.CANCELED):
                return
            step = s.exhaust_dunning(at, end)
            step = _with_data(step, {"invoice_id": invoice_id})
        else:
            raise ValueError(f"unknown dunning outcome {outcome!r}")
    except SubscriptionRefused as refused:
        log.warning("subscription.dunning_outcome_refused", subscription_id=subscription_id, outcome=outcome,
                    status=s.status.value, reason=refused.code)
        return
    await save(conn, loaded, step, actor, correlation_id)


def _with_data(step: Step, data: dict[str, Any]) -> Step:
    """The step with more data on its event (who it concerns): the event is the same event otherwise."""
    extra = {k: v for k, v in data.items() if v is not None}
    if not extra:
        return step
    return replace(step, event=replace(step.event, data={**step.event.data, **extra}))


# --- what an invoice's payment does to its subscription ---------------------------------------------------------
def paid_step(loaded: Loaded, invoice_id: str, *, bills_current_period: bool, in_dunning: bool) -> Step | None:
    """What a subscription's invoice being paid does to it: the first invoice activates it, the current period's
    invoice records the renewal paid, the invoice dunning holds (or the latest) recovers a past-due or unpaid
    subscription. Anything else (an older invoice, a proration) leaves it alone (None)."""
    s = loaded.subscription
    at = max(now(), s.current_period.start if s.status is not S.TRIALING else s.created_at, s.created_at)
    latest = loaded.row["latest_invoice_id"] == invoice_id
    try:
        if s.status is S.INCOMPLETE:
            return s.first_invoice_paid(at, invoice_id)
        if s.status in (S.PAST_DUE, S.UNPAID):
            return s.recover(at, invoice_id) if latest or in_dunning else None
        if s.status is S.ACTIVE and latest and bills_current_period:
            return s.renewal_paid(at, s.current_period.start, invoice_id)
    except SubscriptionRefused as refused:
        log.warning("subscription.invoice_paid_not_applied", subscription_id=s.subscription_id,
                    invoice_id=invoice_id, status=s.status.value, reason=refused.code)
    return None


async def on_invoice_paid(conn: asyncpg.Connection, invoice_id: str, subscription_id: str, correlation_id: str,
                          actor: str = "workflow") -> Loaded | None:
    """An invoice of the subscription was paid (by card, out of band, by a credit note, or as it was finalized):
    the subscription moves in the same transaction (`paid_step`)."""
    loaded = await load(conn, subscription_id, lock=True)
    if loaded is None:
        return None
    step = paid_step(loaded, invoice_id, bills_current_period=await _bills_current_period(
        conn, invoice_id, loaded.subscription), in_dunning=await dunning_row(conn, invoice_id) is not None)
    return loaded if step is None else await save(conn, loaded, step, actor, correlation_id)


async def _bills_current_period(conn: asyncpg.Connection, invoice_id: str, s: Subscription) -> bool:
    start = await conn.fetchval("SELECT metadata->>'subscription_period_start' FROM paysaga.invoices "
                                "WHERE invoice_id = $1", invoice_id)
    return start == iso(s.current_period.start)


def failed_step(loaded: Loaded, invoice_id: str, payment_id: str | None, decline_code: str | None
                ) -> tuple[Step | None, bool]:
    """What the failure of a subscription invoice's first charge does: an incomplete subscription records it (it
    may still be paid until it expires); the latest invoice of a live one records the renewal failed (past due)
    and is handed to dunning (the second value: a DunningWorkflow is owed)."""
    s = loaded.subscription
    at = max(now(), s.current_period.start if s.status is not S.INCOMPLETE else s.created_at, s.created_at)
    try:
        if s.status is S.INCOMPLETE:
            return s.first_invoice_failed(at, decline_code), False
        if s.status not in (S.ACTIVE, S.PAST_DUE) or loaded.row["latest_invoice_id"] != invoice_id:
            return None, False
        return _with_data(s.renewal_failed(at, s.current_period.start, decline_code),
                          {"invoice_id": invoice_id, "payment_id": payment_id}), True
    except SubscriptionRefused as refused:
        log.warning("subscription.charge_failure_not_applied", subscription_id=s.subscription_id,
                    invoice_id=invoice_id, status=s.status.value, reason=refused.code)
        return None, False


async def on_first_charge_failed(conn: asyncpg.Connection, invoice_id: str, subscription_id: str, payment_id: str,
                                 decline_code: str | None, correlation_id: str) -> Loaded | None:
    """The first charge of a subscription's invoice failed, in the payment's transaction (`failed_step`); the
    dunning it owes is recorded with it."""
    loaded = await load(conn, subscription_id, lock=True)
    if loaded is None:
        return None
    step, owes = failed_step(loaded, invoice_id, payment_id, decline_code)
    if step is None:
        return loaded
    if owes and not await owe_dunning(
            conn, loaded.tenant_id, invoice_id=invoice_id, subscription_id=subscription_id,
            customer_id=loaded.subscription.customer_id, payment_id=payment_id,
            period_start=loaded.subscription.current_period.start, decline_code=decline_code, failed_at=step.event.at):
        return loaded  # handed to dunning already: a repeated failure report
    return await save(conn, loaded, step, "workflow", correlation_id)


async def billing_metrics(pool: asyncpg.Pool) -> list[tuple[str, str, int]]:
    """(metric, label, value) of every tenant together: renewals by outcome, dunning recoveries by stage, revenue
    recovered by currency."""
    return [(r["metric"], r["label"], int(r["value"])) for r in await pool.fetch(
        "SELECT metric, label, value FROM paysaga.billing_metrics()")]
