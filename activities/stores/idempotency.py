"""Idempotency keys: the first answer to a request, kept so that its retries get the same answer."""

from __future__ import annotations

from typing import Any

import asyncpg


async def forget_expired(conn: asyncpg.Connection, key: str) -> None:
    """Expired keys are forgotten lazily, so an old key may be reused after its time to live."""
    await conn.execute("DELETE FROM paysaga.idempotency_keys WHERE idem_key = $1 AND expires_at < now()", key)


async def insert_in_flight(conn: asyncpg.Connection, tenant_id: str, key: str, method: str, path: str,
                           fingerprint: str, resource_id: str, lease_seconds: float, ttl_hours: int) -> bool:
    """Take the key for a new request; False when another request holds or held it."""
    return bool(await conn.fetchval(
        """INSERT INTO paysaga.idempotency_keys (tenant_id, idem_key, request_method, request_path,
               request_hash, state, locked_until, resource_id, expires_at)
           VALUES ($1, $2, $3, $4, $5, 'in_flight', now() + make_interval(secs => $6), $7,
                   now() + make_interval(hours => $8))
           ON CONFLICT DO NOTHING RETURNING true""",
        tenant_id, key, method, path, fingerprint, float(lease_seconds), resource_id, ttl_hours,
    ))


async def lock(conn: asyncpg.Connection, key: str) -> asyncpg.Record:
    """The key's row under a row lock, with `leased`: whether its holder's lease still runs."""
    return await conn.fetchrow(
        "SELECT *, locked_until > now() AS leased FROM paysaga.idempotency_keys WHERE idem_key = $1 FOR UPDATE",
        key)


async def renew_lease(conn: asyncpg.Connection, key: str, lease_seconds: float) -> None:
    await conn.execute(
        "UPDATE paysaga.idempotency_keys SET locked_until = now() + make_interval(secs => $2) WHERE idem_key = $1",
        key, float(lease_seconds))


async def complete(conn: asyncpg.Connection, key: str, status: int, body: dict[str, Any]) -> None:
    await conn.execute(
        """UPDATE paysaga.idempotency_keys SET state = 'done', response_status = $2, response_body = $3,
               locked_until = NULL WHERE idem_key = $1 AND state = 'in_flight'""",
        key, status, body)


async def release(conn: asyncpg.Connection, key: str) -> None:
    """End the lease at once, keeping the resource id for the retry."""
    await conn.execute(
        "UPDATE paysaga.idempotency_keys SET locked_until = now() WHERE idem_key = $1 AND state = 'in_flight'", key)
