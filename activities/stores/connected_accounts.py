"""Persistence of connected accounts and of the tenant's settings: row, lifecycle event and outbox message in one
transaction; rows read back as the domain's `ConnectedAccount`."""

from __future__ import annotations

from typing import Any

import asyncpg

from activities.stores import outbox
from contracts.connected_accounts import TenantSettings
from domain.connect import ConnectedAccount, PayoutInterval, PayoutMethod, PayoutSchedule, ReservePolicy, Weekday
from domain.money import Money
from domain.payment import transition_id

UPDATABLE = ("onboarding_status", "settlement_currency", "display_name", "email", "payout_interval",
             "payout_weekday", "payout_delay_days", "payout_minimum_micros", "reserve_basis_points",
             "reserve_hold_days", "reserve_fixed_micros", "payout_method_token", "payout_method_last4", "metadata",
             "provider_account_id")


def to_domain(row: asyncpg.Record) -> ConnectedAccount:
    currency = row["settlement_currency"]
    minimum, fixed = row["payout_minimum_micros"], row["reserve_fixed_micros"]
    method = (PayoutMethod(row["payout_method_token"], row["payout_method_last4"])
              if row["payout_method_token"] else None)
    return ConnectedAccount(
        account_id=row["account_id"], settlement_currency=currency, onboarding=row["onboarding_status"],
        schedule=PayoutSchedule(PayoutInterval(row["payout_interval"]), Weekday(row["payout_weekday"]),
                                row["payout_delay_days"], Money(minimum, currency) if minimum is not None else None),
        payout_method=method,
        reserve=ReservePolicy(row["reserve_basis_points"], row["reserve_hold_days"],
                              Money(fixed, currency) if fixed is not None else None))


async def insert(conn: asyncpg.Connection, tenant_id: str, account_id: str, provider: str,
                 columns: dict[str, Any], idempotency_key: str | None, actor: str, correlation_id: str
                 ) -> tuple[asyncpg.Record, bool]:
    """(row, created): a second call for the same account changes nothing."""
    names = ["account_id", "tenant_id", "provider", "idempotency_key", *columns]
    values = [account_id, tenant_id, provider, idempotency_key, *columns.values()]
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    row = await conn.fetchrow(
        f"""INSERT INTO paysaga.connected_accounts ({", ".join(names)}) VALUES ({placeholders})
            ON CONFLICT DO NOTHING RETURNING *""", *values)
    if row is None:
        existing = await fetch(conn, account_id)
        assert existing is not None, "the idempotency key names another account"
        return existing, False
    await record_event(conn, row, 1, None, "connected_account.created", actor, correlation_id,
                       {"settlement_currency": row["settlement_currency"], "country": row["country"]})
    return row, True


async def fetch(conn: asyncpg.Connection, account_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM paysaga.connected_accounts WHERE account_id = $1{' FOR UPDATE' if lock else ''}", account_id)


async def fetch_many(conn: asyncpg.Connection, account_ids: list[str]) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM paysaga.connected_accounts WHERE account_id = ANY($1::text[])",
                            account_ids)


async def update(conn: asyncpg.Connection, row: asyncpg.Record, changes: dict[str, Any], actor: str,
                 correlation_id: str) -> asyncpg.Record:
    """Change the given columns (the caller holds the row's lock) with a lifecycle event naming what changed."""
    sets = {k: v for k, v in changes.items() if k in UPDATABLE and v != row[k]}
    if not sets:
        return row
    seq = row["event_seq"] + 1
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(sets, start=3))
    updated = await conn.fetchrow(
        f"""UPDATE paysaga.connected_accounts SET {assignments}, event_seq = $2, updated_at = now()
            WHERE account_id = $1 RETURNING *""", row["account_id"], seq, *sets.values())
    event = ("connected_account.onboarding_" + updated["onboarding_status"]
             if "onboarding_status" in sets else "connected_account.updated")
    await record_event(conn, updated, seq, row["onboarding_status"], event, actor, correlation_id,
                       {"changed": sorted(sets)})
    return updated


async def record_event(conn: asyncpg.Connection, row: asyncpg.Record, seq: int, old: str | None, event: str,
                       actor: str, correlation_id: str, metadata: dict[str, Any]) -> None:
    """The lifecycle event and its outbox message `billing.<event>.v1` (never the payout method's token)."""
    tid = transition_id(row["account_id"], seq)
    tenant_id = str(row["tenant_id"])
    await conn.execute(
        """INSERT INTO paysaga.connected_account_events (transition_id, tenant_id, account_id, seq, type, old_status,
               new_status, metadata, actor, correlation_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        tid, tenant_id, row["account_id"], seq, event, old, row["onboarding_status"], metadata, actor,
        correlation_id)
    await outbox.enqueue(conn, tenant_id, tid, event, {
        "old_status": old, "new_status": row["onboarding_status"], "correlation_id": correlation_id,
        "metadata": metadata, "connected_account": outbox_view(row)})


def outbox_view(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["account_id"], "country": row["country"], "settlement_currency": row["settlement_currency"],
            "onboarding_status": row["onboarding_status"], "provider_account_id": row["provider_account_id"],
            "payout_method_last4": row["payout_method_last4"]}


async def list_page(conn: asyncpg.Connection, limit: int, starting_after: str | None, onboarding: str | None
                    ) -> tuple[list[asyncpg.Record], bool]:
    """Newest first, keyset-paginated; LookupError when the cursor names no account."""
    cursor = None
    if starting_after:
        cursor = await conn.fetchrow(
            "SELECT created_at, account_id FROM paysaga.connected_accounts WHERE account_id = $1", starting_after)
        if cursor is None:
            raise LookupError(starting_after)
    rows = await conn.fetch(
        """SELECT * FROM paysaga.connected_accounts
            WHERE ($1::timestamptz IS NULL OR (created_at, account_id) < ($1, $2))
              AND ($3::text IS NULL OR onboarding_status = $3)
            ORDER BY created_at DESC, account_id DESC LIMIT $4""",
        cursor["created_at"] if cursor else None, cursor["account_id"] if cursor else None, onboarding, limit + 1)
    return list(rows[:limit]), len(rows) > limit


async def page_by_id(conn: asyncpg.Connection, after: str | None, limit: int, only: str | None = None
                     ) -> list[asyncpg.Record]:
    """Accounts in id order after `after` (a payout run's batches), or just `only`."""
    return list(await conn.fetch(
        """SELECT * FROM paysaga.connected_accounts
            WHERE ($1::text IS NULL OR account_id > $1) AND ($2::text IS NULL OR account_id = $2)
            ORDER BY account_id LIMIT $3""", after, only, limit))


async def of_provider(conn: asyncpg.Connection, provider_account_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM paysaga.connected_accounts WHERE provider_account_id = $1",
                               provider_account_id)


async def provider_ids(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT provider_account_id FROM paysaga.connected_accounts WHERE provider_account_id IS NOT NULL "
        "ORDER BY account_id")
    return [r["provider_account_id"] for r in rows]


# --- the tenant's settings ------------------------------------------------------------------------------------
async def settings_of(conn: asyncpg.Connection) -> TenantSettings:
    row = await conn.fetchrow("SELECT * FROM paysaga.tenant_settings")
    if row is None:
        return TenantSettings()
    return TenantSettings(settlement_currency=row["settlement_currency"],
                          payout_approval_required=row["payout_approval_required"],
                          payout_approval_hours=row["payout_approval_hours"],
                          payout_reminder_hours=row["payout_reminder_hours"])


async def put_settings(conn: asyncpg.Connection, tenant_id: str, settings: TenantSettings) -> TenantSettings:
    await conn.execute(
        """INSERT INTO paysaga.tenant_settings (tenant_id, settlement_currency, payout_approval_required,
               payout_approval_hours, payout_reminder_hours) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (tenant_id) DO UPDATE SET settlement_currency = EXCLUDED.settlement_currency,
               payout_approval_required = EXCLUDED.payout_approval_required,
               payout_approval_hours = EXCLUDED.payout_approval_hours,
               payout_reminder_hours = EXCLUDED.payout_reminder_hours, updated_at = now()""",
        tenant_id, settings.settlement_currency, settings.payout_approval_required, settings.payout_approval_hours,
        settings.payout_reminder_hours)
    await outbox.enqueue(conn, tenant_id, f"evt_tenant_settings_{tenant_id}_{await _now_micros(conn)}",
                         "tenant.settings_updated", {"settings": settings.model_dump(mode="json")})
    return await settings_of(conn)


async def _now_micros(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint"))
