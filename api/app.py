"""The FastAPI front door: authenticate, validate, call one service, shape the response. Nothing else happens here."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import (
    audit,
    catalogue,
    connected_accounts,
    dead_letters,
    disputes,
    docs,
    invoices,
    ledger,
    payment_methods,
    payments,
    payouts,
    problems,
    reconciliation,
    refunds,
    sandbox,
    schemas,
    subscriptions,
    tax,
    webhooks,
)
from api.admission_gate import ROUTE_LABEL, AdmissionGate
from api.input_guard import InputGuard
from api.metrics import ApiMetrics
from api.pan_guard import PanGuard
from api.problems import problem_response
from contracts.webhooks import Kind
from paysaga.settings import Settings, get_settings
from services import disputes as dispute_service
from services import health, settlement_reports
from services import payments as payment_service
from services import payouts as payout_service
from services import refunds as refund_service
from services.context import app_context
from services.webhooks import VERIFIERS, KindHandler, Verifier, WebhookIntake

# Which use case a provider event of each kind goes to. Events of other kinds are recorded and ignored.
WEBHOOK_HANDLERS: Mapping[Kind, KindHandler] = {
    "payment": payment_service.on_webhook,
    "refund": refund_service.on_webhook,
    "dispute": dispute_service.on_webhook,
    "payout": payout_service.on_webhook,
    "account": payout_service.on_account_webhook,
}


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
            label = getattr(route, "path", None) or scope.get(ROUTE_LABEL, "unmatched")
            self.metrics.request_seconds.labels(scope["method"], label, str(status)).observe(
                time.perf_counter() - started
            )


def create_app(settings: Settings | None = None, *, verifiers: Mapping[str, Verifier] = VERIFIERS,
               webhook_handlers: Mapping[Kind, KindHandler] = WEBHOOK_HANDLERS) -> FastAPI:
    settings = settings or get_settings()
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with app_context(settings) as ctx:
            app.state.ctx = ctx
            app.state.webhooks = WebhookIntake(ctx, webhook_handlers, verifiers)
            yield

    app = FastAPI(
        title="paysaga", version="0.1.0", lifespan=lifespan,
        description="Payments as durable Temporal workflows. Errors are application/problem+json.",
    )
    app.state.settings, app.state.metrics = settings, metrics
    problems.install(app)
    # A request is matched against the routes in this order, one by one: the provider's webhooks, the busiest
    # endpoint of a payment service (one or more per payment), come first, then the payments themselves.
    for module in (webhooks, payments, payment_methods, audit, refunds, disputes, dead_letters, ledger, invoices,
                   tax, catalogue, subscriptions, connected_accounts, payouts, reconciliation):
        app.include_router(module.router)
    if settings.provider == "sandbox":
        app.include_router(sandbox.router)

    @app.get("/health/live", tags=["health"], response_model=schemas.Live)
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready", tags=["health"], response_model=schemas.Ready)
    async def ready(request: Request) -> Any:
        checks = await health.readiness(request.app.state.ctx)
        if all(v == "ok" for v in checks.values()):
            return {"status": "ok", "checks": checks}
        return problem_response(503, "not-ready", "Not ready", "A dependency is unreachable.", checks=checks)

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        try:
            for status, n in (await health.payments_by_status(request.app.state.ctx)).items():
                metrics.payments_by_status.labels(status).set(n)
        except Exception:  # a metrics scrape must not fail because the database blinked
            pass
        try:
            gauges = {"renewals": metrics.renewals, "dunning_recoveries": metrics.dunning_recoveries,
                      "dunning_revenue_recovered_micros": metrics.dunning_revenue_recovered}
            for metric, label, value in await health.billing_metrics(request.app.state.ctx):
                gauges[metric].labels(label).set(value)
        except Exception:  # as above
            pass
        try:
            for tenant_id, currency, ratio in await settlement_reports.variance_by_tenant(request.app.state.ctx):
                metrics.settlement_variance.labels(tenant_id, currency).set(ratio)
        except Exception:  # the same: the last values stand
            pass
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = docs.finish(get_openapi(title=app.title, version=app.version,
                                                         description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(PanGuard)
    app.add_middleware(InputGuard)  # outside the PAN guard: malformed bodies never reach a parser
    app.add_middleware(AdmissionGate)  # outermost but for the timer: a saturated process sheds before any work
    app.add_middleware(RequestTimer, metrics=metrics)
    return app
