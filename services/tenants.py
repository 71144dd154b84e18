"""Tenants and API keys: who may call, as which tenant, with which roles. Keys are shown once; only their
SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
import uuid

import asyncpg

from activities.stores import tenants as store
from contracts.auth import ROLES, Principal

KEY_PREFIX = "psk_"


def new_api_key() -> tuple[str, str, bytes]:
    """(key_id, secret shown once, hash to store)."""
    key_id = "key_" + secrets.token_hex(8)
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    return key_id, secret, hash_key(secret)


def hash_key(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def authenticate(pool: asyncpg.Pool, token: str, request_id: str | None = None) -> Principal | None:
    row = await store.authenticate(pool, hash_key(token))
    if row is None:
        return None
    return Principal(row["tenant_id"], row["key_id"], frozenset(row["roles"]), request_id)


def check_roles(roles: list[str]) -> None:
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; choose from {ROLES}")


async def create_tenant(admin_url: str, name: str, roles: list[str]) -> tuple[str, str]:
    """Returns (tenant_id, api key), over the owner's connection."""
    check_roles(roles)
    tenant_id = str(uuid.uuid4())
    key_id, secret, key_hash = new_api_key()
    conn = await asyncpg.connect(admin_url)
    try:
        async with conn.transaction():
            # The owner is subject to FORCE ROW LEVEL SECURITY too: act as the new tenant.
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant_id)
            await store.insert_tenant(conn, tenant_id, name)
            await store.insert_key(conn, key_id, tenant_id, key_hash, roles)
    finally:
        await conn.close()
    return tenant_id, secret
