"""Shaping service answers into HTTP responses."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from services.errors import MEDIA_TYPE
from services.idempotency import Answer


def answered(answer: Answer) -> JSONResponse:
    """A (possibly replayed) answer of an idempotent request: a replay says so, and a stored refusal is a problem."""
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    return JSONResponse(answer.body, status_code=answer.status, headers=headers,
                        media_type=MEDIA_TYPE if answer.status >= 400 else None)
