"""Tenants and their API keys. Only a key's SHA-256 is stored; authentication reads it through one narrow owner
function, since no tenant is known before the key is."""

from __future__ import annotations

import asyncpg


async def authenticate(pool: asyncpg.Pool, key_hash: bytes) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT tenant_id::text, key_id, roles FROM paysaga.authenticate($1)", key_hash)


async def insert_tenant(conn: asyncpg.Connection, tenant_id: str, name: str) -> None:
    await conn.execute("INSERT INTO paysaga.tenants (tenant_id, name) VALUES ($1, $2)", tenant_id, name)


async def insert_key(conn: asyncpg.Connection, key_id: str, tenant_id: str, key_hash: bytes, roles: list[str]) -> None:
    await conn.execute(
        "INSERT INTO paysaga.api_keys (key_id, tenant_id, key_hash, roles) VALUES ($1, $2, $3, $4)",
        key_id, tenant_id, key_hash, roles)
