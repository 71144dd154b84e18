"""Persistence of the ledger: journal entries posted in the caller's transaction (the one that changes the state
the entry accounts for), their accounts created on first use, balances and statements read back."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from domain.ledger import Account, AccountCode, JournalEntry, Line


async def post(conn: asyncpg.Connection, tenant_id: str, entry: JournalEntry) -> bool:
    """Post `entry` once: False when an entry of that id (the same business event) is already there."""
    posted = await conn.fetchval(
        """INSERT INTO paysaga.journal_entries (tenant_id, entry_id, source_type, source_id, event, memo, reverses)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING true""",
        tenant_id, entry.entry_id, entry.source_type, entry.source_id, entry.event, entry.memo, entry.reverses)
    if not posted:
        return False
    await ensure_accounts(conn, tenant_id, {line.account for line in entry.lines})
    await conn.execute(
        """INSERT INTO paysaga.journal_lines (tenant_id, entry_id, line_no, account_id, currency, amount_micros)
           SELECT $1, $2, n, a, c, m
             FROM unnest($3::text[], $4::text[], $5::bigint[]) WITH ORDINALITY AS l(a, c, m, n)""",
        tenant_id, entry.entry_id, [line.account.account_id for line in entry.lines],
        [line.currency for line in entry.lines], [line.amount_micros for line in entry.lines])
    return True


async def ensure_accounts(conn: asyncpg.Connection, tenant_id: str, accounts: set[Account]) -> None:
    ordered = sorted(accounts, key=lambda a: a.account_id)  # one order everywhere: no deadlock between posters
    await conn.execute(
        """INSERT INTO paysaga.ledger_accounts (tenant_id, account_id, code, subject, currency, type)
           SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
           ON CONFLICT DO NOTHING""",
        tenant_id, [a.account_id for a in ordered], [a.code.value for a in ordered], [a.subject for a in ordered],
        [a.currency for a in ordered], [a.type.value for a in ordered])


async def accounts_with_balances(conn: asyncpg.Connection, at: datetime | None = None) -> list[asyncpg.Record]:
    """Every account of the tenant and its balance (debits minus credits), as of `at` if given."""
    return await conn.fetch(
        """SELECT a.account_id, a.code, a.subject, a.currency, a.type, a.created_at,
                  coalesce(sum(l.amount_micros) FILTER (WHERE $1::timestamptz IS NULL OR e.posted_at <= $1),
                           0)::bigint AS balance_micros,
                  count(l.entry_id) FILTER (WHERE $1::timestamptz IS NULL OR e.posted_at <= $1) AS lines
             FROM paysaga.ledger_accounts a
             LEFT JOIN paysaga.journal_lines l USING (tenant_id, account_id)
             LEFT JOIN paysaga.journal_entries e ON e.tenant_id = l.tenant_id AND e.entry_id = l.entry_id
            GROUP BY a.tenant_id, a.account_id
            ORDER BY a.currency, a.code, a.subject NULLS FIRST""", at)


async def account(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM paysaga.ledger_accounts WHERE account_id = $1", account_id)


async def statement(conn: asyncpg.Connection, account_id: str, limit: int, before: str | None
                    ) -> tuple[list[asyncpg.Record], bool]:
    """An account's lines with their entries, newest first, keyset-paginated after the entry `before`; LookupError
    if that entry has no line on the account."""
    cursor = None
    if before:
        cursor = await conn.fetchrow(
            """SELECT e.posted_at, e.entry_id FROM paysaga.journal_entries e JOIN paysaga.journal_lines l
                   USING (tenant_id, entry_id) WHERE l.account_id = $1 AND e.entry_id = $2 LIMIT 1""",
            account_id, before)
        if cursor is None:
            raise LookupError(before)
    rows = await conn.fetch(
        """SELECT e.entry_id, e.source_type, e.source_id, e.event, e.memo, e.reverses, e.posted_at,
                  l.line_no, l.amount_micros, l.currency
             FROM paysaga.journal_lines l JOIN paysaga.journal_entries e USING (tenant_id, entry_id)
            WHERE l.account_id = $1 AND ($2::timestamptz IS NULL OR (e.posted_at, e.entry_id) < ($2, $3))
            ORDER BY e.posted_at DESC, e.entry_id DESC, l.line_no DESC LIMIT $4""",
        account_id, cursor["posted_at"] if cursor else None, cursor["entry_id"] if cursor else None, limit + 1)
    return rows[:limit], len(rows) > limit


async def entries_of(conn: asyncpg.Connection, source_type: str, source_id: str) -> list[asyncpg.Record]:
    """The lines of every entry a business object caused (tests and audits)."""
    return await conn.fetch(
        """SELECT e.entry_id, e.event, l.account_id, l.currency, l.amount_micros
             FROM paysaga.journal_entries e JOIN paysaga.journal_lines l USING (tenant_id, entry_id)
            WHERE e.source_type = $1 AND e.source_id = $2 ORDER BY e.posted_at, e.entry_id, l.line_no""",
        source_type, source_id)


def _entries(rows: list[asyncpg.Record]) -> list[tuple[JournalEntry, datetime]]:
    """Rows of entries joined with their lines and accounts (ordered by entry) as the domain's entries."""
    out: list[tuple[JournalEntry, datetime]] = []
    current: list[asyncpg.Record] = []

    def close() -> None:
        first = current[0]
        lines = [Line(Account(AccountCode(r["code"]), r["currency"], r["subject"]), r["amount_micros"])
                 for r in current]
        out.append((JournalEntry(first["entry_id"], first["source_type"], first["source_id"], first["event"],
                                 tuple(lines), first["memo"], first["reverses"]), first["posted_at"]))

    for row in rows:
        if current and row["entry_id"] != current[0]["entry_id"]:
            close()
            current = []
        current.append(row)
    if current:
        close()
    return out


_ENTRY_ROWS = """SELECT e.entry_id, e.source_type, e.source_id, e.event, e.memo, e.reverses, e.posted_at,
                        l.line_no, l.amount_micros, a.code, a.subject, a.currency
                   FROM paysaga.journal_entries e
                   JOIN paysaga.journal_lines l USING (tenant_id, entry_id)
                   JOIN paysaga.ledger_accounts a ON a.tenant_id = l.tenant_id AND a.account_id = l.account_id"""


async def entries_touching(conn: asyncpg.Connection, account_ids: list[str]) -> list[tuple[JournalEntry, datetime]]:
    """Every entry with a line on one of these accounts, whole (all its lines), oldest first."""
    rows = await conn.fetch(
        f"""{_ENTRY_ROWS}
            WHERE e.entry_id IN (SELECT entry_id FROM paysaga.journal_lines WHERE account_id = ANY($1::text[]))
            ORDER BY e.posted_at, e.entry_id, l.line_no""", account_ids)
    return _entries(list(rows))


async def entry_of(conn: asyncpg.Connection, entry_id: str) -> JournalEntry | None:
    found = _entries(list(await conn.fetch(f"{_ENTRY_ROWS} WHERE e.entry_id = $1 ORDER BY l.line_no", entry_id)))
    return found[0][0] if found else None
