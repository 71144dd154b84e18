"""The ledger read back: accounts with their balances, an account's statement, and the trial balance."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import asyncpg

from activities.stores import ledger as store
from contracts.auth import Principal
from domain.money import Money
from paysaga.db import tenant_tx
from services.context import AppContext
from services.errors import BadRequest, not_found
from services.tenants import as_tenant, resolve_tenant


def account_json(row: Any) -> dict[str, Any]:
    balance = Money(row["balance_micros"], row["currency"])
    return {"id": row["account_id"], "object": "ledger_account", "code": row["code"], "subject": row["subject"],
            "currency": row["currency"], "type": row["type"], "balance": balance.to_decimal_string(),
            "balance_micros": balance.micros, "created_at": row["created_at"].isoformat()}


def line_json(row: Any) -> dict[str, Any]:
    amount = Money(row["amount_micros"], row["currency"])
    return {"entry_id": row["entry_id"], "object": "ledger_line", "event": row["event"],
            "source_type": row["source_type"], "source_id": row["source_id"], "memo": row["memo"],
            "reverses": row["reverses"], "side": "debit" if amount.micros > 0 else "credit",
            "amount": abs(amount).to_decimal_string(), "amount_micros": amount.micros, "currency": row["currency"],
            "posted_at": row["posted_at"].isoformat()}


async def list_accounts(ctx: AppContext, who: Principal, at: datetime | None = None) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        rows = await store.accounts_with_balances(conn, at)
    return {"object": "list", "data": [account_json(r) for r in rows], "at": at.isoformat() if at else None}


async def statement(ctx: AppContext, who: Principal, account_id: str, limit: int, starting_after: str | None
                    ) -> dict[str, Any]:
    """The account's lines, newest first; the last entry id of a page is the cursor of the next."""
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        if await store.account(conn, account_id) is None:
            raise not_found("ledger_account", account_id)
        try:
            rows, has_more = await store.statement(conn, account_id, limit, starting_after)
        except LookupError:
            raise BadRequest("invalid-cursor", "Invalid cursor",
                             f"No entry {starting_after} on account {account_id}.") from None
    page = [line_json(r) for r in rows]
    return {"object": "list", "account_id": account_id, "data": page, "has_more": has_more,
            "next_cursor": page[-1]["entry_id"] if has_more else None}


async def trial_balance_in(conn: asyncpg.Connection, at: datetime | None = None) -> dict[str, Any]:
    """Per currency: debits, credits and what each kind of account holds. The balance is zero, always: every
    entry balances, so their sum does."""
    rows = await store.accounts_with_balances(conn, at)
    currencies: dict[str, dict[str, Any]] = defaultdict(lambda: {"debits_micros": 0, "credits_micros": 0,
                                                                "by_type": defaultdict(int), "accounts": []})
    for row in rows:
        block, balance = currencies[row["currency"]], row["balance_micros"]
        block["debits_micros" if balance > 0 else "credits_micros"] += abs(balance)
        block["by_type"][row["type"]] += balance
        block["accounts"].append({"id": row["account_id"], "type": row["type"], "balance_micros": balance})
    out = []
    for currency, block in sorted(currencies.items()):
        debits, credits = block["debits_micros"], block["credits_micros"]
        out.append({"currency": currency, "debits": Money(debits, currency).to_decimal_string(),
                    "credits": Money(credits, currency).to_decimal_string(), "balance_micros": debits - credits,
                    "by_type": dict(block["by_type"]), "accounts": block["accounts"]})
    return {"object": "trial_balance", "at": at.isoformat() if at else None, "currencies": out,
            "balanced": all(c["balance_micros"] == 0 for c in out)}


async def trial_balance(ctx: AppContext, who: Principal, at: datetime | None = None) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        return await trial_balance_in(conn, at)


async def tenant_trial_balance(admin_url: str, tenant: str, at: datetime | None = None) -> dict[str, Any]:
    """The trial balance of one tenant (an id or a unique name), over the owner's connection (the CLI)."""
    tenant_id = await resolve_tenant(admin_url, tenant)
    async with as_tenant(admin_url, tenant_id) as conn:
        return {**await trial_balance_in(conn, at), "tenant_id": tenant_id}


def render_trial_balance(report: dict[str, Any]) -> str:
    lines = [f"Trial balance of {report.get('tenant_id', 'the tenant')} as of {report['at'] or 'now'}"]
    for block in report["currencies"]:
        currency = block["currency"]
        lines.append(f"\n{currency}   debits {block['debits']}   credits {block['credits']}   "
                     f"balance {Money(block['balance_micros'], currency).to_decimal_string()}")
        for account in block["accounts"]:
            lines.append(f"  {account['id']:<48} {account['type']:<15} "
                         f"{Money(account['balance_micros'], currency).to_decimal_string():>18}")
    lines.append("\nbalanced" if report["balanced"] else "\nNOT BALANCED")
    return "\n".join(lines) + "\n"
