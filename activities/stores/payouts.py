"""Persistence of payout runs, their lines and their payouts: every change of a run or a payout writes its row,
its lifecycle event, its outbox message (`billing.payout.*.v1`) and its journal entry in one transaction."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import asyncpg

from activities.stores import outbox
from contracts.payouts import RunState
from domain.money import Money
from domain.payment import transition_id
from domain.payouts import PayoutLine, PayoutPeriod

LINE_AMOUNTS = ("brought_forward", "gross", "fees", "refunds", "disputes", "other", "balance", "reserve", "net",
                "carried_forward", "pending")


# --- runs -----------------------------------------------------------------------------------------------------
async def insert_run(conn: asyncpg.Connection, *, tenant_id: str, run_id: str, as_of: date, trigger: str,
                     requested_by: str, connected_account_id: str | None, approval_required: bool, workflow_id: str,
                     idempotency_key: str | None, correlation_id: str) -> asyncpg.Record:
    """The run as it opens (computing); a second call for the same run changes nothing."""
    row = await conn.fetchrow(
        """INSERT INTO paysaga.payout_runs (run_id, tenant_id, as_of, trigger, requested_by, connected_account_id,
               approval_required, workflow_id, idempotency_key)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING *""",
        run_id, tenant_id, as_of, trigger, requested_by, connected_account_id, approval_required, workflow_id,
        idempotency_key)
    if row is None:
        existing = await fetch_run(conn, run_id)
        assert existing is not None
        return existing
    await record_run_event(conn, row, 1, None, "payout.run_opened", requested_by, correlation_id,
                           {"as_of": as_of.isoformat(), "trigger": trigger,
                            "connected_account_id": connected_account_id})
    return row


async def fetch_run(conn: asyncpg.Connection, run_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM paysaga.payout_runs WHERE run_id = $1{' FOR UPDATE' if lock else ''}", run_id)


async def change_run(conn: asyncpg.Connection, row: asyncpg.Record, status: str, actor: str, correlation_id: str,
                     **columns: Any) -> asyncpg.Record:
    seq = row["event_seq"] + 1
    sets = {"status": status, "event_seq": seq, **columns}
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(sets, start=2))
    updated = await conn.fetchrow(
        f"UPDATE paysaga.payout_runs SET {assignments} WHERE run_id = $1 RETURNING *", row["run_id"], *sets.values())
    await record_run_event(conn, updated, seq, row["status"], f"payout.run_{status}", actor, correlation_id,
                           {k: (v.isoformat() if isinstance(v, datetime | date) else v) for k, v in columns.items()})
    return updated


async def record_run_event(conn: asyncpg.Connection, row: asyncpg.Record, seq: int, old: str | None, event: str,
                           actor: str, correlation_id: str, metadata: dict[str, Any]) -> None:
    tid = transition_id(row["run_id"], seq)
    tenant_id = str(row["tenant_id"])
    await conn.execute(
        """INSERT INTO paysaga.payout_run_events (transition_id, tenant_id, run_id, seq, type, old_status, new_status,
               metadata, actor, correlation_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        tid, tenant_id, row["run_id"], seq, event, old, row["status"], metadata, actor, correlation_id)
    await outbox.enqueue(conn, tenant_id, tid, event, {
        "old_status": old, "new_status": row["status"], "correlation_id": correlation_id, "metadata": metadata,
        "payout_run": {"id": row["run_id"], "as_of": row["as_of"].isoformat(), "status": row["status"],
                       "accounts": row["accounts"], "payable": row["payable"]}})


async def run_state(conn: asyncpg.Connection, row: asyncpg.Record, approval_hours: int = 48,
                    reminder_hours: int = 24) -> RunState:
    counts = await conn.fetch("SELECT status, count(*) AS n FROM paysaga.payouts WHERE run_id = $1 GROUP BY status",
                              row["run_id"])
    totals = await conn.fetch(
        "SELECT currency, sum(net_micros)::bigint AS net FROM paysaga.payout_run_lines WHERE run_id = $1 "
        "AND decision = 'pay' GROUP BY currency ORDER BY currency", row["run_id"])
    return RunState(
        run_id=row["run_id"], tenant_id=str(row["tenant_id"]), status=row["status"], as_of=row["as_of"],
        trigger=row["trigger"], requested_by=row["requested_by"], connected_account_id=row["connected_account_id"],
        approval_required=row["approval_required"], approval_hours=approval_hours, reminder_hours=reminder_hours,
        approval_deadline=row["approval_deadline"], decided_by=row["decided_by"],
        decision_reason=row["decision_reason"], accounts=row["accounts"], payable=row["payable"],
        payouts={r["status"]: r["n"] for r in counts}, totals={r["currency"]: r["net"] for r in totals},
        event_seq=row["event_seq"], workflow_id=row["workflow_id"], created_at=row["created_at"],
        updated_at=row["updated_at"])


async def line_counts(conn: asyncpg.Connection, run_id: str) -> tuple[int, int]:
    row = await conn.fetchrow(
        """SELECT count(DISTINCT account_id) AS accounts, count(*) FILTER (WHERE decision = 'pay') AS payable
             FROM paysaga.payout_run_lines WHERE run_id = $1""", run_id)
    return row["accounts"], row["payable"]


async def list_runs(conn: asyncpg.Connection, limit: int, starting_after: str | None
                    ) -> tuple[list[asyncpg.Record], bool]:
    cursor = None
    if starting_after:
        cursor = await conn.fetchrow("SELECT created_at, run_id FROM paysaga.payout_runs WHERE run_id = $1",
                                     starting_after)
        if cursor is None:
            raise LookupError(starting_after)
    rows = await conn.fetch(
        """SELECT * FROM paysaga.payout_runs WHERE $1::timestamptz IS NULL OR (created_at, run_id) < ($1, $2)
            ORDER BY created_at DESC, run_id DESC LIMIT $3""",
        cursor["created_at"] if cursor else None, cursor["run_id"] if cursor else None, limit + 1)
    return list(rows[:limit]), len(rows) > limit


# --- the run's lines ------------------------------------------------------------------------------------------
async def insert_lines(conn: asyncpg.Connection, tenant_id: str, run_id: str, lines: list[PayoutLine]) -> None:
    """The run's report lines, written once (a retried page writes nothing again)."""
    if not lines:
        return
    columns = ["tenant_id", "run_id", "account_id", "currency", "period_start", "period_end", "payout_date",
               *(f"{a}_micros" for a in LINE_AMOUNTS), "decision", "settlement_currency", "settlement_net_micros",
               "fx_rate", "fx_as_of", "fx_source"]
    records = []
    for line in lines:
        fx = line.fx
        records.append((tenant_id, run_id, line.account_id, line.currency, line.period.start, line.period.end,
                        line.period.payout_date, *(getattr(line, a).micros for a in LINE_AMOUNTS),
                        line.decision.value, fx.target.currency if fx else None, fx.target.micros if fx else None,
                        fx.rate.decimal_string() if fx else None, fx.rate.as_of if fx else None,
                        fx.rate.source if fx else None))
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    await conn.executemany(
        f"""INSERT INTO paysaga.payout_run_lines ({", ".join(columns)}) VALUES ({placeholders})
            ON CONFLICT DO NOTHING""", records)


async def lines_of(conn: asyncpg.Connection, run_id: str, *, payable_only: bool = False, after: str | None = None,
                   limit: int | None = None) -> list[asyncpg.Record]:
    """The run's lines in (account, currency) order, after the "<account>/<currency>" cursor."""
    account, currency = after.split("/", 1) if after else (None, None)
    return list(await conn.fetch(
        """SELECT * FROM paysaga.payout_run_lines
            WHERE run_id = $1 AND (NOT $2 OR decision = 'pay')
              AND ($3::text IS NULL OR (account_id, currency) > ($3, $4::char(3)))
            ORDER BY account_id, currency LIMIT $5""", run_id, payable_only, account, currency, limit))


def line_period(row: asyncpg.Record) -> PayoutPeriod:
    return PayoutPeriod(row["period_start"], row["period_end"])


def line_json(row: asyncpg.Record) -> dict[str, Any]:
    currency = row["currency"]
    amounts = {a: Money(row[f"{a}_micros"], currency).to_decimal_string() for a in LINE_AMOUNTS}
    settlement = row["settlement_currency"]
    return {"account_id": row["account_id"], "currency": currency, "period_start": row["period_start"].isoformat(),
            "period_end": row["period_end"].isoformat(), "payout_date": row["payout_date"].isoformat(), **amounts,
            "decision": row["decision"], "settlement_currency": settlement,
            "settlement_net": (Money(row["settlement_net_micros"], settlement).to_decimal_string()
                               if settlement else None),
            "fx_rate": row["fx_rate"], "fx_as_of": row["fx_as_of"].isoformat() if row["fx_as_of"] else None,
            "fx_source": row["fx_source"]}


# --- payouts --------------------------------------------------------------------------------------------------
PAYOUT_COLUMNS = "*"


async def insert_payout(conn: asyncpg.Connection, *, tenant_id: str, payout_id: str, run_id: str, account_id: str,
                        amount: Money, period: PayoutPeriod, payout_key: str, transfer_key: str, provider: str,
                        workflow_id: str, actor: str) -> tuple[asyncpg.Record, bool]:
    """(payout, created): one per payout key, whatever run asks for it."""
    row = await conn.fetchrow(
        """INSERT INTO paysaga.payouts (payout_id, tenant_id, run_id, account_id, currency, amount_micros,
               period_start, period_end, payout_key, transfer_key, provider, workflow_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING RETURNING *""",
        payout_id, tenant_id, run_id, account_id, amount.currency, amount.micros, period.start, period.end,
        payout_key, transfer_key, provider, workflow_id)
    if row is None:
        existing = await conn.fetchrow("SELECT * FROM paysaga.payouts WHERE payout_key = $1", payout_key)
        assert existing is not None
        return existing, False
    await record_payout_event(conn, row, 1, None, "payout.created", actor, workflow_id, {})
    return row, True


async def fetch_payout(conn: asyncpg.Connection, payout_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM paysaga.payouts WHERE payout_id = $1{' FOR UPDATE' if lock else ''}", payout_id)


async def payout_of_provider(conn: asyncpg.Connection, provider_payout_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM paysaga.payouts WHERE provider_payout_id = $1", provider_payout_id)


async def owners_of_provider_payout(pool: asyncpg.Pool, provider_payout_id: str) -> list[asyncpg.Record]:
    """(tenant_id, payout_id) of the payout with this provider id, before any tenant is known."""
    return list(await pool.fetch("SELECT tenant_id::text, payout_id FROM paysaga.payout_by_provider_id($1)",
                                 provider_payout_id))


async def change_payout(conn: asyncpg.Connection, row: asyncpg.Record, event: str, actor: str, correlation_id: str,
                        metadata: dict[str, Any] | None = None, **columns: Any) -> asyncpg.Record:
    """Change the (locked) payout's columns with its lifecycle event and outbox message `billing.<event>.v1`."""
    seq = row["event_seq"] + 1
    sets = {**columns, "event_seq": seq}
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(sets, start=2))
    updated = await conn.fetchrow(
        f"UPDATE paysaga.payouts SET {assignments} WHERE payout_id = $1 RETURNING *", row["payout_id"],
        *sets.values())
    await record_payout_event(conn, updated, seq, row["status"], event, actor, correlation_id, metadata or {})
    return updated


async def record_payout_event(conn: asyncpg.Connection, row: asyncpg.Record, seq: int, old: str | None, event: str,
                              actor: str, correlation_id: str, metadata: dict[str, Any]) -> None:
    tid = transition_id(row["payout_id"], seq)
    tenant_id = str(row["tenant_id"])
    await conn.execute(
        """INSERT INTO paysaga.payout_events (transition_id, tenant_id, payout_id, seq, type, old_status, new_status,
               metadata, actor, correlation_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        tid, tenant_id, row["payout_id"], seq, event, old, row["status"], metadata, actor, correlation_id)
    await outbox.enqueue(conn, tenant_id, tid, event, {
        "old_status": old, "new_status": row["status"], "correlation_id": correlation_id, "metadata": metadata,
        "payout": payout_json(row)})


def payout_json(row: asyncpg.Record) -> dict[str, Any]:
    amount = Money(row["amount_micros"], row["currency"])
    arrived = row["destination_currency"]
    return json.loads(json.dumps({
        "id": row["payout_id"], "object": "payout", "run_id": row["run_id"], "account_id": row["account_id"],
        "status": row["status"], "amount": amount.to_decimal_string(), "amount_micros": amount.micros,
        "currency": amount.currency, "period_start": row["period_start"].isoformat(),
        "period_end": row["period_end"].isoformat(), "provider_transfer_id": row["provider_transfer_id"],
        "provider_payout_id": row["provider_payout_id"],
        "destination_amount": (Money(row["destination_amount_micros"], arrived).to_decimal_string()
                               if arrived and row["destination_amount_micros"] is not None else None),
        "destination_currency": arrived, "failure_code": row["failure_code"],
        "failure_message": row["failure_message"], "funds_returned": row["funds_returned"],
        "created_at": row["created_at"].isoformat(), "updated_at": row["updated_at"].isoformat()}))


async def payouts_of_run(conn: asyncpg.Connection, run_id: str, statuses: list[str] | None = None
                         ) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        """SELECT * FROM paysaga.payouts WHERE run_id = $1 AND ($2::text[] IS NULL OR status = ANY($2::text[]))
            ORDER BY account_id, currency""", run_id, statuses))


async def unreturned(conn: asyncpg.Connection, run_id: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT payout_id FROM paysaga.payouts WHERE run_id = $1 AND status IN ('failed', 'canceled') "
        "AND NOT funds_returned ORDER BY payout_id", run_id)
    return [r["payout_id"] for r in rows]


async def list_payouts(conn: asyncpg.Connection, limit: int, starting_after: str | None, account_id: str | None,
                       run_id: str | None) -> tuple[list[asyncpg.Record], bool]:
    cursor = None
    if starting_after:
        cursor = await conn.fetchrow("SELECT created_at, payout_id FROM paysaga.payouts WHERE payout_id = $1",
                                     starting_after)
        if cursor is None:
            raise LookupError(starting_after)
    rows = await conn.fetch(
        """SELECT * FROM paysaga.payouts
            WHERE ($1::timestamptz IS NULL OR (created_at, payout_id) < ($1, $2))
              AND ($3::text IS NULL OR account_id = $3) AND ($4::text IS NULL OR run_id = $4)
            ORDER BY created_at DESC, payout_id DESC LIMIT $5""",
        cursor["created_at"] if cursor else None, cursor["payout_id"] if cursor else None, account_id, run_id,
        limit + 1)
    return list(rows[:limit]), len(rows) > limit


async def payout_tenants(pool: asyncpg.Pool) -> list[str]:
    return [str(r["tenant_id"]) for r in await pool.fetch("SELECT tenant_id FROM paysaga.payout_tenants()")]
