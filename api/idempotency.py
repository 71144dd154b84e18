"""The `Idempotency-Key` layer: same key + same body → the first answer again; same key + other body → 422;
same key while the first request still runs → 409. Keys are kept `idempotency_ttl_hours` (≥ 24 h)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from api.problems import Problem
from paysaga.db import tenant_tx

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Claim:
    """A key this request now holds: `replay` is set when the answer already exists."""

    resource_id: str
    replay: tuple[int, dict[str, Any]] | None = None


def request_fingerprint(method: str, path: str, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def require_key(raw: str | None) -> str:
    if raw is None or not raw.strip():
        raise Problem(400, "idempotency-key-required", "Idempotency-Key required",
                      "Send an Idempotency-Key header (for example a UUID) so a retry cannot charge twice.")
    if len(raw) > MAX_KEY_LENGTH or not raw.isprintable():
        raise Problem(400, "idempotency-key-invalid", "Invalid Idempotency-Key",
                      f"The key must be printable and at most {MAX_KEY_LENGTH} characters.")
    return raw


async def claim(
    pool: asyncpg.Pool, tenant_id: str, key: str, method: str, path: str, fingerprint: str, new_resource_id: str,
    ttl_hours: int, lease_seconds: int,
) -> Claim:
    async with tenant_tx(pool, tenant_id) as conn:
        # Expired keys are forgotten lazily, so an old key may be reused after the TTL.
        await conn.execute("DELETE FROM paysaga.idempotency_keys WHERE idem_key = $1 AND expires_at < now()", key)
        inserted = await conn.fetchval(
            """INSERT INTO paysaga.idempotency_keys (tenant_id, idem_key, request_method, request_path,
                   request_hash, state, locked_until, resource_id, expires_at)
               VALUES ($1, $2, $3, $4, $5, 'in_flight', now() + make_interval(secs => $6), $7,
                       now() + make_interval(hours => $8))
               ON CONFLICT DO NOTHING RETURNING true""",
            tenant_id, key, method, path, fingerprint, float(lease_seconds), new_resource_id, ttl_hours,
        )
        if inserted:
            return Claim(new_resource_id)
        row = await conn.fetchrow(
            "SELECT *, locked_until > now() AS leased FROM paysaga.idempotency_keys WHERE idem_key = $1 FOR UPDATE",
            key,
        )
        if row["request_hash"] != fingerprint:
            raise Problem(422, "idempotency-key-reused", "Idempotency-Key reused",
                          "This Idempotency-Key was used with a different request; use a new key.")
        if row["state"] == "done":
            return Claim(row["resource_id"], (row["response_status"], row["response_body"]))
        if row["leased"]:
            raise Problem(409, "idempotency-key-in-flight", "Request in progress",
                          "A request with this Idempotency-Key is still being processed; retry shortly.")
        # The holder of the lease died: take over and finish the same resource.
        await conn.execute(
            "UPDATE paysaga.idempotency_keys SET locked_until = now() + make_interval(secs => $2) "
            "WHERE idem_key = $1",
            key, float(lease_seconds),
        )
        return Claim(row["resource_id"])


async def complete(pool: asyncpg.Pool, tenant_id: str, key: str, status: int, body: dict[str, Any]) -> None:
    async with tenant_tx(pool, tenant_id) as conn:
        await conn.execute(
            """UPDATE paysaga.idempotency_keys SET state = 'done', response_status = $2, response_body = $3,
                   locked_until = NULL WHERE idem_key = $1 AND state = 'in_flight'""",
            key, status, body,
        )


async def release(pool: asyncpg.Pool, tenant_id: str, key: str) -> None:
    """After an unexpected failure: let the client retry at once (the resource id is kept for it)."""
    async with tenant_tx(pool, tenant_id) as conn:
        await conn.execute(
            "UPDATE paysaga.idempotency_keys SET locked_until = now() WHERE idem_key = $1 AND state = 'in_flight'",
            key,
        )
