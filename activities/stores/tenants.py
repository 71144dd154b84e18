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


async def list_tenants(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every tenant with its number of active keys (an owner's connection: it sees all tenants)."""
    return await conn.fetch(
        """SELECT t.tenant_id::text, t.name, t.created_at,
                  count(k.key_id) FILTER (WHERE k.revoked_at IS NULL) AS active_keys
             FROM paysaga.tenants t LEFT JOIN paysaga.api_keys k USING (tenant_id)
            GROUP BY t.tenant_id ORDER BY t.created_at, t.tenant_id""")


async def find_tenants(conn: asyncpg.Connection, id_or_name: str) -> list[asyncpg.Record]:
    """The tenants whose id is, or whose name is, `id_or_name`."""
    return await conn.fetch(
        "SELECT tenant_id::text, name FROM paysaga.tenants WHERE tenant_id::text = $1 OR name = $1", id_or_name)


async def insert_named_key(conn: asyncpg.Connection, key_id: str, tenant_id: str, key_hash: bytes, roles: list[str],
                           name: str | None) -> None:
    await conn.execute(
        "INSERT INTO paysaga.api_keys (key_id, tenant_id, key_hash, roles, name) VALUES ($1, $2, $3, $4, $5)",
        key_id, tenant_id, key_hash, roles, name)


async def list_keys(conn: asyncpg.Connection, tenant_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT key_id, name, roles, created_at, last_used_at, revoked_at FROM paysaga.api_keys
            WHERE tenant_id = $1 ORDER BY created_at, key_id""", tenant_id)


async def revoke_key(conn: asyncpg.Connection, key_id: str) -> asyncpg.Record | None:
    """The key, revoked now (or when it already was); None if there is no such key."""
    row = await conn.fetchrow(
        """UPDATE paysaga.api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = $1
           RETURNING key_id, tenant_id::text, name, roles, revoked_at""", key_id)
    return row
