"""RFC 9457 problem details on every error the API answers, each with a stable `type` URI.

Service errors (`services.errors`) carry their slug and status; this module turns them, validation errors,
routing errors and unexpected failures into `application/problem+json` responses.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from temporalio.service import RPCError

from services.errors import MEDIA_TYPE, PROBLEM_BASE, ServiceError, from_database, problem_body

__all__ = ["MEDIA_TYPE", "PROBLEM_BASE", "Problem", "install", "problem_response"]

log = structlog.get_logger("paysaga.api")


class Problem(ServiceError):
    """A problem only the HTTP edge knows about (a missing header, an overloaded process), with its status."""

    def __init__(self, status: int, slug: str, title: str, detail: str = "", *,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(slug, title, detail, headers=headers, **extra)
        self.status = status

    def response(self, instance: str | None = None) -> JSONResponse:
        return error_response(self, instance)


def problem_response(status: int, slug: str, title: str, detail: str = "", instance: str | None = None,
                     headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(problem_body(status, slug, title, detail, instance, **extra), status_code=status,
                        media_type=MEDIA_TYPE, headers=headers)


def error_response(error: ServiceError, instance: str | None = None) -> JSONResponse:
    return JSONResponse(error.body(instance), status_code=error.status, media_type=MEDIA_TYPE,
                        headers=error.headers or None)


_HTTP_SLUGS = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized", 415: "unsupported-media-type"}


def allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return problem_response(400, "malformed-json", "Malformed JSON body",
                                    "The request body is not valid JSON.", request.url.path)
        # Never echo the offending input back: it could be anything, including secrets.
        clean = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                 for e in errors]
        return problem_response(422, "validation-error", "Invalid request", "The request body or parameters "
                                "failed validation.", request.url.path, errors=clean)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = _HTTP_SLUGS.get(exc.status_code, f"http-{exc.status_code}")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only those of the first route that matched it
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem_response(exc.status_code, slug, str(exc.detail), str(exc.detail), request.url.path,
                                headers=headers)

    @app.exception_handler(RPCError)
    async def _temporal_down(request: Request, exc: RPCError) -> JSONResponse:
        # The workflow engine refused or could not be reached: the client may retry (same Idempotency-Key).
        log.error("api.temporal_error", path=request.url.path, status=exc.status.name, message=exc.message)
        return problem_response(503, "temporarily-unavailable", "Try again", "The workflow engine could not take "
                                "the request; retry with the same Idempotency-Key.", request.url.path,
                                headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        refused = from_database(exc)
        if refused is not None:
            log.warning("api.database_refused", path=request.url.path, error_type=type(exc).__name__)
            return error_response(refused, request.url.path)
        log.error("api.unhandled_error", path=request.url.path, error_type=type(exc).__name__)
        return problem_response(500, "internal-error", "Internal error", "An unexpected error occurred.",
                                request.url.path)
