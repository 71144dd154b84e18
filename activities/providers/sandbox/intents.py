"""PaymentIntents: create + confirm (idempotent by key), find, retrieve, cancel, 3-D Secure, settlement.

A card that needs nothing more succeeds when it is confirmed, and one whose customer passes 3-D Secure when the
customer answers, as on Stripe: the charge (its balance transaction, and a dispute for the card that brings one) is
written with the intent. A card the catalogue settles later (`succeed_later`) is `processing` until the sandbox
network settles it after `sandbox_settle_delay_ms`, the outcome arriving by webhook: what bank debits do on
Stripe, and the path on which the saga must not depend on a synchronous answer. An overdue intent is also settled
when it is next read, so a network that is not running only delays the outcome until the saga polls.

Every state change writes its webhook events in the same transaction (events.publish).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime
from typing import Any, NamedTuple

import asyncpg

from activities.providers.base import CardDeclined, ChargeResult, CreateIntent, Intent, IntentStatus
from activities.providers.sandbox import balance
from activities.providers.sandbox.catalogue import CardOutcome, TestCard, card_of, describe_test_card
from activities.providers.sandbox.disputes import open_dispute
from activities.providers.sandbox.events import Outgoing, intent_event, json_object, publish
from paysaga.settings import Settings

_CANCELABLE = {IntentStatus.REQUIRES_PAYMENT_METHOD, IntentStatus.REQUIRES_ACTION,
               IntentStatus.REQUIRES_CONFIRMATION, IntentStatus.PROCESSING}

# What confirming a card of each outcome answers, and announces. A decline is only an answer: Stripe sends
# `payment_intent.payment_failed` for it, but the saga already has the decline from the call itself.
_CONFIRMED: dict[CardOutcome, tuple[IntentStatus, list[str]]] = {
    "succeed": (IntentStatus.SUCCEEDED, ["payment_intent.created", "payment_intent.succeeded"]),
    "succeed_later": (IntentStatus.PROCESSING, ["payment_intent.created", "payment_intent.processing"]),
    "decline": (IntentStatus.REQUIRES_PAYMENT_METHOD, []),
    "authenticate": (IntentStatus.REQUIRES_ACTION, ["payment_intent.created", "payment_intent.requires_action"]),
}

# The settle delay has passed: processing → succeeded. `{lock}` is SKIP LOCKED for the network's batches (another
# runner has those) and plain for a read, which waits and then sees the other transaction's outcome.
_SETTLE = """
    UPDATE sandbox.payment_intents SET status = 'succeeded', updated_at = now()
    WHERE intent_id IN (
        SELECT intent_id FROM sandbox.payment_intents
        WHERE status = 'processing' AND updated_at <= now() - make_interval(secs => $1)
          AND ($2::text IS NULL OR intent_id = $2)
        ORDER BY updated_at LIMIT $3 FOR UPDATE {lock})
    RETURNING *"""


class Intents:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings

    async def create_and_confirm(self, req: CreateIntent) -> Intent:
        card = card_for(req)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await _by_key(conn, req)
            if row is not None:  # an idempotent replay answers what the first request answered
                return self._replay(row)
            row = await self._insert(conn, req, card)
            if row is None:  # lost a race with a concurrent identical request, which has committed by now
                return self._replay(await _by_key(conn, req))
            announced = await _announced(conn, self._settings, row, _CONFIRMED[card.outcome][1])
            await publish(conn, self._settings, announced.events)
        if self._settings.sandbox_response_latency_ms:  # the work is done; only the answer is slow
            await asyncio.sleep(self._settings.sandbox_response_latency_ms / 1000)
        # As Stripe answers a confirm asked to expand `latest_charge.balance_transaction`.
        settled = [balance.to_model(announced.charge)] if announced.charge is not None else []
        return self._replay(row).model_copy(update={"balance_transactions": settled})

    async def create_and_confirm_many(self, reqs: list[CreateIntent], cards: list[TestCard]) -> list[ChargeResult]:
        """The batch form of `create_and_confirm`, set-based: one statement finds the requests already made (their
        first answers replay), one inserts the others, one writes their webhook events; one transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            existing = {(str(r["tenant_id"]), r["idempotency_key"]): r for r in await conn.fetch(
                """SELECT * FROM sandbox.payment_intents
                    WHERE (tenant_id, idempotency_key) IN (SELECT * FROM unnest($1::uuid[], $2::text[]))""",
                [r.tenant_id for r in reqs], [r.idempotency_key for r in reqs])}
            fresh = [(r, c) for r, c in zip(reqs, cards, strict=True)
                     if (r.tenant_id, r.idempotency_key) not in existing]
            rows = await conn.fetch(
                """INSERT INTO sandbox.payment_intents (intent_id, tenant_id, idempotency_key, payment_id, attempt,
                       amount_minor, currency, payment_method, status, decline_code, failure_message, metadata)
                   SELECT i, t, k, p, a, m, c, pm, st, dc, fm, md::jsonb
                     FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::int[], $6::bigint[],
                                 $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])
                          AS x(i, t, k, p, a, m, c, pm, st, dc, fm, md)
                   ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING *""",
                [f"pi_sbx_{secrets.token_hex(12)}" for _ in fresh], [r.tenant_id for r, _ in fresh],
                [r.idempotency_key for r, _ in fresh], [r.payment_id for r, _ in fresh],
                [r.attempt for r, _ in fresh], [r.amount_minor for r, _ in fresh],
                [r.currency.upper() for r, _ in fresh], [r.payment_method for r, _ in fresh],
                [_CONFIRMED[c.outcome][0].value for _, c in fresh],
                [c.decline_code if c.outcome == "decline" else None for _, c in fresh],
                [f"Your card was declined ({c.decline_code})." if c.outcome == "decline" else None
                 for _, c in fresh],
                [json.dumps(r.metadata) for r, _ in fresh])
            made = {(str(r["tenant_id"]), r["idempotency_key"]): r for r in rows}
            changed = [(row, _CONFIRMED[card.outcome][1]) for (_, card), row in (
                (f, made.get((f[0].tenant_id, f[0].idempotency_key))) for f in fresh) if row is not None]
            await publish(conn, self._settings, (await _announced_many(conn, self._settings, changed))[0])
            if len(made) < len(fresh):  # a concurrent identical request won the race; its row is committed
                for r, _ in fresh:
                    if (r.tenant_id, r.idempotency_key) not in made:
                        made[(r.tenant_id, r.idempotency_key)] = await _by_key(conn, r)
        if self._settings.sandbox_response_latency_ms:
            await asyncio.sleep(self._settings.sandbox_response_latency_ms / 1000)
        out = []
        for r in reqs:
            row = existing.get((r.tenant_id, r.idempotency_key)) or made[(r.tenant_id, r.idempotency_key)]
            intent = to_intent(row, self._settings)
            declined = intent.status == IntentStatus.REQUIRES_PAYMENT_METHOD and intent.decline_code
            out.append(ChargeResult(payment_id=r.payment_id, attempt=r.attempt, intent=None if declined else intent,
                                    decline_code=intent.decline_code if declined else None,
                                    failure_message=intent.failure_message if declined else None))
        return out

    async def retrieve_many(self, intent_ids: list[str]) -> list[Intent]:
        """The batch form of `retrieve`: overdue settlements are made first, in one statement."""
        async with self._pool.acquire() as conn, conn.transaction():
            await _settle(conn, self._settings, _SETTLE_MANY, intent_ids, len(intent_ids))
            rows = await conn.fetch("SELECT * FROM sandbox.payment_intents WHERE intent_id = ANY($1::text[])",
                                    intent_ids)
        return [to_intent(r, self._settings) for r in rows]

    async def find(self, payment_id: str, attempt: int) -> Intent | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM sandbox.payment_intents WHERE payment_id = $1 AND attempt = $2", payment_id, attempt
        )
        return to_intent(await self._settle_if_due(row), self._settings) if row else None

    async def retrieve(self, intent_id: str) -> Intent:
        return to_intent(await self._settle_if_due(await self._get(intent_id)), self._settings)

    async def cancel(self, intent_id: str) -> Intent:
        row = await self._change(intent_id, _CANCELABLE, IntentStatus.CANCELED, "payment_intent.canceled")
        return to_intent(row, self._settings) if row else await self.retrieve(intent_id)

    async def authenticate(self, intent_id: str, succeed: bool) -> Intent:
        """The customer's answer to a 3-D Secure challenge (sandbox only). Success makes the intent `succeeded`
        (`processing`, settled by the network, for a card that settles later); failure is a decline."""
        awaiting = {IntentStatus.REQUIRES_ACTION}
        if succeed:
            later = card_of((await self._get(intent_id))["payment_method"]).outcome == "succeed_later"
            target = IntentStatus.PROCESSING if later else IntentStatus.SUCCEEDED
            row = await self._change(intent_id, awaiting, target, f"payment_intent.{target.value}")
        else:
            row = await self._change(
                intent_id, awaiting, IntentStatus.REQUIRES_PAYMENT_METHOD, "payment_intent.payment_failed",
                decline_code="authentication_failed",
                failure_message="The customer failed or abandoned 3-D Secure authentication.",
            )
        if row is None:
            raise ValueError(f"PaymentIntent {intent_id} is not awaiting authentication")
        return to_intent(row, self._settings)

    # --- mechanics ------------------------------------------------------------------------------------------
    async def _insert(self, conn: asyncpg.Connection, req: CreateIntent, card: TestCard) -> asyncpg.Record | None:
        status = _CONFIRMED[card.outcome][0]
        decline = card.decline_code if card.outcome == "decline" else None
        message = f"Your card was declined ({decline})." if decline else None
        return await conn.fetchrow(
            """INSERT INTO sandbox.payment_intents (intent_id, tenant_id, idempotency_key, payment_id, attempt,
                   amount_minor, currency, payment_method, status, decline_code, failure_message, metadata,
                   settlement_currency, transfer_group, destination, application_fee_minor)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
               ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING *""",
            f"pi_sbx_{secrets.token_hex(12)}", req.tenant_id, req.idempotency_key, req.payment_id, req.attempt,
            req.amount_minor, req.currency.upper(), req.payment_method, status.value, decline, message,
            req.metadata, req.settlement_currency.upper() if req.settlement_currency else None,
            req.payment_id if req.destination else None, req.destination, req.application_fee_minor,
        )

    def _replay(self, row: asyncpg.Record) -> Intent:
        intent = to_intent(row, self._settings)
        if intent.status == IntentStatus.REQUIRES_PAYMENT_METHOD and intent.decline_code:
            raise CardDeclined(intent.id, intent.decline_code, intent.failure_message or "declined")
        return intent

    async def _get(self, intent_id: str) -> asyncpg.Record:
        row = await self._pool.fetchrow("SELECT * FROM sandbox.payment_intents WHERE intent_id = $1", intent_id)
        if row is None:
            raise ValueError(f"No such payment_intent: '{intent_id}'")
        return row

    async def _change(
        self, intent_id: str, sources: set[IntentStatus], target: IntentStatus, event_type: str, **cols: Any
    ) -> asyncpg.Record | None:
        """Move the intent from one of `sources` to `target` and announce it, in one transaction; None if it was
        in none of `sources`."""
        extra = "".join(f", {name} = ${i}" for i, name in enumerate(cols, start=4))
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""UPDATE sandbox.payment_intents SET status = $2, updated_at = now(){extra}
                    WHERE intent_id = $1 AND status = ANY($3::text[]) RETURNING *""",
                intent_id, target.value, [s.value for s in sources], *cols.values(),
            )
            if row is not None:
                await publish(conn, self._settings, (await _announced(conn, self._settings, row, [event_type])).events)
        return row

    async def _settle_if_due(self, row: asyncpg.Record) -> asyncpg.Record:
        if row["status"] != IntentStatus.PROCESSING:
            return row
        async with self._pool.acquire() as conn, conn.transaction():
            settled = await _settle(conn, self._settings, _SETTLE.format(lock=""), row["intent_id"], 1)
        return settled[0] if settled else await self._get(row["intent_id"])


# The same settlement, for the intents a batch asks about.
_SETTLE_MANY = """
    UPDATE sandbox.payment_intents SET status = 'succeeded', updated_at = now()
    WHERE intent_id IN (
        SELECT intent_id FROM sandbox.payment_intents
        WHERE status = 'processing' AND updated_at <= now() - make_interval(secs => $1)
          AND intent_id = ANY($2::text[])
        ORDER BY intent_id LIMIT $3 FOR UPDATE)
    RETURNING *"""


async def settle_due_intents(conn: asyncpg.Connection, settings: Settings, limit: int) -> int:
    """The network's part: settle up to `limit` overdue processing intents in `conn`'s transaction."""
    return len(await _settle(conn, settings, _SETTLE.format(lock="SKIP LOCKED"), None, limit))


async def _settle(
    conn: asyncpg.Connection, settings: Settings, sql: str, intent_id: str | None, limit: int
) -> list[asyncpg.Record]:
    rows = await conn.fetch(sql, settings.sandbox_settle_delay_ms / 1000, intent_id, limit)
    events, _ = await _announced_many(conn, settings, [(row, ["payment_intent.succeeded"]) for row in rows])
    await publish(conn, settings, events)
    return rows


class Announcement(NamedTuple):
    events: list[Outgoing]
    charge: asyncpg.Record | None  # the succeeded charge's balance transaction


async def _announced(conn: asyncpg.Connection, settings: Settings, row: asyncpg.Record,
                     event_types: list[str]) -> Announcement:
    """The events announcing an intent's change (for the caller to publish) and, when the intent succeeded, what
    its success brings, in the caller's transaction: the charge's balance transaction and, for the card that is
    disputed afterwards, the dispute (and its events)."""
    events, charges = await _announced_many(conn, settings, [(row, event_types)])
    return Announcement(events, charges[0] if charges else None)


async def _announced_many(conn: asyncpg.Connection, settings: Settings, changes: list[tuple[asyncpg.Record, list[str]]]
                          ) -> tuple[list[Outgoing], list[asyncpg.Record]]:
    """`_announced` for many intents: their events in order, and the balance transactions of those that succeeded
    (written in one statement)."""
    events: list[Outgoing] = []
    succeeded = []
    for row, event_types in changes:
        intent = to_intent(row, settings)
        events += [_announce(t, row, intent) for t in event_types]
        if intent.status == IntentStatus.SUCCEEDED:
            succeeded.append(row)
    charges = await balance.record_many(conn, settings, [_charge_movement(settings, row) for row in succeeded])
    for row in succeeded:
        if card_of(row["payment_method"]).creates_dispute:
            events += await open_dispute(conn, row, settings)
    return events, charges


def _charge_movement(settings: Settings, intent: asyncpg.Record) -> balance.Movement:
    """The succeeded charge's balance transaction: its amount in the platform's settlement currency, less fees."""
    converted = balance.convert_minor(settings, intent["amount_minor"], intent["currency"],
                                      intent["settlement_currency"], datetime.now(UTC).date())
    charge_id = balance.charge_id_of(intent["intent_id"])
    return balance.Movement(
        tenant_id=intent["tenant_id"], type="charge", category="charge", source_id=charge_id,
        currency=converted.currency, amount_minor=converted.minor,
        fee_minor=balance.charge_fee(settings, converted.minor), exchange_rate=converted.exchange_rate,
        facing_minor=intent["amount_minor"], facing_currency=intent["currency"], charge_id=charge_id,
        intent_id=intent["intent_id"], description=f"payment {intent['payment_id']}")


def to_intent(row: asyncpg.Record, settings: Settings) -> Intent:
    status = IntentStatus(row["status"])
    next_url = None
    if status == IntentStatus.REQUIRES_ACTION:  # where the customer answers the challenge: our API's sandbox page
        base = settings.sandbox_webhook_target.rsplit("/v1/", 1)[0]
        next_url = f"{base}/v1/sandbox/payment_intents/{row['intent_id']}/authenticate"
    return Intent(
        id=row["intent_id"], status=status, amount_minor=row["amount_minor"], currency=row["currency"],
        metadata=json_object(row["metadata"]), decline_code=row["decline_code"],
        failure_message=row["failure_message"], next_action_url=next_url,
    )


def card_for(req: CreateIntent) -> TestCard:
    card = describe_test_card(req.payment_method)
    if req.request_three_d_secure and card.outcome in ("succeed", "succeed_later"):  # asked to challenge: `any`
        return TestCard(card.brand, card.last4, "authenticate", refund_fails=card.refund_fails)
    return card


async def _by_key(conn: asyncpg.Connection, req: CreateIntent) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM sandbox.payment_intents WHERE tenant_id = $1 AND idempotency_key = $2",
        req.tenant_id, req.idempotency_key,
    )


def _announce(event_type: str, row: asyncpg.Record, intent: Intent) -> Outgoing:
    return Outgoing(row["tenant_id"], intent_event(event_type, intent))
