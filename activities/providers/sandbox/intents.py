"""PaymentIntents: create + confirm (idempotent by key), find, retrieve, cancel, 3-D Secure, settlement.

Card payments settle asynchronously here (confirm answers `processing`, the outcome arrives by webhook after
`sandbox_settle_delay_ms`), which is what bank debits and delayed captures do on Stripe: the saga must not
depend on a synchronous answer. An overdue intent is settled when it is next read, so a lost delivery only
delays the outcome until the saga polls.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import asyncpg

from activities.providers.base import CardDeclined, CreateIntent, Intent, IntentStatus
from activities.providers.sandbox.catalogue import TestCard, card_of, describe_test_card
from activities.providers.sandbox.disputes import Disputes
from activities.providers.sandbox.events import intent_event, json_object
from activities.providers.sandbox.network import Deliveries
from paysaga.settings import Settings

_CANCELABLE = {IntentStatus.REQUIRES_PAYMENT_METHOD, IntentStatus.REQUIRES_ACTION,
               IntentStatus.REQUIRES_CONFIRMATION, IntentStatus.PROCESSING}


class Intents:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, deliveries: Deliveries, disputes: Disputes) -> None:
        self._pool = pool
        self._settings = settings
        self._deliveries = deliveries
        self._disputes = disputes

    async def create_and_confirm(self, req: CreateIntent) -> Intent:
        card = describe_test_card(req.payment_method)
        existing = await self._pool.fetchrow(
            "SELECT * FROM sandbox.payment_intents WHERE tenant_id = $1 AND idempotency_key = $2",
            req.tenant_id, req.idempotency_key,
        )
        if existing is not None:  # an idempotent replay answers what the first request answered
            return self._replay(existing)
        if req.request_three_d_secure and card.outcome == "succeed":  # asked to challenge: Stripe's `any`
            card = TestCard(card.brand, card.last4, "authenticate", refund_fails=card.refund_fails)
        status, decline = {
            "succeed": (IntentStatus.PROCESSING, None),
            "decline": (IntentStatus.REQUIRES_PAYMENT_METHOD, card.decline_code),
            "authenticate": (IntentStatus.REQUIRES_ACTION, None),
        }[card.outcome]
        message = f"Your card was declined ({decline})." if decline else None
        row = await self._pool.fetchrow(
            """INSERT INTO sandbox.payment_intents (intent_id, tenant_id, idempotency_key, payment_id, attempt,
                   amount_minor, currency, payment_method, status, decline_code, failure_message, metadata)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
               ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING *""",
            f"pi_sbx_{secrets.token_hex(12)}", req.tenant_id, req.idempotency_key, req.payment_id, req.attempt,
            req.amount_minor, req.currency.upper(), req.payment_method, status.value, decline, message,
            req.metadata,
        )
        if row is None:  # lost a race with a concurrent identical request
            return await self.create_and_confirm(req)
        if self._settings.sandbox_response_latency_ms:  # the work is done; only the answer is slow
            await asyncio.sleep(self._settings.sandbox_response_latency_ms / 1000)
        intent = self.to_intent(row)
        if card.outcome == "succeed":
            self._send(["payment_intent.created", "payment_intent.processing"], intent)
            self._deliveries.later(lambda: self._settle(intent.id))
        elif card.outcome == "authenticate":
            self._send(["payment_intent.created", "payment_intent.requires_action"], intent)
        return self._replay(row)

    async def find(self, payment_id: str, attempt: int) -> Intent | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM sandbox.payment_intents WHERE payment_id = $1 AND attempt = $2", payment_id, attempt
        )
        return self.to_intent(await self._settle_if_due(row)) if row else None

    async def retrieve(self, intent_id: str) -> Intent:
        return self.to_intent(await self._settle_if_due(await self._get(intent_id)))

    async def cancel(self, intent_id: str) -> Intent:
        row = await self._transition(intent_id, _CANCELABLE, IntentStatus.CANCELED)
        if row is None:
            return await self.retrieve(intent_id)
        intent = self.to_intent(row)
        self._send(["payment_intent.canceled"], intent)
        return intent

    async def authenticate(self, intent_id: str, succeed: bool) -> Intent:
        """The customer's answer to a 3-D Secure challenge (sandbox only)."""
        if succeed:
            row = await self._transition(intent_id, {IntentStatus.REQUIRES_ACTION}, IntentStatus.PROCESSING)
            if row is not None:
                self._send(["payment_intent.processing"], self.to_intent(row))
                self._deliveries.later(lambda: self._settle(intent_id))
        else:
            row = await self._transition(
                intent_id, {IntentStatus.REQUIRES_ACTION}, IntentStatus.REQUIRES_PAYMENT_METHOD,
                decline_code="authentication_failed",
                failure_message="The customer failed or abandoned 3-D Secure authentication.",
            )
            if row is not None:
                self._send(["payment_intent.payment_failed"], self.to_intent(row))
        if row is None:
            raise ValueError(f"PaymentIntent {intent_id} is not awaiting authentication")
        return self.to_intent(row)

    def to_intent(self, row: asyncpg.Record) -> Intent:
        status = IntentStatus(row["status"])
        next_url = None
        if status == IntentStatus.REQUIRES_ACTION:
            base = self._settings.sandbox_webhook_target.rsplit("/v1/", 1)[0]
            next_url = f"{base}/v1/sandbox/payment_intents/{row['intent_id']}/authenticate"
        return Intent(
            id=row["intent_id"], status=status, amount_minor=row["amount_minor"], currency=row["currency"],
            metadata=json_object(row["metadata"]), decline_code=row["decline_code"],
            failure_message=row["failure_message"], next_action_url=next_url,
        )

    # --- mechanics ------------------------------------------------------------------------------------------
    def _replay(self, row: asyncpg.Record) -> Intent:
        intent = self.to_intent(row)
        if intent.status == IntentStatus.REQUIRES_PAYMENT_METHOD and intent.decline_code:
            raise CardDeclined(intent.id, intent.decline_code, intent.failure_message or "declined")
        return intent

    async def _get(self, intent_id: str) -> asyncpg.Record:
        row = await self._pool.fetchrow("SELECT * FROM sandbox.payment_intents WHERE intent_id = $1", intent_id)
        if row is None:
            raise ValueError(f"No such payment_intent: '{intent_id}'")
        return row

    async def _transition(
        self, intent_id: str, sources: set[IntentStatus], target: IntentStatus, **cols: Any
    ) -> asyncpg.Record | None:
        extra = "".join(f", {name} = ${i}" for i, name in enumerate(cols, start=4))
        return await self._pool.fetchrow(
            f"""UPDATE sandbox.payment_intents SET status = $2, updated_at = now(){extra}
                WHERE intent_id = $1 AND status = ANY($3::text[]) RETURNING *""",
            intent_id, target.value, [s.value for s in sources], *cols.values(),
        )

    async def _settle_if_due(self, row: asyncpg.Record) -> asyncpg.Record:
        if row["status"] != IntentStatus.PROCESSING:
            return row
        due = row["updated_at"].timestamp() + self._settings.sandbox_settle_delay_ms / 1000
        if time.time() < due:
            return row
        return await self._settle(row["intent_id"]) or await self._get(row["intent_id"])

    async def _settle(self, intent_id: str) -> asyncpg.Record | None:
        row = await self._transition(intent_id, {IntentStatus.PROCESSING}, IntentStatus.SUCCEEDED)
        if row is not None:
            self._send(["payment_intent.succeeded"], self.to_intent(row))
            if card_of(row["payment_method"]).creates_dispute:
                await self._disputes.open(row)
        return row

    def _send(self, event_types: list[str], intent: Intent) -> None:
        self._deliveries.send([intent_event(t, intent) for t in event_types])
