"""Refunds: created `pending` and settled by the network after `sandbox_settle_delay_ms` (`refund.updated`); a
`pm_card_refundFail` payment's refunds fail instead (`refund.failed`) and give their amount back to the intent.
An overdue refund is also settled when it is next read."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import asyncpg

from activities.providers.base import IntentStatus, RefundResult
from activities.providers.sandbox import balance
from activities.providers.sandbox.catalogue import TEST_CARDS
from activities.providers.sandbox.events import Outgoing, publish, refund_event
from paysaga.settings import Settings

_FAILING_METHODS = [token for token, card in TEST_CARDS.items() if card.refund_fails]
_OUTCOME_EVENT = {"succeeded": "refund.updated", "failed": "refund.failed"}  # Stripe's names

# Pending refunds past the settle delay succeed, or fail on a refund-failing card and give their amount back
# (summed per intent: one batch may hold several refunds of one payment). `{lock}` as in intents._SETTLE.
_SETTLE = """
    WITH due AS (
        SELECT r.refund_id, i.payment_method = ANY($4::text[]) AS fails
        FROM sandbox.refunds r JOIN sandbox.payment_intents i USING (intent_id)
        WHERE r.status = 'pending' AND r.updated_at <= now() - make_interval(secs => $1)
          AND ($2::text IS NULL OR r.refund_id = $2)
        ORDER BY r.updated_at LIMIT $3 FOR UPDATE OF r {lock}),
    settled AS (
        UPDATE sandbox.refunds r
        SET status = CASE WHEN due.fails THEN 'failed' ELSE 'succeeded' END,
            failure_reason = CASE WHEN due.fails THEN 'expired_or_canceled_card' END, updated_at = now()
        FROM due WHERE r.refund_id = due.refund_id
        RETURNING r.*),
    given_back AS (
        UPDATE sandbox.payment_intents i SET amount_refunded = i.amount_refunded - back.amount
        FROM (SELECT intent_id, sum(amount_minor) AS amount FROM settled WHERE status = 'failed'
              GROUP BY intent_id) back
        WHERE i.intent_id = back.intent_id)
    SELECT settled.*, i.currency, i.settlement_currency FROM settled JOIN sandbox.payment_intents i USING (intent_id)"""


class Refunds:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings

    async def create(
        self, intent_id: str, amount_minor: int | None, idempotency_key: str, metadata: dict[str, str] | None
    ) -> RefundResult:
        async with self._pool.acquire() as conn, conn.transaction():
            intent = await conn.fetchrow(
                "SELECT * FROM sandbox.payment_intents WHERE intent_id = $1 FOR UPDATE", intent_id
            )
            if intent is None:
                raise ValueError(f"No such payment_intent: '{intent_id}'")
            done = await conn.fetchrow(
                "SELECT * FROM sandbox.refunds WHERE tenant_id = $1 AND idempotency_key = $2",
                intent["tenant_id"], idempotency_key,
            )
            if done is not None:  # an idempotent replay
                return refund_result(done)
            amount = _refundable(intent, amount_minor)
            row = await conn.fetchrow(
                """INSERT INTO sandbox.refunds (refund_id, tenant_id, intent_id, idempotency_key, amount_minor,
                       status, metadata) VALUES ($1, $2, $3, $4, $5, 'pending', $6) RETURNING *""",
                f"re_sbx_{secrets.token_hex(12)}", intent["tenant_id"], intent_id, idempotency_key, amount,
                metadata or {},
            )
            await conn.execute(
                "UPDATE sandbox.payment_intents SET amount_refunded = amount_refunded + $2 WHERE intent_id = $1",
                intent_id, amount,
            )
            await publish(conn, self._settings,
                          [Outgoing(row["tenant_id"], refund_event("refund.created", row, intent["currency"]))])
        return refund_result(row)

    async def retrieve(self, refund_id: str) -> RefundResult:
        row = await self._pool.fetchrow("SELECT * FROM sandbox.refunds WHERE refund_id = $1", refund_id)
        if row is None:
            raise ValueError(f"No such refund: '{refund_id}'")
        if row["status"] == "pending":
            async with self._pool.acquire() as conn, conn.transaction():
                settled = await _settle(conn, self._settings, _SETTLE.format(lock=""), refund_id, 1)
            row = settled[0] if settled else row
        return refund_result(row)


async def settle_due_refunds(conn: asyncpg.Connection, settings: Settings, limit: int) -> int:
    """The network's part: settle up to `limit` overdue pending refunds in `conn`'s transaction."""
    return len(await _settle(conn, settings, _SETTLE.format(lock="SKIP LOCKED"), None, limit))


async def _settle(
    conn: asyncpg.Connection, settings: Settings, sql: str, refund_id: str | None, limit: int
) -> list[asyncpg.Record]:
    rows = await conn.fetch(sql, settings.sandbox_settle_delay_ms / 1000, refund_id, limit, _FAILING_METHODS)
    for row in rows:
        if row["status"] == "succeeded":  # the money left the balance, converted at today's rate if need be
            converted = balance.convert_minor(settings, row["amount_minor"], row["currency"],
                                              row["settlement_currency"], datetime.now(UTC).date())
            await balance.record(
                conn, settings, tenant_id=row["tenant_id"], type="refund", category="refund",
                source_id=row["refund_id"], currency=converted.currency, amount_minor=-converted.minor,
                exchange_rate=converted.exchange_rate, facing_minor=-row["amount_minor"],
                facing_currency=row["currency"], charge_id=balance.charge_id_of(row["intent_id"]),
                intent_id=row["intent_id"], description=f"refund of {row['intent_id']}")
    await publish(conn, settings, [
        Outgoing(row["tenant_id"], refund_event(_OUTCOME_EVENT[row["status"]], row, row["currency"]))
        for row in rows
    ])
    return rows


def _refundable(intent: asyncpg.Record, amount_minor: int | None) -> int:
    """The amount to refund (everything left when None), or ValueError as Stripe's 400 would say."""
    if intent["status"] != IntentStatus.SUCCEEDED:
        raise ValueError(f"PaymentIntent {intent['intent_id']} has not succeeded; nothing to refund")
    remaining = intent["amount_minor"] - intent["amount_refunded"]
    amount = remaining if amount_minor is None else amount_minor
    if not 0 < amount <= remaining:
        raise ValueError(f"Refund amount {amount} exceeds the refundable {remaining}")
    return amount


def refund_result(row: asyncpg.Record) -> RefundResult:
    return RefundResult(id=row["refund_id"], status=row["status"], amount_minor=row["amount_minor"],
                        failure_reason=row["failure_reason"])
