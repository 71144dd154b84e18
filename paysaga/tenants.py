"""Tenant administration (owner connection): create a tenant and issue an API key."""

from __future__ import annotations

import uuid

import asyncpg

from api.auth import new_api_key

ROLES = ("payments", "finance", "admin")


async def create_tenant(admin_url: str, name: str, roles: list[str]) -> tuple[str, str]:
    """Returns (tenant_id, api key). The key is shown once; only its hash is stored."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; choose from {ROLES}")
    tenant_id = str(uuid.uuid4())
    key_id, secret, key_hash = new_api_key()
    conn = await asyncpg.connect(admin_url)
    try:
        async with conn.transaction():
            # The owner is subject to FORCE ROW LEVEL SECURITY too: act as the new tenant.
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant_id)
            await conn.execute("INSERT INTO paysaga.tenants (tenant_id, name) VALUES ($1, $2)", tenant_id, name)
            await conn.execute(
                "INSERT INTO paysaga.api_keys (key_id, tenant_id, key_hash, roles) VALUES ($1, $2, $3, $4)",
                key_id, tenant_id, key_hash, roles,
            )
    finally:
        await conn.close()
    return tenant_id, secret
