"""Connect in the sandbox: connected accounts, transfers (and their reversals), payouts and balances, with
Stripe's test-mode behaviour and idempotency on every create.

A payout is `pending` when made and settled by the network after `sandbox_settle_delay_ms` (`payout.paid`,
`payout.failed`, `payout.canceled`, each announced as a Connect event naming the `account`); an overdue payout
is also settled when it is next read. What it becomes is decided by the account's payout method token, as
Stripe's test bank accounts decide it:

    a token containing `FailNoAccount`      failed, no_account
    a token containing `FailAccountClosed`  failed, account_closed
    a token containing `Canceled`           canceled
    a token containing `ReturnedAfterPaid`  paid, then failed (account_closed) one delay later
    any other token                         paid

Every movement writes its balance transactions (balance.py): a transfer leaves the platform's balance (converted
from its settlement currency when the transfer is in another) and reaches the connected account's (converted to
its default currency); a reversal undoes both at the transfer's own rates; a payout leaves the connected
account's balance and a failed or canceled one comes back to it.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, date, datetime

import asyncpg

from activities.providers.base import (
    Balance,
    CreateAccount,
    CreatePayout,
    CreateTransfer,
    PayoutResult,
    ProviderAccount,
    TransferResult,
)
from activities.providers.sandbox import balance
from activities.providers.sandbox.events import Outgoing, envelope, json_object, publish
from paysaga.settings import Settings

_FAILURES = {
    "FailNoAccount": ("no_account", "The bank account details on file are probably incorrect. No bank account "
                                    "could be located with those details."),
    "FailAccountClosed": ("account_closed", "The bank account has been closed."),
}
_EVENT = {"paid": "payout.paid", "failed": "payout.failed", "canceled": "payout.canceled"}

# Payouts whose settle delay has passed: pending → their outcome (a returned one is paid first), and paid ones to
# be returned → failed one delay later. `{lock}` as in intents._SETTLE.
_SETTLE = """
    UPDATE sandbox.payouts p
       SET status = CASE WHEN p.status = 'paid' THEN 'failed'
                         WHEN p.outcome = 'paid_then_failed' THEN 'paid' ELSE p.outcome END,
           failure_code = CASE WHEN p.status = 'paid' THEN 'account_closed' ELSE p.failure_code END,
           failure_message = CASE WHEN p.status = 'paid' THEN 'The bank returned the payout: account closed.'
                                  ELSE p.failure_message END,
           updated_at = now()
     WHERE p.payout_id IN (
        SELECT payout_id FROM sandbox.payouts
         WHERE (status IN ('pending', 'in_transit') OR (status = 'paid' AND outcome = 'paid_then_failed'))
           AND updated_at <= now() - make_interval(secs => $1) AND ($2::text IS NULL OR payout_id = $2)
         ORDER BY updated_at LIMIT $3 FOR UPDATE {lock})
    RETURNING p.*"""


def payout_outcome(external_account: str | None) -> tuple[str, str | None, str | None]:
    """(outcome, failure code, failure message) for payouts to this payout method."""
    token = external_account or ""
    for marker, (code, message) in _FAILURES.items():
        if marker in token:
            return "failed", code, message
    if "Canceled" in token:
        return "canceled", None, None
    if "ReturnedAfterPaid" in token:
        return "paid_then_failed", None, None
    return "paid", None, None


def _account(row: asyncpg.Record) -> ProviderAccount:
    external = row["external_account"]
    return ProviderAccount(id=row["account_id"], country=row["country"], default_currency=row["default_currency"],
                           charges_enabled=True, payouts_enabled=external is not None, details_submitted=True,
                           external_account_last4=external[-4:] if external else None)


def _payout(row: asyncpg.Record) -> PayoutResult:
    return PayoutResult(id=row["payout_id"], account=row["account_id"], amount_minor=row["amount_minor"],
                        currency=row["currency"], status=row["status"], failure_code=row["failure_code"],
                        failure_message=row["failure_message"],
                        arrival_date=int(row["created_at"].timestamp()) + 86_400)


def payout_event(event_type: str, row: asyncpg.Record) -> dict[str, object]:
    event = envelope(event_type, {
        "id": row["payout_id"], "object": "payout", "amount": row["amount_minor"],
        "currency": row["currency"].lower(), "status": row["status"], "failure_code": row["failure_code"],
        "failure_message": row["failure_message"], "metadata": json_object(row["metadata"]),
        "arrival_date": int(row["created_at"].timestamp()) + 86_400, "automatic": False, "method": "standard",
        "type": "bank_account"})
    event["account"] = row["account_id"]  # a Connect event: it happened on the connected account
    return event


class Connect:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings

    # --- accounts -------------------------------------------------------------------------------------------
    async def create_account(self, req: CreateAccount) -> ProviderAccount:
        row = await self._pool.fetchrow(
            """INSERT INTO sandbox.accounts (account_id, tenant_id, idempotency_key, country, default_currency,
                   email, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING *""",
            f"acct_sbx_{secrets.token_hex(8)}", req.tenant_id, req.idempotency_key, req.country.upper(),
            req.default_currency.upper(), req.email, req.metadata)
        if row is None:  # an idempotent replay
            row = await self._pool.fetchrow(
                "SELECT * FROM sandbox.accounts WHERE tenant_id = $1 AND idempotency_key = $2",
                req.tenant_id, req.idempotency_key)
        return _account(row)

    async def update_account(self, account_id: str, *, external_account: str | None = None) -> ProviderAccount:
        row = await self._pool.fetchrow(
            """UPDATE sandbox.accounts SET external_account = coalesce($2, external_account), updated_at = now()
                WHERE account_id = $1 RETURNING *""", account_id, external_account)
        if row is None:
            raise ValueError(f"No such account: '{account_id}'")
        return _account(row)

    async def retrieve_account(self, account_id: str) -> ProviderAccount:
        return _account(await self._get_account(self._pool, account_id))

    async def _get_account(self, conn: asyncpg.Pool | asyncpg.Connection, account_id: str) -> asyncpg.Record:
        row = await conn.fetchrow("SELECT * FROM sandbox.accounts WHERE account_id = $1", account_id)
        if row is None:
            raise ValueError(f"No such account: '{account_id}'")
        return row

    # --- transfers ------------------------------------------------------------------------------------------
    async def create_transfer(self, req: CreateTransfer) -> TransferResult:
        today = datetime.now(UTC).date()
        async with self._pool.acquire() as conn, conn.transaction():
            done = await conn.fetchrow("SELECT * FROM sandbox.transfers WHERE tenant_id = $1 AND idempotency_key = $2",
                                       req.tenant_id, req.idempotency_key)
            if done is not None:
                return await self._transfer(conn, done)
            if req.amount_minor <= 0:
                raise ValueError("Transfer amount must be positive")
            account = await self._get_account(conn, req.destination)
            source = balance.convert_minor(self._settings, req.amount_minor, req.currency, req.source_currency, today)
            arrived = balance.convert_minor(self._settings, req.amount_minor, req.currency,
                                            account["default_currency"], today)
            row = await conn.fetchrow(
                """INSERT INTO sandbox.transfers (transfer_id, tenant_id, idempotency_key, destination, amount_minor,
                       currency, source_amount_minor, source_currency, destination_amount_minor, destination_currency,
                       transfer_group, metadata)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING *""",
                f"tr_sbx_{secrets.token_hex(12)}", req.tenant_id, req.idempotency_key, req.destination,
                req.amount_minor, req.currency.upper(), source.minor, source.currency, arrived.minor,
                arrived.currency, req.transfer_group, req.metadata)
            await balance.record(conn, self._settings, tenant_id=req.tenant_id, type="transfer", category="transfer",
                                 source_id=row["transfer_id"], currency=source.currency, amount_minor=-source.minor,
                                 exchange_rate=source.exchange_rate, facing_minor=-req.amount_minor,
                                 facing_currency=req.currency, description=f"payout {req.payout_id}")
            await balance.record(conn, self._settings, tenant_id=req.tenant_id, type="payment", category="transfer",
                                 source_id=row["transfer_id"], currency=arrived.currency, amount_minor=arrived.minor,
                                 account_id=req.destination, exchange_rate=arrived.exchange_rate,
                                 facing_minor=req.amount_minor, facing_currency=req.currency)
            return await self._transfer(conn, row)

    async def reverse_transfer(self, transfer_id: str, idempotency_key: str) -> TransferResult:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM sandbox.transfers WHERE transfer_id = $1 FOR UPDATE", transfer_id)
            if row is None:
                raise ValueError(f"No such transfer: '{transfer_id}'")
            if not row["reversed"]:  # reversing twice is reversing once
                row = await conn.fetchrow(
                    "UPDATE sandbox.transfers SET reversed = true WHERE transfer_id = $1 RETURNING *", transfer_id)
                original = await self._platform_row(conn, transfer_id, "transfer")
                await balance.record(
                    conn, self._settings, tenant_id=row["tenant_id"], type="transfer_refund",
                    category="transfer_reversal", source_id=transfer_id, currency=row["source_currency"],
                    amount_minor=row["source_amount_minor"],
                    exchange_rate=original["exchange_rate"] if original else None, facing_minor=row["amount_minor"],
                    facing_currency=row["currency"], description=f"reversal of {transfer_id}")
                await balance.record(
                    conn, self._settings, tenant_id=row["tenant_id"], type="payment_refund",
                    category="transfer_reversal", source_id=transfer_id, currency=row["destination_currency"],
                    amount_minor=-row["destination_amount_minor"], account_id=row["destination"])
            return await self._transfer(conn, row, reversal=True)

    async def _platform_row(self, conn: asyncpg.Connection, transfer_id: str, category: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            """SELECT * FROM sandbox.balance_transactions WHERE source_id = $1 AND reporting_category = $2
                AND account_id IS NULL ORDER BY seq LIMIT 1""", transfer_id, category)

    async def _transfer(self, conn: asyncpg.Connection, row: asyncpg.Record, *, reversal: bool = False
                        ) -> TransferResult:
        bt = await self._platform_row(conn, row["transfer_id"], "transfer_reversal" if reversal else "transfer")
        return TransferResult(
            id=row["transfer_id"], amount_minor=row["amount_minor"], currency=row["currency"],
            destination=row["destination"], destination_amount_minor=row["destination_amount_minor"],
            destination_currency=row["destination_currency"], reversed=row["reversed"],
            balance_transaction=balance.to_model(bt) if bt else None)

    # --- payouts --------------------------------------------------------------------------------------------
    async def create_payout(self, req: CreatePayout) -> PayoutResult:
        async with self._pool.acquire() as conn, conn.transaction():
            done = await conn.fetchrow("SELECT * FROM sandbox.payouts WHERE tenant_id = $1 AND idempotency_key = $2",
                                       req.tenant_id, req.idempotency_key)
            if done is not None:
                return _payout(done)
            account = await self._get_account(conn, req.account)
            if account["external_account"] is None:
                raise ValueError(f"Account {req.account} has no external account to pay out to")
            if req.amount_minor <= 0:
                raise ValueError("Payout amount must be positive")
            outcome, code, message = payout_outcome(account["external_account"])
            row = await conn.fetchrow(
                """INSERT INTO sandbox.payouts (payout_id, tenant_id, account_id, idempotency_key, amount_minor,
                       currency, status, outcome, failure_code, failure_message, metadata)
                   VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10) RETURNING *""",
                f"po_sbx_{secrets.token_hex(12)}", req.tenant_id, req.account, req.idempotency_key, req.amount_minor,
                req.currency.upper(), outcome, code, message, req.metadata)
            await balance.record(conn, self._settings, tenant_id=req.tenant_id, type="payout", category="payout",
                                 source_id=row["payout_id"], currency=row["currency"],
                                 amount_minor=-row["amount_minor"], account_id=req.account,
                                 description=f"payout {req.payout_id}")
            await publish(conn, self._settings, [Outgoing(req.tenant_id, payout_event("payout.created", row))])
        return _payout(row)

    async def retrieve_payout(self, account: str, payout_id: str) -> PayoutResult:
        row = await self._pool.fetchrow("SELECT * FROM sandbox.payouts WHERE payout_id = $1 AND account_id = $2",
                                        payout_id, account)
        if row is None:
            raise ValueError(f"No such payout: '{payout_id}'")
        async with self._pool.acquire() as conn, conn.transaction():
            settled = await _settle(conn, self._settings, _SETTLE.format(lock=""), payout_id, 1)
        return _payout(settled[0] if settled else row)

    # --- balances -------------------------------------------------------------------------------------------
    async def retrieve_balance(self, account: str | None = None) -> Balance:
        rows = await self._pool.fetch(
            """SELECT currency, coalesce(sum(net_minor) FILTER (WHERE available_on <= $2), 0)::bigint AS available,
                      coalesce(sum(net_minor) FILTER (WHERE available_on > $2), 0)::bigint AS pending
                 FROM sandbox.balance_transactions WHERE account_id IS NOT DISTINCT FROM $1 GROUP BY currency""",
            account, date.fromtimestamp(time.time(), UTC))
        return Balance(available={r["currency"]: r["available"] for r in rows},
                       pending={r["currency"]: r["pending"] for r in rows})


async def settle_due_payouts(conn: asyncpg.Connection, settings: Settings, limit: int) -> int:
    """The network's part: settle up to `limit` payouts whose delay has passed, in `conn`'s transaction."""
    return len(await _settle(conn, settings, _SETTLE.format(lock="SKIP LOCKED"), None, limit))


async def _settle(conn: asyncpg.Connection, settings: Settings, sql: str, payout_id: str | None, limit: int
                  ) -> list[asyncpg.Record]:
    rows = await conn.fetch(sql, settings.sandbox_settle_delay_ms / 1000, payout_id, limit)
    events = []
    for row in rows:
        if row["status"] in ("failed", "canceled"):  # the funds come back to the connected account's balance
            await balance.record(conn, settings, tenant_id=row["tenant_id"], type="payout_failure",
                                 category="payout_reversal", source_id=row["payout_id"], currency=row["currency"],
                                 amount_minor=row["amount_minor"], account_id=row["account_id"],
                                 description=f"{row['status']} payout {row['payout_id']}")
        events.append(Outgoing(row["tenant_id"], payout_event(_EVENT[row["status"]], row)))
    await publish(conn, settings, events)
    return rows
