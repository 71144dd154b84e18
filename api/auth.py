"""API keys: `Authorization: Bearer psk_…` → tenant + roles. Only the key's SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from fastapi import Request

from api.problems import Problem

KEY_PREFIX = "psk_"


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    key_id: str
    roles: frozenset[str]

    def require(self, role: str) -> None:
        if role not in self.roles and "admin" not in self.roles:
            raise Problem(403, "forbidden", "Forbidden", f"This API key lacks the '{role}' role.")


def new_api_key() -> tuple[str, str, bytes]:
    """(key_id, secret shown once, hash to store)."""
    key_id = "key_" + secrets.token_hex(8)
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    return key_id, secret, hash_key(secret)


def hash_key(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def authenticate(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "unauthorized", "Unauthorized", "Send 'Authorization: Bearer <api key>'.")
    row = await request.app.state.pool.fetchrow(
        "SELECT tenant_id::text, key_id, roles FROM paysaga.authenticate($1)", hash_key(token.strip())
    )
    if row is None:
        raise Problem(401, "unauthorized", "Unauthorized", "Unknown or revoked API key.")
    return Principal(row["tenant_id"], row["key_id"], frozenset(row["roles"]))
