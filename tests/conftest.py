from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from paysaga.logs import configure_logging
from tests.stack import Stack, running_stack

configure_logging("INFO")  # captured by pytest; shown only for failures


@pytest.fixture(scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """The real stack, once per session: embedded Postgres + Temporal dev server + in-process worker + API."""
    async with running_stack(tmp_path_factory.mktemp("stack")) as s:
        yield s


@pytest.fixture
async def tenant(stack: Stack) -> tuple[str, str]:
    """A fresh tenant (tenant_id, api_key) per test, so tests never see each other's rows."""
    return await stack.new_tenant()


@pytest.fixture
async def retire(stack: Stack) -> AsyncIterator[list[str]]:
    """Tenants whose subscriptions are ended after the test, pass or fail (see `retire_subscriptions`)."""
    from tests.integration.seeding import retire_subscriptions

    tenants: list[str] = []
    yield tenants
    for tenant_id in tenants:
        await retire_subscriptions(stack.admin_pool, tenant_id)  # type: ignore[arg-type]
