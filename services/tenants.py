"""Tenants and API keys: who may call, as which tenant, with which roles. Keys are shown once; only their
SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from activities.stores import audit as audit_store
from activities.stores import tenants as store
from contracts.auth import ROLES, Principal
from paysaga.db import connect

KEY_PREFIX = "psk_"
OPERATOR = "cli"


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
    async with as_tenant(admin_url, tenant_id) as conn:
        await store.insert_tenant(conn, tenant_id, name)
        await store.insert_key(conn, key_id, tenant_id, key_hash, roles)
    return tenant_id, secret


async def list_tenants(admin_url: str) -> list[dict[str, Any]]:
    async with _owner(admin_url) as conn:
        return [dict(r) for r in await store.list_tenants(conn)]


async def resolve_tenant(admin_url: str, id_or_name: str) -> str:
    """The tenant id for an id or a (unique) name; ValueError otherwise."""
    async with _owner(admin_url) as conn:
        found = await store.find_tenants(conn, id_or_name)
    if not found:
        raise ValueError(f"no tenant {id_or_name!r}")
    if len(found) > 1:
        raise ValueError(f"{len(found)} tenants are named {id_or_name!r}; name one by id: "
                         + ", ".join(r["tenant_id"] for r in found))
    return found[0]["tenant_id"]


async def create_key(admin_url: str, tenant: str, roles: list[str], name: str | None = None) -> tuple[str, str, str]:
    """(tenant_id, key_id, api key shown once) for a new key of `tenant` (an id or a name)."""
    check_roles(roles)
    tenant_id = await resolve_tenant(admin_url, tenant)
    key_id, secret, key_hash = new_api_key()
    async with as_tenant(admin_url, tenant_id) as conn:
        await store.insert_named_key(conn, key_id, tenant_id, key_hash, roles, name)
        await _audit(conn, "api_key.create", "api_key", key_id, roles=roles, name=name)
    return tenant_id, key_id, secret


async def list_keys(admin_url: str, tenant: str) -> list[dict[str, Any]]:
    tenant_id = await resolve_tenant(admin_url, tenant)
    async with as_tenant(admin_url, tenant_id) as conn:
        return [dict(r) for r in await store.list_keys(conn, tenant_id)]


async def revoke_key(admin_url: str, key_id: str) -> dict[str, Any]:
    """Revoked at once: authentication reads the key on every request. Idempotent. ValueError if unknown."""
    async with _owner(admin_url) as conn, conn.transaction():
        row = await store.revoke_key(conn, key_id)
        if row is None:
            raise ValueError(f"no key {key_id!r}")
        await conn.execute("SELECT set_config('app.tenant_id', $1, true)", row["tenant_id"])
        await _audit(conn, "api_key.revoke", "api_key", key_id)
    return dict(row)


@asynccontextmanager
async def _owner(admin_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(admin_url)
    try:
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def as_tenant(admin_url: str, tenant_id: str) -> AsyncIterator[asyncpg.Connection]:
    """A transaction as the owner acting for one tenant (the owner is subject to FORCE ROW LEVEL SECURITY too)."""
    async with _owner(admin_url) as conn, conn.transaction():
        await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant_id)
        yield conn


async def _audit(conn: asyncpg.Connection, action: str, resource_type: str, resource_id: str, **details: Any) -> None:
    """Key administration is recorded in the tenant's audit trail, by the operator's command line."""
    await audit_store.append(conn, OPERATOR, action, resource_type, resource_id, None, None, details)
