"""Who is calling: the tenant and roles an API key stands for."""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("payments", "finance", "admin")


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    key_id: str
    roles: frozenset[str]
    request_id: str | None = None  # the request it is acting in, for the audit trail

    def has(self, role: str) -> bool:
        """`admin` holds every role."""
        return role in self.roles or "admin" in self.roles

    @property
    def actor(self) -> str:
        """How the principal is named in lifecycle events and workflow inputs."""
        return f"api:{self.key_id}"
