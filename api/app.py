"""The FastAPI front door: validate, authenticate, start or signal workflows. Nothing else happens here."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import audit, dead_letters, disputes, payment_methods, payments, problems, refunds, sandbox, webhooks
from api.metrics import ApiMetrics
from api.pan_guard import PanGuard
from api.problems import problem_response
from paysaga.db import create_pool
from paysaga.settings import Settings, get_settings
from worker import connect_client


class RequestTimer:
    """Latency histogram labelled by route template (not raw path: ids would explode the cardinality)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", "unmatched")
            self.metrics.request_seconds.labels(scope["method"], label, str(status)).observe(
                time.perf_counter() - started
            )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await create_pool(settings.database_url, max_size=20)
        app.state.temporal = await connect_client(settings)
        app.state.sandbox = None
        if settings.provider == "sandbox":
            from activities.providers.sandbox import SandboxProvider

            app.state.sandbox = SandboxProvider(app.state.pool, settings)
        try:
            yield
        finally:
            if app.state.sandbox is not None:
                await app.state.sandbox.aclose()
            await app.state.pool.close()

    app = FastAPI(
        title="paysaga", version="0.1.0", lifespan=lifespan,
        description="Payments as durable Temporal workflows. Errors are application/problem+json.",
    )
    app.state.settings, app.state.metrics = settings, metrics
    problems.install(app)
    app.include_router(payments.router)
    app.include_router(payment_methods.router)
    app.include_router(audit.router)
    app.include_router(refunds.router)
    app.include_router(disputes.router)
    app.include_router(dead_letters.router)
    app.include_router(webhooks.router)
    if settings.provider == "sandbox":
        app.include_router(sandbox.router)

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready", tags=["health"])
    async def ready(request: Request) -> Any:
        checks: dict[str, str] = {}
        try:
            await request.app.state.pool.fetchval("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"down: {type(exc).__name__}"
        try:
            await request.app.state.temporal.service_client.check_health()
            checks["temporal"] = "ok"
        except Exception as exc:
            checks["temporal"] = f"down: {type(exc).__name__}"
        if all(v == "ok" for v in checks.values()):
            return {"status": "ok", "checks": checks}
        return problem_response(503, "not-ready", "Not ready", "A dependency is unreachable.", checks=checks)

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        try:
            rows = await request.app.state.pool.fetch("SELECT status, n FROM paysaga.payment_status_counts()")
            for row in rows:
                metrics.payments_by_status.labels(row["status"]).set(row["n"])
        except Exception:  # a metrics scrape must not fail because the database blinked
            pass
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(PanGuard)
    app.add_middleware(RequestTimer, metrics=metrics)
    return app


