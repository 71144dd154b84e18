"""Persistence of the Payment aggregate: row, lifecycle event and outbox message, always in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from activities.fx.base import FxRates
from activities.providers.base import BalanceTransaction
from activities.stores import invoices, ledger, outbox, provider_settlements
from contracts.payments import PaymentInput, PaymentView, payment_workflow_id
from domain.connect import SplitCharge, split_charge_succeeded
from domain.ledger import payment_completed
from domain.money import Money
from domain.payment import LifecycleEvent, Payment, PaymentStatus, TransitionCommand

PAYMENT_COLUMNS = """payment_id AS id, tenant_id::text, customer_id, payment_method_id, amount_micros,
    currency, status, description, metadata, provider, provider_intent_id, attempt, failure_code,
    failure_message, next_action, risk_score, risk_reasons, fraud_score, fraud_action, fraud_reasons, workflow_id,
    event_seq, invoice_id, destination_account_id, application_fee_micros, created_at, updated_at"""


class InvoiceAlreadyCollecting(Exception):
    """Another payment of the same invoice is live or completed: an invoice is never charged twice."""


def view_from_row(row: asyncpg.Record) -> PaymentView:
    return PaymentView.model_validate(dict(row))


def aggregate_from_row(row: asyncpg.Record) -> Payment:
    return Payment(
        payment_id=row["payment_id"],
        tenant_id=str(row["tenant_id"]),
        customer_id=row["customer_id"],
        payment_method_id=row["payment_method_id"],
        amount=Money(row["amount_micros"], row["currency"]),
        status=PaymentStatus(row["status"]),
        event_seq=row["event_seq"],
        provider_intent_id=row["provider_intent_id"],
        failure_code=row["failure_code"],
        failure_message=row["failure_message"],
    )


async def fetch_view(conn: asyncpg.Connection, payment_id: str) -> PaymentView | None:
    row = await conn.fetchrow(f"SELECT {PAYMENT_COLUMNS} FROM paysaga.payments WHERE payment_id = $1", payment_id)
    return view_from_row(row) if row else None


async def list_page(conn: asyncpg.Connection, limit: int, starting_after: str | None) -> tuple[list[PaymentView], bool]:
    """Newest first, keyset-paginated after the payment `starting_after`; (page, has_more). LookupError if the
    cursor names no payment."""
    cursor = None
    if starting_after:
        cursor = await conn.fetchrow(
            "SELECT created_at, payment_id FROM paysaga.payments WHERE payment_id = $1", starting_after)
        if cursor is None:
            raise LookupError(starting_after)
    rows = await conn.fetch(
        f"""SELECT {PAYMENT_COLUMNS} FROM paysaga.payments
            WHERE $1::timestamptz IS NULL OR (created_at, payment_id) < ($1, $2)
            ORDER BY created_at DESC, payment_id DESC LIMIT $3""",
        cursor["created_at"] if cursor else None, cursor["payment_id"] if cursor else None, limit + 1,
    )
    return [view_from_row(r) for r in rows[:limit]], len(rows) > limit


async def routing(conn: asyncpg.Connection, payment_id: str) -> asyncpg.Record | None:
    """What a webhook needs to route news: status, workflow id, provider, currency."""
    return await conn.fetchrow(
        "SELECT status, workflow_id, provider, currency FROM paysaga.payments WHERE payment_id = $1", payment_id)


async def owners_of_intent(pool: asyncpg.Pool, intent_id: str) -> list[asyncpg.Record]:
    """(tenant_id, payment_id) of the payment with this provider intent, before any tenant is known (at most
    two rows: more than one means the intent id is ambiguous)."""
    return await pool.fetch("SELECT tenant_id::text, payment_id FROM paysaga.payment_by_intent($1)", intent_id)


async def payment_of_intent(conn: asyncpg.Connection, intent_id: str) -> str | None:
    """The tenant's payment holding this provider intent."""
    return await conn.fetchval("SELECT payment_id FROM paysaga.payments WHERE provider_intent_id = $1", intent_id)


async def status_counts(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Payments per status, all tenants (a fleet-wide number per status, nothing more)."""
    return await pool.fetch("SELECT status, n FROM paysaga.payment_status_counts()")


async def stale(pool: asyncpg.Pool, older_than_seconds: float, limit: int) -> list[asyncpg.Record]:
    """Payments unchanged in pending/processing for that long, all tenants (the reconciler's work list)."""
    return await pool.fetch("SELECT * FROM paysaga.stale_payments($1, $2)", older_than_seconds, limit)


async def customer_history(
    conn: asyncpg.Connection, customer_id: str, payment_id: str, currency: str, window_seconds: float
) -> tuple[int, int | None]:
    """(payments in the velocity window other than this one and not canceled, median completed amount)."""
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM paysaga.payments
                    WHERE customer_id = $1 AND payment_id <> $2 AND status <> 'canceled'
                      AND created_at > now() - make_interval(secs => $4)) AS recent,
                  (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY amount_micros) FROM paysaga.payments
                    WHERE customer_id = $1 AND currency = $3 AND status = 'completed') AS typical""",
        customer_id, payment_id, currency, window_seconds,
    )
    return row["recent"], row["typical"]


async def record_risk(conn: asyncpg.Connection, payment_id: str, score: int, reasons: list[str]) -> None:
    await conn.execute(
        "UPDATE paysaga.payments SET risk_score = $2, risk_reasons = $3 WHERE payment_id = $1 AND status = 'created'",
        payment_id, score, reasons)


async def insert_created(
    conn: asyncpg.Connection, inp: PaymentInput, provider: str, actor: str
) -> PaymentView:
    """Record a new payment in state `created`; a second call for the same payment changes nothing."""
    payment, event = Payment.create(
        payment_id=inp.payment_id, tenant_id=inp.tenant_id, customer_id=inp.customer_id,
        payment_method_id=inp.payment_method_id, amount=Money(inp.amount_micros, inp.currency),
    )
    wf_id = payment_workflow_id(inp.tenant_id, inp.payment_id)
    inserted = await conn.fetchrow(
        f"""INSERT INTO paysaga.payments (payment_id, tenant_id, customer_id, payment_method_id, amount_micros,
               currency, idempotency_key, description, metadata, provider, workflow_id, event_seq, invoice_id,
               destination_account_id, application_fee_micros)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
           ON CONFLICT DO NOTHING RETURNING {PAYMENT_COLUMNS}""",
        payment.payment_id, inp.tenant_id, inp.customer_id, inp.payment_method_id, inp.amount_micros,
        payment.amount.currency, inp.idempotency_key, inp.description, inp.metadata, provider, wf_id,
        payment.event_seq, inp.invoice_id, inp.destination_account_id,
        (inp.application_fee_micros or 0) if inp.destination_account_id else None,
    )
    if inserted is None:
        view = await fetch_view(conn, payment.payment_id)
        if view is None:  # not this payment: the one-live-payment-per-invoice index refused it
            raise InvoiceAlreadyCollecting(f"invoice {inp.invoice_id} is already being paid, or was paid")
        return view
    view = view_from_row(inserted)
    await record_event(conn, view, event, actor, wf_id)
    return view


async def record_event(
    conn: asyncpg.Connection, view: PaymentView, event: LifecycleEvent, actor: str, correlation_id: str
) -> None:
    """The lifecycle event and its outbox message; the caller's transaction makes them atomic with the row."""
    await conn.execute(
        """INSERT INTO paysaga.payment_events (transition_id, tenant_id, payment_id, seq, type, old_status,
               new_status, metadata, actor, correlation_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        event.transition_id, view.tenant_id, event.payment_id, event.seq, event.type,
        event.old_status.value if event.old_status else None, event.new_status.value,
        {**event.metadata, "transition": event.transition}, actor, correlation_id,
    )
    payload = view.model_dump(mode="json")
    await outbox.enqueue(conn, view.tenant_id, event.transition_id, event.type, {
        "transition": event.transition, "old_status": event.old_status.value if event.old_status else None,
        "new_status": event.new_status.value, "correlation_id": correlation_id, "payment": payload,
    })


async def apply_transition(
    conn: asyncpg.Connection,
    payment_id: str,
    command: TransitionCommand,
    columns: dict[str, Any],
    actor: str,
    correlation_id: str,
    expected_seq: int | None = None,
    settled: Settled | None = None,
) -> tuple[PaymentView, bool]:
    """Run one transition under a row lock. Returns (view, changed).

    Idempotent: a retried call whose first try committed writes nothing again (see `expected_seq`). The UPDATE
    is also guarded by the old status. A completion posts the payment's entry (a split charge's split, see
    domain/connect.py) and, when the provider said what it settled (`settled`), its fee and conversion.
    """
    row = await conn.fetchrow("SELECT * FROM paysaga.payments WHERE payment_id = $1 FOR NO KEY UPDATE", payment_id)
    if row is None:
        raise LookupError(f"payment {payment_id} not found")
    payment = aggregate_from_row(row)
    # The transition this call stands for is the one at seq expected_seq + 1 (the caller saw expected_seq).
    # If that slot is taken by the same transition, a previous try committed it: answer the current row.
    # (A workflow task that ran several transitions and then failed re-runs all of them.)
    seq = payment.event_seq if expected_seq is None else min(expected_seq + 1, payment.event_seq)
    done = await conn.fetchval(
        "SELECT metadata->>'transition' FROM paysaga.payment_events WHERE payment_id = $1 AND seq = $2",
        payment_id, seq,
    )
    if done == command.transition and (expected_seq is None or payment.event_seq > expected_seq):
        view = await fetch_view(conn, payment_id)
        assert view is not None
        return view, False
    old_status = payment.status
    event = payment.apply(command)
    sets = {
        "status": payment.status.value, "event_seq": payment.event_seq,
        "provider_intent_id": payment.provider_intent_id, "failure_code": payment.failure_code,
        "failure_message": payment.failure_message, **columns,
    }
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(sets, start=3))
    updated = await conn.fetchrow(
        f"""UPDATE paysaga.payments SET {assignments} WHERE payment_id = $1 AND status = $2
            RETURNING {PAYMENT_COLUMNS}""",
        payment_id, old_status.value, *sets.values(),
    )
    if updated is None:  # unreachable under the row lock; kept as the status guard
        raise RuntimeError(f"payment {payment_id} changed concurrently")
    view = view_from_row(updated)
    await record_event(conn, view, event, actor, correlation_id)
    if view.status == PaymentStatus.COMPLETED:  # the money arrived: the ledger says so in the same transaction
        amount = Money(view.amount_micros, view.currency)
        split = split_of(view)
        if split is not None:
            await ledger.post(conn, view.tenant_id, split_charge_succeeded(split, view.provider))
        else:
            await ledger.post(conn, view.tenant_id, payment_completed(
                view.id, view.customer_id, view.provider, amount, view.invoice_id))
        if settled is not None:
            for bt in settled.balance_transactions:
                await provider_settlements.book(conn, view.tenant_id, view.provider, source_type="payment",
                                                source_id=view.id, event="payment.completed", bt=bt,
                                                presentment=amount, rates=settled.rates)
        if view.invoice_id is not None:  # and the invoice it collects is paid, in the same transaction too
            await invoices.settle_by_payment(conn, view.invoice_id, view.id, amount, correlation_id)
    elif view.status in (PaymentStatus.FAILED, PaymentStatus.CANCELED) and view.invoice_id is not None:
        await invoices.first_charge_failed(conn, view.invoice_id, view.id, view.failure_code, correlation_id)
    return view, True


@dataclass(frozen=True)
class Settled:
    """What the provider said it settled for a payment (its charge's balance transactions) and the rates to quote
    its conversion with."""

    balance_transactions: list[BalanceTransaction]
    rates: FxRates | None = None


def split_of(view: PaymentView) -> SplitCharge | None:
    """The payment as a split charge, when it has a destination."""
    if view.destination_account_id is None:
        return None
    return SplitCharge(view.id, view.destination_account_id, Money(view.amount_micros, view.currency),
                       Money(view.application_fee_micros or 0, view.currency))


async def lock_split(conn: asyncpg.Connection, payment_id: str) -> SplitCharge | None:
    """The split charge of a payment, its row locked: reversals of one charge are computed one after the other, so
    each steps from what the previous one took back."""
    row = await conn.fetchrow(f"SELECT {PAYMENT_COLUMNS} FROM paysaga.payments WHERE payment_id = $1 FOR NO KEY UPDATE",
                              payment_id)
    return split_of(view_from_row(row)) if row is not None else None


async def provider_of(conn: asyncpg.Connection, payment_id: str) -> str | None:
    return await conn.fetchval("SELECT provider FROM paysaga.payments WHERE payment_id = $1", payment_id)


async def settlement_context(conn: asyncpg.Connection, payment_id: str) -> asyncpg.Record | None:
    """What the completion of a payment needs to ask the provider what it settled: its intent and status."""
    return await conn.fetchrow(
        "SELECT provider_intent_id, status, currency FROM paysaga.payments WHERE payment_id = $1", payment_id)
