"""What every use case runs with: settings, the database pool, the Temporal client, the provider adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from temporalio.client import Client

from activities.providers import build_provider
from activities.providers.base import PaymentProvider
from paysaga.db import create_pool
from paysaga.settings import Settings
from paysaga.temporal import connect_client
from services.admission import Admission


@dataclass
class AppContext:
    settings: Settings
    pool: asyncpg.Pool
    temporal: Client
    admission: Admission
    # The embedded sandbox provider, when it is the configured one: the API answers its 3-D Secure challenges.
    sandbox: Any = None

    @asynccontextmanager
    async def provider(self) -> AsyncIterator[PaymentProvider]:
        """The configured provider for one call from the API (the sandbox instance, or a short-lived client)."""
        if self.sandbox is not None:
            yield self.sandbox
            return
        provider = build_provider(self.settings, self.pool)
        try:
            yield provider
        finally:
            if hasattr(provider, "aclose"):
                await provider.aclose()


def admission_for(settings: Settings) -> Admission:
    return Admission(max_inflight=settings.api_max_inflight_starts,
                     queue_wait_seconds=settings.api_start_queue_wait_seconds,
                     start_timeout_seconds=settings.api_start_timeout_seconds,
                     tenant_rate=settings.tenant_rate_limit_per_second, tenant_burst=settings.tenant_rate_limit_burst)


@asynccontextmanager
async def app_context(settings: Settings, *, pool_size: int = 20) -> AsyncIterator[AppContext]:
    """Open the pool, the Temporal client and (for the sandbox) the provider; close them on exit."""
    pool = await create_pool(settings.database_url, max_size=pool_size)
    try:
        ctx = AppContext(settings, pool, await connect_client(settings), admission_for(settings))
        if settings.provider == "sandbox":
            ctx.sandbox = build_provider(settings, pool)
        try:
            yield ctx
        finally:
            if ctx.sandbox is not None and hasattr(ctx.sandbox, "aclose"):
                await ctx.sandbox.aclose()
    finally:
        await pool.close()
