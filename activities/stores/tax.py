"""Persistence of tax: the seller's profile and registrations, committed transactions and their reversals.

Transactions and reversals are append-only and idempotent by reference (`ON CONFLICT DO NOTHING`, then the row
that is there is the answer). The conflict target is left open on purpose: a retry racing the first insert can
collide on the id's unique index before the reference's, and either collision means "already written".
Reversals of one transaction take `paysaga.tax_reversal_lock_key` first, so they queue and each is computed from
the ones before it; the table's trigger checks the caps again under that lock.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import date
from typing import Any

import asyncpg

from contracts.tax import (
    Address,
    SellerProfile,
    TaxId,
    TaxLineQuote,
    TaxQuote,
    TaxRegistration,
    TaxReversal,
    TaxTransaction,
)

# --- the seller --------------------------------------------------------------------------------------------------


async def fetch_profile(conn: asyncpg.Connection) -> SellerProfile | None:
    row = await conn.fetchrow(
        "SELECT legal_name, country, state, postal_code, city, line1, line2, tax_ids FROM paysaga.tenant_profiles")
    if row is None:
        return None
    address = Address(country=row["country"], state=row["state"], postal_code=row["postal_code"],
                      city=row["city"], line1=row["line1"], line2=row["line2"])
    return SellerProfile(legal_name=row["legal_name"], address=address,
                         tax_ids=[TaxId.model_validate(t) for t in row["tax_ids"]])


async def upsert_profile(conn: asyncpg.Connection, tenant_id: str, profile: SellerProfile) -> None:
    a = profile.address
    await conn.execute(
        """INSERT INTO paysaga.tenant_profiles (tenant_id, legal_name, country, state, postal_code, city, line1,
               line2, tax_ids) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (tenant_id) DO UPDATE SET legal_name = EXCLUDED.legal_name, country = EXCLUDED.country,
               state = EXCLUDED.state, postal_code = EXCLUDED.postal_code, city = EXCLUDED.city,
               line1 = EXCLUDED.line1, line2 = EXCLUDED.line2, tax_ids = EXCLUDED.tax_ids, updated_at = now()""",
        tenant_id, profile.legal_name, a.country, a.state, a.postal_code, a.city, a.line1, a.line2,
        [t.model_dump() for t in profile.tax_ids],
    )


async def list_registrations(conn: asyncpg.Connection) -> list[TaxRegistration]:
    """Every registration of the transaction's tenant, past ones too (a quote picks those active on its day)."""
    rows = await conn.fetch(
        """SELECT country, state, type, active_from, active_until FROM paysaga.tax_registrations
            ORDER BY country, state NULLS FIRST, active_from, registration_id""")
    return [TaxRegistration.model_validate(dict(r)) for r in rows]


async def add_registration(conn: asyncpg.Connection, registration_id: str, tenant_id: str,
                           registration: TaxRegistration) -> None:
    await conn.execute(
        """INSERT INTO paysaga.tax_registrations (registration_id, tenant_id, country, state, type, active_from,
               active_until) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        registration_id, tenant_id, registration.country, registration.state, registration.type,
        registration.active_from, registration.active_until,
    )


async def end_registration(conn: asyncpg.Connection, registration_id: str, active_until: date) -> bool:
    status = await conn.execute(
        "UPDATE paysaga.tax_registrations SET active_until = $2 WHERE registration_id = $1 AND active_until IS NULL",
        registration_id, active_until)
    return status == "UPDATE 1"


# --- transactions --------------------------------------------------------------------------------------------------


def _lines(value: Any) -> list[TaxLineQuote]:
    return [TaxLineQuote.model_validate(line) for line in value]


def _dump(lines: list[TaxLineQuote]) -> list[dict[str, Any]]:
    return [line.model_dump(mode="json") for line in lines]


async def fetch_transaction(conn: asyncpg.Connection, reference: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT reference, transaction_id, provider, quote_id, currency, tax_date, tax_micros, lines, notes,
                  provider_line_ids FROM paysaga.tax_transactions WHERE reference = $1""", reference)


def to_transaction(row: asyncpg.Record) -> TaxTransaction:
    return TaxTransaction(transaction_id=row["transaction_id"], provider=row["provider"], reference=row["reference"],
                          currency=row["currency"], tax_micros=row["tax_micros"], lines=_lines(row["lines"]))


async def insert_transaction(conn: asyncpg.Connection, quote: TaxQuote, transaction_id: str,
                             provider_line_ids: dict[str, str]) -> asyncpg.Record:
    """The committed row for `quote.reference`: this one, or the one a previous commit left (the caller
    compares its quote id)."""
    await conn.execute(
        """INSERT INTO paysaga.tax_transactions (tenant_id, reference, transaction_id, provider, quote_id, currency,
               tax_date, tax_micros, lines, notes, provider_line_ids)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING""",
        quote.tenant_id, quote.reference, transaction_id, quote.provider, quote.quote_id, quote.currency,
        quote.tax_date, quote.tax_micros, _dump(quote.lines), quote.notes, provider_line_ids,
    )
    return await _written(fetch_transaction(conn, quote.reference), quote.reference)


async def _written(fetch: Awaitable[asyncpg.Record | None], reference: str) -> asyncpg.Record:
    # Just written, or written before by a commit with the same reference: either way the row is there.
    row = await fetch
    if row is None:
        raise RuntimeError(f"tax record {reference} vanished right after it was written")
    return row


# --- reversals -----------------------------------------------------------------------------------------------------


async def lock_reversals(conn: asyncpg.Connection, tenant_id: str, original_reference: str) -> None:
    """Queue behind any other reversal of the same transaction until this transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(paysaga.tax_reversal_lock_key($1, $2))",
                       tenant_id, original_reference)


async def fetch_reversal(conn: asyncpg.Connection, reference: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT reference, reversal_id, original_reference, provider, amount_micros, tax_micros, credits, lines
             FROM paysaga.tax_reversals WHERE reference = $1""", reference)


def to_reversal(row: asyncpg.Record) -> TaxReversal:
    return TaxReversal(reversal_id=row["reversal_id"], reference=row["reference"],
                       original_reference=row["original_reference"], amount_micros=row["amount_micros"],
                       tax_micros=row["tax_micros"], lines=_lines(row["lines"]))


async def prior_credits(conn: asyncpg.Connection, original_reference: str) -> dict[str, int]:
    """line_id → the part of the line's amount already credited by earlier reversals."""
    rows = await conn.fetch(
        """SELECT c.key AS line_id, sum(c.value::bigint) AS credited
             FROM paysaga.tax_reversals r, jsonb_each_text(r.credits) AS c
            WHERE r.original_reference = $1 GROUP BY c.key""", original_reference)
    return {r["line_id"]: int(r["credited"]) for r in rows}


async def insert_reversal(conn: asyncpg.Connection, tenant_id: str, reversal: TaxReversal, provider: str,
                          credits: dict[str, int]) -> asyncpg.Record:
    await conn.execute(
        """INSERT INTO paysaga.tax_reversals (tenant_id, reference, reversal_id, original_reference, provider,
               amount_micros, tax_micros, credits, lines)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING""",
        tenant_id, reversal.reference, reversal.reversal_id, reversal.original_reference, provider,
        reversal.amount_micros, reversal.tax_micros, credits, _dump(reversal.lines),
    )
    return await _written(fetch_reversal(conn, reversal.reference), reversal.reference)


async def registration_rows(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """The tenant's registrations with their ids, for the API."""
    return await conn.fetch(
        """SELECT registration_id, country, state, type, active_from, active_until, created_at
             FROM paysaga.tax_registrations ORDER BY country, state NULLS FIRST, active_from, registration_id""")
