"""The sandbox payment provider: Stripe's test-mode semantics, embedded, with its state in Postgres.

It honours Stripe's published test payment methods (catalogue.py). Its calls change state and write the webhook
events they cause in one transaction; nothing is sent or scheduled from the calling process (a worker, the API).
The sandbox network (network.py, `paysaga sandbox-network`) does what Stripe's servers do over time: settles,
decides disputes and delivers the events, signed, and — when asked by settings — duplicated, out of order or
lost, so the real webhook path is always exercised.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from activities.providers.base import (
    Balance,
    BalanceTransaction,
    CardDetails,
    ChargeResult,
    CreateAccount,
    CreateIntent,
    CreatePayout,
    CreateTransfer,
    DisputeResult,
    Intent,
    PayoutResult,
    ProviderAccount,
    RefundResult,
    TransferResult,
)
from activities.providers.sandbox import balance
from activities.providers.sandbox.catalogue import UnknownPaymentMethod, describe_card_details, describe_test_card
from activities.providers.sandbox.connect import Connect
from activities.providers.sandbox.disputes import Disputes
from activities.providers.sandbox.faults import FaultInjector
from activities.providers.sandbox.intents import Intents, card_for
from activities.providers.sandbox.refunds import Refunds
from paysaga.settings import Settings


class SandboxProvider:
    """The `PaymentProvider` and `ConnectProvider` ports over the sandbox's parts, plus `authenticate` (the
    customer's 3-D Secure)."""

    name = "sandbox"

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._faults = FaultInjector(settings)
        self._intents = Intents(pool, settings)
        self._refunds = Refunds(pool, settings)
        self._disputes = Disputes(pool, settings)
        self._connect = Connect(pool, settings)
        self._pool = pool

    # --- payment intents ------------------------------------------------------------------------------------
    async def create_and_confirm(self, req: CreateIntent) -> Intent:
        describe_test_card(req.payment_method)  # an unknown token is refused before any fault is drawn
        fault = self._faults.draw(req.idempotency_key)
        self._faults.before_work(fault)
        intent = await self._intents.create_and_confirm(req)
        await self._faults.after_work(fault)
        return intent

    async def create_and_confirm_many(self, reqs: list[CreateIntent]) -> list[ChargeResult]:
        """Each request draws its own fault (429 before the work, 500 after it: the answer is lost, the intent
        made), as a request of its own to Stripe would."""
        results: dict[int, ChargeResult] = {}
        work: list[tuple[int, CreateIntent]] = []
        lost: set[int] = set()
        for n, req in enumerate(reqs):
            try:
                describe_test_card(req.payment_method)
            except UnknownPaymentMethod as exc:
                results[n] = ChargeResult(payment_id=req.payment_id, attempt=req.attempt,
                                          decline_code="invalid_payment_method", failure_message=str(exc))
                continue
            fault = self._faults.draw(req.idempotency_key)
            if fault == "429":
                results[n] = ChargeResult(payment_id=req.payment_id, attempt=req.attempt, throttled=True,
                                          error="sandbox: 429 rate limited (injected)")
                continue
            if fault in ("500", "timeout"):
                lost.add(n)
            work.append((n, req))
        if work:
            answers = await self._intents.create_and_confirm_many([r for _, r in work],
                                                                  [card_for(r) for _, r in work])
            for (n, req), answer in zip(work, answers, strict=True):
                results[n] = answer if n not in lost else ChargeResult(
                    payment_id=req.payment_id, attempt=req.attempt, error="sandbox: 500 after the work (injected)")
        return [results[n] for n in range(len(reqs))]

    async def retrieve_many(self, intent_ids: list[str]) -> list[Intent]:
        return await self._intents.retrieve_many(intent_ids) if intent_ids else []

    async def find_intent(self, payment_id: str, attempt: int) -> Intent | None:
        return await self._intents.find(payment_id, attempt)

    async def retrieve(self, intent_id: str) -> Intent:
        return await self._intents.retrieve(intent_id)

    async def cancel(self, intent_id: str) -> Intent:
        return await self._intents.cancel(intent_id)

    async def authenticate(self, intent_id: str, succeed: bool) -> Intent:
        return await self._intents.authenticate(intent_id, succeed)

    # --- refunds --------------------------------------------------------------------------------------------
    async def refund(
        self, intent_id: str, amount_minor: int | None, idempotency_key: str, metadata: dict[str, str] | None = None
    ) -> RefundResult:
        return await self._refunds.create(intent_id, amount_minor, idempotency_key, metadata)

    async def retrieve_refund(self, refund_id: str) -> RefundResult:
        return await self._refunds.retrieve(refund_id)

    # --- payment methods ------------------------------------------------------------------------------------
    async def describe_payment_method(self, token: str) -> CardDetails:
        return describe_card_details(token)  # UnknownPaymentMethod is a ValueError, as the port says

    # --- disputes -------------------------------------------------------------------------------------------
    async def submit_dispute_evidence(
        self, dispute_id: str, evidence: dict[str, str], submit: bool, idempotency_key: str | None = None
    ) -> DisputeResult:
        return await self._disputes.submit_evidence(dispute_id, evidence, submit)

    async def accept_dispute(self, dispute_id: str) -> DisputeResult:
        return await self._disputes.accept(dispute_id)

    async def retrieve_dispute(self, dispute_id: str) -> DisputeResult:
        return await self._disputes.retrieve(dispute_id)

    # --- Connect --------------------------------------------------------------------------------------------
    async def create_account(self, req: CreateAccount) -> ProviderAccount:
        return await self._connect.create_account(req)

    async def update_account(self, account_id: str, *, external_account: str | None = None) -> ProviderAccount:
        return await self._connect.update_account(account_id, external_account=external_account)

    async def retrieve_account(self, account_id: str) -> ProviderAccount:
        return await self._connect.retrieve_account(account_id)

    async def create_transfer(self, req: CreateTransfer) -> TransferResult:
        return await self._connect.create_transfer(req)

    async def reverse_transfer(self, transfer_id: str, idempotency_key: str) -> TransferResult:
        return await self._connect.reverse_transfer(transfer_id, idempotency_key)

    async def create_payout(self, req: CreatePayout) -> PayoutResult:
        return await self._connect.create_payout(req)

    async def retrieve_payout(self, account: str, payout_id: str) -> PayoutResult:
        return await self._connect.retrieve_payout(account, payout_id)

    async def retrieve_balance(self, account: str | None = None) -> Balance:
        return await self._connect.retrieve_balance(account)

    # --- settlement data ------------------------------------------------------------------------------------
    async def balance_transactions_of(self, source_id: str) -> list[BalanceTransaction]:
        return await balance.of_source(self._pool, source_id)

    async def settlement_report(self, tenant_id: str, start: datetime, end: datetime,
                                connected_accounts: Sequence[str] = ()) -> str:
        """Every connected account of the tenant is in the sandbox's own tables: the list is not needed."""
        return await balance.settlement_report(self._pool, tenant_id, start, end)

    async def aclose(self) -> None:
        """Nothing to close: the provider holds no tasks or connections of its own (the pool is the caller's).
        Kept so that callers close every provider the same way."""
