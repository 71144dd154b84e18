"""Refunds: created `pending`, settled after `sandbox_settle_delay_ms` (`refund.updated`); a `pm_card_refundFail`
payment's refunds fail instead (`refund.failed`) and give their amount back to the intent."""

from __future__ import annotations

import secrets
import time

import asyncpg

from activities.providers.base import IntentStatus, RefundResult
from activities.providers.sandbox.catalogue import card_of
from activities.providers.sandbox.events import refund_event
from activities.providers.sandbox.network import Deliveries
from paysaga.settings import Settings


class Refunds:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, deliveries: Deliveries) -> None:
        self._pool = pool
        self._settings = settings
        self._deliveries = deliveries

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
        self._deliveries.send([refund_event("refund.created", row, intent)])
        self._deliveries.later(lambda: self._settle(row["refund_id"]))
        return refund_result(row)

    async def retrieve(self, refund_id: str) -> RefundResult:
        row = await self._pool.fetchrow("SELECT * FROM sandbox.refunds WHERE refund_id = $1", refund_id)
        if row is None:
            raise ValueError(f"No such refund: '{refund_id}'")
        due = row["updated_at"].timestamp() + self._settings.sandbox_settle_delay_ms / 1000
        if row["status"] == "pending" and time.time() >= due:
            row = await self._settle(refund_id) or row
        return refund_result(row)

    async def _settle(self, refund_id: str) -> asyncpg.Record | None:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT r.*, i.payment_method FROM sandbox.refunds r JOIN sandbox.payment_intents i USING (intent_id)"
                " WHERE r.refund_id = $1 AND r.status = 'pending' FOR UPDATE OF r", refund_id)
            if row is None:
                return None
            fails = card_of(row["payment_method"]).refund_fails
            row = await conn.fetchrow(
                """UPDATE sandbox.refunds SET status = $2, failure_reason = $3, updated_at = now()
                   WHERE refund_id = $1 RETURNING *""",
                refund_id, "failed" if fails else "succeeded", "expired_or_canceled_card" if fails else None)
            intent = await conn.fetchrow(
                """UPDATE sandbox.payment_intents SET amount_refunded = amount_refunded - $2
                   WHERE intent_id = $1 AND $3 RETURNING *""", row["intent_id"], row["amount_minor"], fails)
            intent = intent or await conn.fetchrow(
                "SELECT * FROM sandbox.payment_intents WHERE intent_id = $1", row["intent_id"])
        self._deliveries.send([refund_event("refund.failed" if fails else "refund.updated", row, intent)])
        return row


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
