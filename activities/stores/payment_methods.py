"""Payment methods: provider tokens with the card's display data. Never a card number."""

from __future__ import annotations

import asyncpg

from activities.providers.base import CardDetails

_ACTIVE_FINGERPRINT = "(tenant_id, customer_id, fingerprint) WHERE detached_at IS NULL AND fingerprint IS NOT NULL"


async def insert_unless_duplicate(
    conn: asyncpg.Connection, payment_method_id: str, tenant_id: str, customer_id: str, provider: str, token: str,
    card: CardDetails,
) -> asyncpg.Record | None:
    """The new method, or None when the customer already holds an active method for the same card."""
    return await conn.fetchrow(
        f"""INSERT INTO paysaga.payment_methods (payment_method_id, tenant_id, customer_id, provider,
                provider_token, brand, last4, exp_month, exp_year, fingerprint, country)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            ON CONFLICT {_ACTIVE_FINGERPRINT} DO NOTHING RETURNING *""",
        payment_method_id, tenant_id, customer_id, provider, token, card.brand, card.last4, card.exp_month,
        card.exp_year, card.fingerprint, card.country,
    )


async def active_by_fingerprint(conn: asyncpg.Connection, customer_id: str, fingerprint: str | None
                                ) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT * FROM paysaga.payment_methods
            WHERE customer_id = $1 AND fingerprint = $2 AND detached_at IS NULL""", customer_id, fingerprint)


async def list_for_customer(conn: asyncpg.Connection, customer_id: str, include_detached: bool
                            ) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT * FROM paysaga.payment_methods WHERE customer_id = $1 AND ($2 OR detached_at IS NULL)
            ORDER BY created_at DESC, payment_method_id DESC""", customer_id, include_detached)


async def fetch(conn: asyncpg.Connection, payment_method_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM paysaga.payment_methods WHERE payment_method_id = $1",
                               payment_method_id)


async def provider_token(conn: asyncpg.Connection, payment_method_id: str) -> str | None:
    return await conn.fetchval("SELECT provider_token FROM paysaga.payment_methods WHERE payment_method_id = $1",
                               payment_method_id)


async def detach(conn: asyncpg.Connection, payment_method_id: str) -> asyncpg.Record | None:
    """The method as detached now, or None if it was detached already (or does not exist)."""
    return await conn.fetchrow(
        """UPDATE paysaga.payment_methods SET detached_at = now()
            WHERE payment_method_id = $1 AND detached_at IS NULL RETURNING *""", payment_method_id)
