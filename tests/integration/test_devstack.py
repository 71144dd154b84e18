"""The embedded stack's own set-up steps."""

from __future__ import annotations

import os

import pytest
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from contracts import search_attributes as sa
from paysaga import devstack
from tests.stack import Stack

pytestmark = pytest.mark.integration


async def test_search_attributes_added_since_the_server_state_was_created_are_registered() -> None:
    # A server that knows none of ours: what a `.paysaga/temporal.db` made by an older paysaga looks like.
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=devstack.venv_binary("temporal"),
                                                dev_server_log_level="error")
    try:
        address = env.client.service_client.config.target_host
        await devstack.ensure_search_attributes(address)
        await devstack.ensure_search_attributes(address)  # idempotent
        known = await env.client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default"))
        assert {k.name for k in sa.ALL} <= set(known.custom_attributes)
        assert known.custom_attributes["FraudScore"] == int(sa.FRAUD_SCORE.indexed_value_type)
    finally:
        await env.shutdown()


def test_dbmate_url_speaks_lib_pq() -> None:
    assert devstack.dbmate_url("postgresql://postgres@/paysaga?host=/tmp/pg") == (
        "postgres://postgres@/paysaga?socket=/tmp/pg&sslmode=disable")
    assert devstack.dbmate_url("postgresql://u:p@db:5432/x?sslmode=require") == "postgres://u:p@db:5432/x?sslmode=require"


async def test_the_embedded_postgres_checkpoints_far_apart(stack: Stack) -> None:
    """A bulk job's WAL is not rewritten whole after a checkpoint every half gigabyte."""
    if os.environ.get("PAYSAGA_TEST_DATABASE_ADMIN_URL"):
        pytest.skip("a server of the caller's, not the embedded one")
    settings = [await stack.admin_pool.fetchval(f"SHOW {name}")  # type: ignore[attr-defined]
                for name in ("max_wal_size", "checkpoint_timeout")]
    assert settings == ["8GB", "30min"]
