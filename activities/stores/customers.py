"""Customers: who pays, and the outbox message that announces a new one."""

from __future__ import annotations

from typing import Any

import asyncpg

from activities.stores import outbox


async def insert(conn: asyncpg.Connection, tenant_id: str, customer_id: str, email: str | None, name: str | None,
                 country: str | None, metadata: dict[str, Any]) -> asyncpg.Record:
    row = await conn.fetchrow(
        """INSERT INTO paysaga.customers (customer_id, tenant_id, email, name, country, metadata)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
        customer_id, tenant_id, email, name, country, metadata,
    )
    await outbox.enqueue(conn, tenant_id, f"evt_{customer_id}_created", "customer.created",
                         {"customer": {"id": customer_id, "country": country}})
    return row


async def fetch(conn: asyncpg.Connection, customer_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM paysaga.customers WHERE customer_id = $1", customer_id)


async def exists(conn: asyncpg.Connection, customer_id: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM paysaga.customers WHERE customer_id = $1", customer_id))
