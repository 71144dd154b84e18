"""The `Idempotency-Key` layer: same key + same body → the first answer again; same key + other body → 422;
same key while the first request still runs → 409. Keys are kept `idempotency_ttl_hours` (≥ 24 h)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from activities.stores import idempotency as store
from contracts.auth import Principal
from paysaga.db import tenant_tx
from services.context import AppContext
from services.errors import BadRequest, Conflict, ServiceError, Unprocessable

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Answer:
    """What a request answered (or answers again, `replayed`)."""

    status: int
    body: dict[str, Any]
    replayed: bool = False


@dataclass(frozen=True)
class Claim:
    """A key this request now holds: `replay` is set when the answer already exists."""

    resource_id: str
    replay: Answer | None = None


def request_fingerprint(method: str, path: str, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def require_key(raw: str | None) -> str:
    if raw is None or not raw.strip():
        raise BadRequest("idempotency-key-required", "Idempotency-Key required",
                         "Send an Idempotency-Key header (for example a UUID) so a retry cannot charge twice.")
    if len(raw) > MAX_KEY_LENGTH or not raw.isprintable():
        raise BadRequest("idempotency-key-invalid", "Invalid Idempotency-Key",
                         f"The key must be printable and at most {MAX_KEY_LENGTH} characters.")
    return raw


Check = Callable[[asyncpg.Connection], Awaitable[None]]
Record = Callable[[asyncpg.Connection, "Answer"], Awaitable[None]]


async def claim(ctx: AppContext, tenant_id: str, key: str, method: str, path: str, fingerprint: str,
                new_resource_id: str, check: Check | None = None) -> Claim:
    """Take the key; `check` runs first in the same transaction (a refusal leaves the key untaken)."""
    settings = ctx.settings
    async with tenant_tx(ctx.pool, tenant_id) as conn:
        if check is not None:
            await check(conn)
        await store.forget_expired(conn, key)
        if await store.insert_in_flight(conn, tenant_id, key, method, path, fingerprint, new_resource_id,
                                        settings.idempotency_lease_seconds, settings.idempotency_ttl_hours):
            return Claim(new_resource_id)
        row = await store.lock(conn, key)
        if row["request_hash"] != fingerprint:
            raise Unprocessable("idempotency-key-reused", "Idempotency-Key reused",
                                "This Idempotency-Key was used with a different request; use a new key.")
        if row["state"] == "done":
            return Claim(row["resource_id"], Answer(row["response_status"], row["response_body"], replayed=True))
        if row["leased"]:
            raise Conflict("idempotency-key-in-flight", "Request in progress",
                           "A request with this Idempotency-Key is still being processed; retry shortly.",
                           headers={"Retry-After": "1"})
        # The holder of the lease died: take over and finish the same resource.
        await store.renew_lease(conn, key, settings.idempotency_lease_seconds)
        return Claim(row["resource_id"])


async def complete(ctx: AppContext, tenant_id: str, key: str, answer: Answer, record: Record | None = None) -> None:
    """Store the answer; `record` (e.g. the audit row of what happened) commits with it."""
    async with tenant_tx(ctx.pool, tenant_id) as conn:
        await store.complete(conn, key, answer.status, answer.body)
        if record is not None:
            await record(conn, answer)


async def release(ctx: AppContext, tenant_id: str, key: str) -> None:
    """After an unexpected failure: let the client retry at once (the resource id is kept for it)."""
    async with tenant_tx(ctx.pool, tenant_id) as conn:
        await store.release(conn, key)


async def once(ctx: AppContext, who: Principal, key: str, path: str, body: dict[str, Any], new_id: str,
               act: Callable[[str], Awaitable[Answer]], *, final_errors: tuple[type[ServiceError], ...] = (),
               check: Check | None = None, record: Record | None = None) -> Answer:
    """Run `act(resource_id)` once per key: a retry gets the first answer again. Errors in `final_errors` are a
    final answer for the key too (stored as their problem document); any other failure lets the client retry.
    `check` runs in the claim's transaction, `record` in the completion's (one transaction each, not four)."""
    fingerprint = request_fingerprint("POST", path, body)
    held = await claim(ctx, who.tenant_id, key, "POST", path, fingerprint, new_id, check)
    if held.replay is not None:
        return held.replay
    try:
        answer = await act(held.resource_id)
    except final_errors as refused:
        await complete(ctx, who.tenant_id, key, Answer(refused.status, refused.body(path)))
        raise
    except BaseException:
        await release(ctx, who.tenant_id, key)
        raise
    await complete(ctx, who.tenant_id, key, answer, record)
    return answer
