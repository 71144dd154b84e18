"""Readiness: the dependencies a request needs answer."""

from __future__ import annotations

from activities.stores import payments, subscriptions
from services.context import AppContext


async def readiness(ctx: AppContext) -> dict[str, str]:
    """`ok` or `down: <error>` per dependency."""
    checks: dict[str, str] = {}
    try:
        await ctx.pool.fetchval("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"down: {type(exc).__name__}"
    try:
        await ctx.temporal.service_client.check_health()
        checks["temporal"] = "ok"
    except Exception as exc:
        checks["temporal"] = f"down: {type(exc).__name__}"
    return checks


async def payments_by_status(ctx: AppContext) -> dict[str, int]:
    return {row["status"]: row["n"] for row in await payments.status_counts(ctx.pool)}


async def billing_metrics(ctx: AppContext) -> list[tuple[str, str, int]]:
    """Renewals by outcome, dunning recoveries by stage, revenue recovered: fleet-wide numbers."""
    return await subscriptions.billing_metrics(ctx.pool)
