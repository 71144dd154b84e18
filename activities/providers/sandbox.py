"""The sandbox payment provider: Stripe's test-mode semantics, embedded, with its state in Postgres.

It honours Stripe's published test payment methods and delivers webhooks to the API the way Stripe does:
asynchronously, signed with the endpoint secret (`Stripe-Signature: t=…,v1=…`), and — when asked by settings —
duplicated and out of order, so the real webhook path is always exercised.

Card payments settle asynchronously here (confirm answers `processing`, the outcome arrives by webhook after
`sandbox_settle_delay_ms`), which is what bank debits and delayed captures do on Stripe: the saga must not
depend on a synchronous answer. An overdue intent is settled when it is next read, so a crash of the process
that would have delivered the webhook only delays the outcome until the saga polls.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import structlog

from activities.providers.base import (
    CardDeclined,
    CardDetails,
    CreateIntent,
    DisputeResult,
    Intent,
    IntentStatus,
    ProviderUnavailable,
    RefundResult,
)
from paysaga.settings import Settings

log = structlog.get_logger("paysaga.sandbox")


@dataclass(frozen=True)
class TestCard:
    brand: str
    last4: str
    outcome: str  # "succeed" | "decline" | "authenticate"
    decline_code: str | None = None
    refund_fails: bool = False
    creates_dispute: bool = False  # the payment succeeds, then the cardholder disputes it


# Stripe's published test payment methods (docs: testing → "cards by brand", "declined payments", "3D Secure").
TEST_CARDS: dict[str, TestCard] = {
    "pm_card_visa": TestCard("visa", "4242", "succeed"),
    "pm_card_visa_debit": TestCard("visa", "5556", "succeed"),
    "pm_card_mastercard": TestCard("mastercard", "4444", "succeed"),
    "pm_card_amex": TestCard("amex", "8431", "succeed"),
    "pm_card_discover": TestCard("discover", "1117", "succeed"),
    "pm_card_jcb": TestCard("jcb", "0505", "succeed"),
    "pm_card_unionpay": TestCard("unionpay", "0005", "succeed"),
    "pm_card_refundFail": TestCard("visa", "5126", "succeed", refund_fails=True),
    "pm_card_createDispute": TestCard("visa", "0259", "succeed", creates_dispute=True),
    "tok_visa": TestCard("visa", "4242", "succeed"),
    "tok_mastercard": TestCard("mastercard", "4444", "succeed"),
    "pm_card_chargeDeclined": TestCard("visa", "0002", "decline", "generic_decline"),
    "pm_card_chargeDeclinedInsufficientFunds": TestCard("visa", "9995", "decline", "insufficient_funds"),
    "pm_card_chargeDeclinedLostCard": TestCard("visa", "9987", "decline", "lost_card"),
    "pm_card_chargeDeclinedStolenCard": TestCard("visa", "9979", "decline", "stolen_card"),
    "pm_card_chargeDeclinedExpiredCard": TestCard("visa", "0069", "decline", "expired_card"),
    "pm_card_chargeDeclinedIncorrectCvc": TestCard("visa", "0127", "decline", "incorrect_cvc"),
    "pm_card_chargeDeclinedProcessingError": TestCard("visa", "0119", "decline", "processing_error"),
    "pm_card_chargeDeclinedFraudulent": TestCard("visa", "0019", "decline", "fraudulent"),
    "pm_card_threeDSecure2Required": TestCard("visa", "3220", "authenticate"),
    "pm_card_threeDSecureRequired": TestCard("visa", "3063", "authenticate"),
    "pm_card_authenticationRequired": TestCard("visa", "3184", "authenticate"),
}


class UnknownPaymentMethod(ValueError):
    pass


def describe_test_card(token: str) -> TestCard:
    card = TEST_CARDS.get(token)
    if card is None:
        raise UnknownPaymentMethod(f"No such PaymentMethod: '{token}' (the sandbox knows Stripe's test methods)")
    return card


# Every sandbox card expires in December 2040 and is issued in the US (Stripe: "any future date").
SANDBOX_EXPIRY = (12, 2040)
SANDBOX_COUNTRY = "US"


def card_fingerprint(card: TestCard) -> str:
    """Stands in for the provider's fingerprint of the card number: the sandbox knows brand + last4 only, so two
    tokens of the same test card (pm_card_visa, tok_visa) share it, as Stripe's do."""
    return hashlib.sha256(f"sandbox:{card.brand}:{card.last4}".encode()).hexdigest()[:16]


def describe_card_details(token: str) -> CardDetails:
    card = describe_test_card(token)
    return CardDetails(brand=card.brand, last4=card.last4, exp_month=SANDBOX_EXPIRY[0], exp_year=SANDBOX_EXPIRY[1],
                       fingerprint=card_fingerprint(card), country=SANDBOX_COUNTRY)


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class SandboxProvider:
    name = "sandbox"

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings
        self._tasks: set[asyncio.Task[None]] = set()
        self._calls: dict[str, int] = {}
        self._http: httpx.AsyncClient | None = None

    # --- the PaymentProvider port ---------------------------------------------------------------------------
    async def create_and_confirm(self, req: CreateIntent) -> Intent:
        card = describe_test_card(req.payment_method)
        inject = self._inject_failure(req.idempotency_key)
        if inject == "429":  # refused before any work, as a rate limit is
            raise ProviderUnavailable("sandbox: 429 rate limited (injected)")
        intent = await self._create_and_confirm(req, card)
        if inject == "500":  # the work is done, only the answer is lost: the retry must find this intent
            raise ProviderUnavailable("sandbox: 500 after creating the intent (injected)")
        if inject == "timeout":
            await asyncio.sleep(3600)  # outlives the activity's start_to_close; the retry must find the intent
        return intent

    def _inject_failure(self, key: str) -> str | None:
        """Fault injection for tests and drills: the first `sandbox_fail_first_calls` calls per payment fail."""
        seen = self._calls.get(key, 0)
        self._calls[key] = seen + 1
        return self._settings.sandbox_fail_kind if seen < self._settings.sandbox_fail_first_calls else None

    async def _create_and_confirm(self, req: CreateIntent, card: TestCard) -> Intent:
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
            return await self._create_and_confirm(req, card)
        if self._settings.sandbox_response_latency_ms:  # the work is done; only the answer is slow
            await asyncio.sleep(self._settings.sandbox_response_latency_ms / 1000)
        intent = self._to_intent(row)
        if card.outcome == "succeed":
            self._deliver(["payment_intent.created", "payment_intent.processing"], intent)
            self._spawn(self._settle_later(intent.id))
        elif card.outcome == "authenticate":
            self._deliver(["payment_intent.created", "payment_intent.requires_action"], intent)
        return self._replay(row)

    async def find_intent(self, payment_id: str, attempt: int) -> Intent | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM sandbox.payment_intents WHERE payment_id = $1 AND attempt = $2", payment_id, attempt
        )
        return self._to_intent(await self._settle_if_due(row)) if row else None

    async def retrieve(self, intent_id: str) -> Intent:
        return self._to_intent(await self._settle_if_due(await self._get(intent_id)))

    async def cancel(self, intent_id: str) -> Intent:
        row = await self._transition(
            intent_id, {IntentStatus.REQUIRES_PAYMENT_METHOD, IntentStatus.REQUIRES_ACTION,
                        IntentStatus.REQUIRES_CONFIRMATION, IntentStatus.PROCESSING}, IntentStatus.CANCELED,
        )
        if row is None:
            return await self.retrieve(intent_id)
        intent = self._to_intent(row)
        self._deliver(["payment_intent.canceled"], intent)
        return intent

    async def refund(
        self, intent_id: str, amount_minor: int | None, idempotency_key: str, metadata: dict[str, str] | None = None
    ) -> RefundResult:
        """Refunds start `pending` and settle after `sandbox_settle_delay_ms` (webhook `refund.updated`);
        `pm_card_refundFail` payments' refunds fail (`refund.failed`), giving the amount back."""
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
                return _refund_result(done)
            if intent["status"] != IntentStatus.SUCCEEDED:
                raise ValueError(f"PaymentIntent {intent_id} has not succeeded; nothing to refund")
            remaining = intent["amount_minor"] - intent["amount_refunded"]
            amount = remaining if amount_minor is None else amount_minor
            if not 0 < amount <= remaining:
                raise ValueError(f"Refund amount {amount} exceeds the refundable {remaining}")
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
        self._deliver_refund("refund.created", row, intent)
        self._spawn(self._settle_refund_later(row["refund_id"]))
        return _refund_result(row)

    async def retrieve_refund(self, refund_id: str) -> RefundResult:
        row = await self._pool.fetchrow("SELECT * FROM sandbox.refunds WHERE refund_id = $1", refund_id)
        if row is None:
            raise ValueError(f"No such refund: '{refund_id}'")
        due = row["updated_at"].timestamp() + self._settings.sandbox_settle_delay_ms / 1000
        if row["status"] == "pending" and time.time() >= due:
            row = await self._settle_refund(refund_id) or row
        return _refund_result(row)

    async def _settle_refund_later(self, refund_id: str) -> None:
        await asyncio.sleep(self._settings.sandbox_settle_delay_ms / 1000)
        await self._settle_refund(refund_id)

    async def _settle_refund(self, refund_id: str) -> asyncpg.Record | None:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT r.*, i.payment_method FROM sandbox.refunds r JOIN sandbox.payment_intents i USING (intent_id)"
                " WHERE r.refund_id = $1 AND r.status = 'pending' FOR UPDATE OF r", refund_id)
            if row is None:
                return None
            fails = TEST_CARDS.get(row["payment_method"], TEST_CARDS["pm_card_visa"]).refund_fails
            row = await conn.fetchrow(
                """UPDATE sandbox.refunds SET status = $2, failure_reason = $3, updated_at = now()
                   WHERE refund_id = $1 RETURNING *""",
                refund_id, "failed" if fails else "succeeded", "expired_or_canceled_card" if fails else None)
            intent = await conn.fetchrow(
                """UPDATE sandbox.payment_intents SET amount_refunded = amount_refunded - $2
                   WHERE intent_id = $1 AND $3 RETURNING *""", row["intent_id"], row["amount_minor"], fails)
            intent = intent or await conn.fetchrow(
                "SELECT * FROM sandbox.payment_intents WHERE intent_id = $1", row["intent_id"])
        self._deliver_refund("refund.failed" if fails else "refund.updated", row, intent)
        return row

    def _deliver_refund(self, event_type: str, refund: asyncpg.Record, intent: asyncpg.Record) -> None:
        obj = {
            "id": refund["refund_id"], "object": "refund", "amount": refund["amount_minor"],
            "currency": intent["currency"].lower(), "status": refund["status"], "payment_intent": intent["intent_id"],
            "failure_reason": refund["failure_reason"], "metadata": refund["metadata"],
        }
        self._post_events([self._envelope(event_type, obj)])

    async def describe_payment_method(self, token: str) -> CardDetails:
        return describe_card_details(token)  # UnknownPaymentMethod is a ValueError, as the port says

    # --- sandbox-only: the customer's answer to a 3-D Secure challenge ------------------------------------
    async def authenticate(self, intent_id: str, succeed: bool) -> Intent:
        if succeed:
            row = await self._transition(intent_id, {IntentStatus.REQUIRES_ACTION}, IntentStatus.PROCESSING)
            if row is not None:
                self._deliver(["payment_intent.processing"], self._to_intent(row))
                self._spawn(self._settle_later(intent_id))
        else:
            row = await self._transition(
                intent_id, {IntentStatus.REQUIRES_ACTION}, IntentStatus.REQUIRES_PAYMENT_METHOD,
                decline_code="authentication_failed",
                failure_message="The customer failed or abandoned 3-D Secure authentication.",
            )
            if row is not None:
                self._deliver(["payment_intent.payment_failed"], self._to_intent(row))
        if row is None:
            raise ValueError(f"PaymentIntent {intent_id} is not awaiting authentication")
        return self._to_intent(row)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    # --- mechanics ------------------------------------------------------------------------------------------
    def _replay(self, row: asyncpg.Record) -> Intent:
        intent = self._to_intent(row)
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
            self._deliver(["payment_intent.succeeded"], self._to_intent(row))
            if TEST_CARDS.get(row["payment_method"], TEST_CARDS["pm_card_visa"]).creates_dispute:
                await self._open_dispute(row)
        return row

    async def _settle_later(self, intent_id: str) -> None:
        await asyncio.sleep(self._settings.sandbox_settle_delay_ms / 1000)
        await self._settle(intent_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _deliver(self, event_types: list[str], intent: Intent) -> None:
        self._post_events([self._event(t, intent) for t in event_types])

    def _post_events(self, events: list[dict[str, Any]]) -> None:
        copies = [e for e in events for _ in range(self._settings.sandbox_webhook_duplicates)]
        if self._settings.sandbox_webhook_shuffle:
            random.shuffle(copies)
        for i, event in enumerate(copies):
            if random.random() < self._settings.sandbox_webhook_drop_rate:
                log.info("sandbox.webhook_dropped", event_id=event["id"], type=event["type"])
                continue
            # Out-of-order mode also spreads deliveries in time, so later events may overtake earlier ones.
            delay = random.uniform(0, 0.2) if self._settings.sandbox_webhook_shuffle else i * 0.001
            self._spawn(self._post(event, delay))

    @staticmethod
    def _envelope(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"evt_sbx_{secrets.token_hex(12)}", "object": "event", "type": event_type,
                "created": int(time.time()), "livemode": False, "api_version": "2025-01-27",
                "data": {"object": obj}}

    def _event(self, event_type: str, intent: Intent) -> dict[str, Any]:
        last_error = (
            {"type": "card_error", "code": "card_declined", "decline_code": intent.decline_code,
             "message": intent.failure_message}
            if intent.decline_code else None
        )
        return self._envelope(event_type, {
            "id": intent.id, "object": "payment_intent", "amount": intent.amount_minor,
            "currency": intent.currency.lower(), "status": intent.status.value, "metadata": intent.metadata,
            "last_payment_error": last_error,
            "next_action": {"type": "redirect_to_url", "redirect_to_url": {"url": intent.next_action_url}}
            if intent.next_action_url else None,
        })

    async def _post(self, event: dict[str, Any], delay: float) -> None:
        await asyncio.sleep(delay)
        body = json.dumps(event).encode()
        secret = self._settings.webhook_secret_list[0]
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10)
        for attempt in range(5):  # Stripe retries for days; a few quick tries are enough on one machine
            try:
                headers = {"Stripe-Signature": sign(body, secret, int(time.time())),
                           "Content-Type": "application/json"}
                resp = await self._http.post(self._settings.sandbox_webhook_target, content=body, headers=headers)
                if resp.status_code < 300:
                    return
                log.warning("sandbox.webhook_rejected", status=resp.status_code, event_id=event["id"])
                if 400 <= resp.status_code < 500 and resp.status_code != 409:
                    return
            except httpx.HTTPError as exc:
                log.warning("sandbox.webhook_unreachable", error=str(exc), event_id=event["id"])
            await asyncio.sleep(0.2 * 2**attempt)

    def _to_intent(self, row: asyncpg.Record) -> Intent:
        status = IntentStatus(row["status"])
        metadata = row["metadata"] if isinstance(row["metadata"], dict) else json.loads(row["metadata"])
        next_url = None
        if status == IntentStatus.REQUIRES_ACTION:
            base = self._settings.sandbox_webhook_target.rsplit("/v1/", 1)[0]
            next_url = f"{base}/v1/sandbox/payment_intents/{row['intent_id']}/authenticate"
        return Intent(
            id=row["intent_id"], status=status, amount_minor=row["amount_minor"], currency=row["currency"],
            metadata=metadata, decline_code=row["decline_code"], failure_message=row["failure_message"],
            next_action_url=next_url,
        )

    # --- disputes (pm_card_createDispute) -------------------------------------------------------------------
    # Stripe's test mode: a dispute opens after the payment succeeds (funds withdrawn), evidence whose
    # `uncategorized_text` is "winning_evidence" wins it and "losing_evidence" loses it once the "issuer" has
    # looked (after sandbox_settle_delay_ms); any other evidence stays under_review, as on Stripe. Closing
    # (accepting) loses it at once; a dispute left without evidence past its `due_by` is lost when next read.
    async def submit_dispute_evidence(
        self, dispute_id: str, evidence: dict[str, str], submit: bool, idempotency_key: str | None = None
    ) -> DisputeResult:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM sandbox.disputes WHERE dispute_id = $1 FOR UPDATE", dispute_id)
            if row is None:
                raise ValueError(f"No such dispute: '{dispute_id}'")
            merged = {**_json(row["evidence"]), **evidence}
            if row["status"] == "under_review" and submit and merged == _json(row["evidence"]):
                return _dispute_result(row)  # a retried submission whose first try went through
            overdue = row["evidence_due_by"].timestamp() <= time.time()
            if row["status"] != "needs_response" or overdue:
                raise ValueError(f"Dispute {dispute_id} is {row['status']}"
                                 f"{' and past its evidence deadline' if overdue else ''}: it takes no evidence")
            decisive = {"winning_evidence": "won", "losing_evidence": "lost"}
            pending = decisive.get(merged.get("uncategorized_text", "")) if submit else None
            row = await conn.fetchrow(
                """UPDATE sandbox.disputes SET evidence = $2, status = $3, pending_outcome = $4,
                       submission_count = submission_count + $5::int, updated_at = now()
                   WHERE dispute_id = $1 RETURNING *""",
                dispute_id, merged, "under_review" if submit else "needs_response", pending, int(submit))
        self._post_events([self._dispute_event("charge.dispute.updated", row)])
        if pending is not None:
            self._spawn(self._settle_dispute_later(dispute_id))
        return _dispute_result(row)

    async def accept_dispute(self, dispute_id: str) -> DisputeResult:
        row = await self._pool.fetchrow(
            """UPDATE sandbox.disputes SET status = 'lost', pending_outcome = NULL, updated_at = now()
               WHERE dispute_id = $1 AND status = 'needs_response' RETURNING *""", dispute_id)
        if row is None:
            current = await self._dispute_row(dispute_id)
            if current["status"] == "lost":
                return _dispute_result(current)  # closing twice is closing once
            raise ValueError(f"Dispute {dispute_id} is {current['status']}: it cannot be closed")
        self._post_events([self._dispute_event("charge.dispute.closed", row)])
        return _dispute_result(row)

    async def retrieve_dispute(self, dispute_id: str) -> DisputeResult:
        row = await self._dispute_row(dispute_id)
        due = row["updated_at"].timestamp() + self._settings.sandbox_settle_delay_ms / 1000
        if row["status"] == "under_review" and row["pending_outcome"] and time.time() >= due:
            row = await self._settle_dispute(dispute_id) or await self._dispute_row(dispute_id)
        elif row["status"] == "needs_response" and row["evidence_due_by"].timestamp() <= time.time():
            closed = await self._pool.fetchrow(
                """UPDATE sandbox.disputes SET status = 'lost', updated_at = now()
                   WHERE dispute_id = $1 AND status = 'needs_response' RETURNING *""", dispute_id)
            if closed is not None:
                self._post_events([self._dispute_event("charge.dispute.closed", closed)])
            row = closed or await self._dispute_row(dispute_id)
        return _dispute_result(row)

    async def _dispute_row(self, dispute_id: str) -> asyncpg.Record:
        row = await self._pool.fetchrow("SELECT * FROM sandbox.disputes WHERE dispute_id = $1", dispute_id)
        if row is None:
            raise ValueError(f"No such dispute: '{dispute_id}'")
        return row

    async def _open_dispute(self, intent: asyncpg.Record) -> None:
        """The cardholder disputes a succeeded payment: one dispute per intent, announced after a short delay."""
        row = await self._pool.fetchrow(
            """INSERT INTO sandbox.disputes (dispute_id, tenant_id, intent_id, amount_minor, currency, reason, status,
                   evidence_due_by)
               VALUES ($1, $2, $3, $4, $5, 'fraudulent', 'needs_response', now() + make_interval(secs => $6))
               ON CONFLICT (intent_id) DO NOTHING RETURNING *""",
            f"dp_sbx_{secrets.token_hex(12)}", intent["tenant_id"], intent["intent_id"], intent["amount_minor"],
            intent["currency"], float(self._settings.sandbox_dispute_evidence_seconds),
        )
        if row is not None:
            self._spawn(self._announce_dispute(row))

    async def _announce_dispute(self, row: asyncpg.Record) -> None:
        await asyncio.sleep(self._settings.sandbox_settle_delay_ms / 1000)
        self._post_events([self._dispute_event("charge.dispute.created", row),
                           self._dispute_event("charge.dispute.funds_withdrawn", row)])

    async def _settle_dispute_later(self, dispute_id: str) -> None:
        await asyncio.sleep(self._settings.sandbox_settle_delay_ms / 1000)
        await self._settle_dispute(dispute_id)

    async def _settle_dispute(self, dispute_id: str) -> asyncpg.Record | None:
        row = await self._pool.fetchrow(
            """UPDATE sandbox.disputes SET status = pending_outcome, updated_at = now()
               WHERE dispute_id = $1 AND status = 'under_review' AND pending_outcome IS NOT NULL RETURNING *""",
            dispute_id)
        if row is not None:
            won = ["charge.dispute.funds_reinstated"] if row["status"] == "won" else []
            self._post_events([self._dispute_event(t, row) for t in [*won, "charge.dispute.closed"]])
        return row

    def _dispute_event(self, event_type: str, row: asyncpg.Record) -> dict[str, Any]:
        evidence = _json(row["evidence"])
        return self._envelope(event_type, {
            "id": row["dispute_id"], "object": "dispute", "amount": row["amount_minor"],
            "currency": row["currency"].lower(), "payment_intent": row["intent_id"],
            "charge": "ch_sbx_" + row["intent_id"].removeprefix("pi_sbx_"), "reason": row["reason"],
            "status": row["status"], "evidence": evidence, "is_charge_refundable": False, "livemode": False,
            "created": int(row["created_at"].timestamp()), "metadata": {},
            "evidence_details": {"due_by": int(row["evidence_due_by"].timestamp()), "has_evidence": bool(evidence),
                                 "past_due": row["evidence_due_by"].timestamp() <= time.time(),
                                 "submission_count": row["submission_count"]},
        })

def _refund_result(row: asyncpg.Record) -> RefundResult:
    return RefundResult(id=row["refund_id"], status=row["status"], amount_minor=row["amount_minor"],
                        failure_reason=row["failure_reason"])


def _dispute_result(row: asyncpg.Record) -> DisputeResult:
    return DisputeResult(id=row["dispute_id"], status=row["status"], amount_minor=row["amount_minor"],
                         currency=row["currency"], reason=row["reason"], payment_intent=row["intent_id"],
                         evidence_due_by=int(row["evidence_due_by"].timestamp()))


def _json(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else json.loads(value or "{}")
