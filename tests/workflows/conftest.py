"""Workflow tests on Temporal's time-skipping test server, with in-memory fake activities."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts import search_attributes as sa
from contracts.payments import PaymentInput, PaymentView, payment_workflow_id, start_search_attributes
from tests.workflows.fakes import FakeActivities, FakeLedger, FakeProvider
from workflows.payment import PaymentWorkflow

TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"  # the default download needs internet


async def start_env() -> WorkflowEnvironment:
    # The JVM-less test server still takes a few seconds to listen on a loaded 2-core machine: the SDK's 5 s
    # default failed whole runs now and then.
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=str(TEST_SERVER),
        test_server_startup_timeout=timedelta(seconds=60),
    )
    try:
        # The test server rejects unknown custom search attributes at start ("search attribute PaymentStatus
        # is not defined"): register ours. ListSearchAttributes is unimplemented there; AddSearchAttributes works.
        await env.client.operator_service.add_search_attributes(AddSearchAttributesRequest(
            namespace="default",
            search_attributes={key.name: IndexedValueType.ValueType(int(key.indexed_value_type)) for key in sa.ALL},
        ))
    except BaseException:
        await env.shutdown()
        raise
    return env


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """One test server for the session: each test has its own task queue and workflow id."""
    env = await start_env()
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
async def private_env() -> AsyncIterator[WorkflowEnvironment]:
    """A test server of its own, for a test that leaves the server's clock stuck (see the deadlock test)."""
    env = await start_env()
    try:
        yield env
    finally:
        await env.shutdown()


class Saga:
    """One payment under test: its fake row, fake provider, task queue and (optionally running) worker."""

    def __init__(self, env: WorkflowEnvironment) -> None:
        self.env = env
        self.client = env.client
        self.ledger = FakeLedger()
        self.provider = FakeProvider()
        self.task_queue = f"payments-{uuid.uuid4().hex[:10]}"
        self.payment_id = f"pay_{uuid.uuid4().hex[:12]}"
        self.tenant_id = "11111111-1111-1111-1111-111111111111"
        self.handles: list[WorkflowHandle[PaymentWorkflow, PaymentView]] = []

    @property
    def intent_id(self) -> str:
        """The id the fake provider gives the first attempt's intent."""
        return f"pi_{self.payment_id}_1"

    def input(self, **overrides: Any) -> PaymentInput:
        fields: dict[str, Any] = dict(
            tenant_id=self.tenant_id, payment_id=self.payment_id, customer_id="cus_1", payment_method_id="pm_1",
            amount_micros=12_340_000, currency="EUR", description="order 42",
            webhook_wait_seconds=30.0, three_ds_timeout_seconds=900.0, provider_call_timeout_seconds=10.0,
            settlement_timeout_seconds=86_400.0,
        )
        return PaymentInput(**(fields | overrides))

    async def start(self, **overrides: Any) -> WorkflowHandle[PaymentWorkflow, PaymentView]:
        inp = self.input(**overrides)
        handle = await self.client.start_workflow(
            PaymentWorkflow.run, inp, id=payment_workflow_id(inp.tenant_id, inp.payment_id),
            task_queue=self.task_queue, search_attributes=start_search_attributes(inp),
        )
        self.handles.append(handle)
        return handle

    async def terminate_leftovers(self) -> None:
        """A run left behind on the shared server keeps its timers: when one fires, its task waits for a worker
        that is gone. End such runs, so no test leaves work behind for the server's clock to trip on."""
        for handle in self.handles:
            with suppress(RPCError):
                if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                    await handle.terminate("test over")

    @asynccontextmanager
    async def worker(self, timeout: float = 30) -> AsyncIterator[Worker]:
        """A worker for this payment's task queue; the block fails (rather than hangs) after `timeout` s."""
        acts = FakeActivities(self.ledger, self.provider)
        async with Worker(self.client, task_queue=self.task_queue, workflows=[PaymentWorkflow],
                          activities=acts.all()) as worker, asyncio.timeout(timeout):
            yield worker


@pytest.fixture
async def saga(env: WorkflowEnvironment) -> AsyncIterator[Saga]:
    saga = Saga(env)
    yield saga
    await saga.terminate_leftovers()


