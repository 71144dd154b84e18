"""What a use case answers when it cannot do what was asked, and the RFC 9457 problem document for it.

Each error has a stable slug (`https://paysaga.dev/problems/<slug>`) and the HTTP status the API answers it
with; the CLI prints its detail. `problem_body` is the one builder of problem+json in paysaga.
"""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "https://paysaga.dev/problems/"
MEDIA_TYPE = "application/problem+json"


def problem_body(status: int, slug: str, title: str, detail: str = "", instance: str | None = None,
                 **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status,
                            "detail": detail or title}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return body


class ServiceError(Exception):
    """A use case refused; `status` is the HTTP status it is answered with."""

    status = 400

    def __init__(self, slug: str, title: str, detail: str = "", *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail or title)
        self.slug, self.title, self.detail, self.extra = slug, title, detail, extra
        self.headers = headers or {}

    def body(self, instance: str | None = None) -> dict[str, Any]:
        return problem_body(self.status, self.slug, self.title, self.detail, instance, **self.extra)


class BadRequest(ServiceError):
    status = 400


class Unauthorized(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class Unprocessable(ServiceError):
    status = 422


class TooManyRequests(ServiceError):
    status = 429


class Unavailable(ServiceError):
    status = 503


def not_found(kind: str, resource_id: str) -> NotFound:
    """`payment-not-found`, `customer-not-found`, …: the one shape of "no such thing in this tenant"."""
    return NotFound(f"{kind.replace('_', '-')}-not-found", f"{kind.replace('_', ' ').capitalize()} not found",
                    f"No {kind.replace('_', ' ')} {resource_id}.")


def temporarily_unavailable(detail: str = "Could not reach the workflow.") -> Unavailable:
    return Unavailable("temporarily-unavailable", "Try again", detail)


def from_database(exc: BaseException) -> ServiceError | None:
    """A database refusal that escaped validation, as the answer it deserves: bad data (SQLSTATE class 22: a
    character PostgreSQL cannot store, a number out of range) is 422; a violated constraint (class 23) is 409; an
    unreachable database is 503. Anything else is a fault of ours (None)."""
    import asyncpg  # here, not at import: the error module stays free of drivers for every other caller

    if isinstance(exc, asyncpg.DataError):
        return Unprocessable("invalid-data", "Invalid data", "A value in the request cannot be stored.")
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return Conflict("constraint-violation", "Conflict", "The request conflicts with the stored data.")
    if isinstance(exc, OSError | asyncpg.PostgresConnectionError | asyncpg.ConnectionDoesNotExistError
                  | asyncpg.TooManyConnectionsError | asyncpg.CannotConnectNowError):
        return Unavailable("temporarily-unavailable", "Try again", "The database cannot be reached right now.",
                           headers={"Retry-After": "1"})
    return None
