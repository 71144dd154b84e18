"""What route handlers depend on: the app's service context, and the caller authenticated by API key."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from contracts.auth import Principal
from services import tenants
from services.context import AppContext
from services.errors import Forbidden, Unauthorized, Unprocessable

REQUEST_ID_HEADER = "x-request-id"
_MAX_REQUEST_ID = 128


def app_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(app_context)]


def request_id_of(request: Request) -> str:
    """The client's X-Request-Id when it is sane, else one made up for this request."""
    sent = request.headers.get(REQUEST_ID_HEADER, "").strip()
    return sent if sent and len(sent) <= _MAX_REQUEST_ID and sent.isprintable() else f"req_{secrets.token_hex(12)}"


# Declares the scheme in the published contract; a missing or malformed header is our own 401 problem.
bearer = HTTPBearer(auto_error=False, scheme_name="apiKey", description="`Authorization: Bearer psk_…`")


async def authenticated(request: Request, ctx: Ctx,
                        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    token = credentials.credentials.strip() if credentials else ""
    if not token:
        raise Unauthorized("unauthorized", "Unauthorized", "Send 'Authorization: Bearer <api key>'.")
    who = await tenants.authenticate(ctx.pool, token, request_id_of(request))
    if who is None:
        raise Unauthorized("unauthorized", "Unauthorized", "Unknown or revoked API key.")
    ctx.admission.admit_tenant(who.tenant_id)
    return who


def role(name: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the authenticated caller, who must hold role `name` (or `admin`)."""

    async def require(who: Annotated[Principal, Depends(authenticated)]) -> Principal:
        if not who.has(name):
            raise Forbidden("forbidden", "Forbidden", f"This API key lacks the '{name}' role.")
        return who

    return require


IDEMPOTENCY_KEY = ("Yours (e.g. a UUID), at most 255 characters: a retry with the same key and body gets the first "
                   "answer again; the same key with another body is 422; keys are kept 48 h")
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", description=IDEMPOTENCY_KEY)]

Caller = Annotated[Principal, Depends(authenticated)]
Payments = Annotated[Principal, Depends(role("payments"))]
Finance = Annotated[Principal, Depends(role("finance"))]
Admin = Annotated[Principal, Depends(role("admin"))]


_RFC3339 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"


def instant(value: str | None) -> datetime | None:
    """An RFC 3339 instant from a query parameter (a strict reading: no unix seconds, no missing offset)."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise Unprocessable("validation-error", "Invalid request", "Not a valid instant.",
                            errors=[{"loc": ["query", "at"], "msg": "not an RFC 3339 date-time", "type": "value_error"}]
                            ) from None


def day(value: str | None, name: str) -> date | None:
    """A calendar day from a query parameter ("2026-12-01")."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Unprocessable("validation-error", "Invalid request", "Not a valid date.",
                            errors=[{"loc": ["query", name], "msg": "not a date (YYYY-MM-DD)", "type": "value_error"}]
                            ) from None


DayQuery = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description="A day, e.g. 2026-12-01",
                                       json_schema_extra={"format": "date"})]
At = Annotated[str | None, Query(pattern=_RFC3339, description="An instant (RFC 3339), e.g. 2026-11-30T23:59:59Z",
                                  json_schema_extra={"format": "date-time"})]
