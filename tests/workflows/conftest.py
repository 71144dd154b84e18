"""Workflow tests on Temporal's time-skipping test server, with in-memory fake activities."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.workflows.fakes import FakeActivities, FakeLedger, FakeProvider
from workflows import search_attributes as sa
from workflows.contracts import PaymentInput, PaymentView, payment_workflow_id
from workflows.payment import PaymentWorkflow, start_search_attributes

HISTORIES = Path(__file__).resolve().parent.parent / "histories"
RECORD = os.environ.get("PAYSAGA_RECORD_HISTORIES") == "1"
TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"  # the default download needs internet


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=str(TEST_SERVER)
    )
    try:
        # The test server rejects unknown custom search attributes at start / upsert: register ours.
        # (ListSearchAttributes is unimplemented there, AddSearchAttributes works.)
        await env.client.operator_service.add_search_attributes(AddSearchAttributesRequest(
            namespace="default",
            search_attributes={key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in sa.ALL},
        ))
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
        return await self.client.start_workflow(
            PaymentWorkflow.run, inp, id=payment_workflow_id(inp.tenant_id, inp.payment_id),
            task_queue=self.task_queue, search_attributes=start_search_attributes(inp),
        )

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[Worker]:
        acts = FakeActivities(self.ledger, self.provider)
        async with Worker(self.client, task_queue=self.task_queue, workflows=[PaymentWorkflow],
                          activities=acts.all()) as worker:
            yield worker


@pytest.fixture
async def saga(env: WorkflowEnvironment) -> Saga:
    return Saga(env)


async def record_history(handle: WorkflowHandle[Any, Any], case: str) -> None:
    """With PAYSAGA_RECORD_HISTORIES=1, keep the run's history for the replay test."""
    if not RECORD:
        return
    history = await handle.fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"payment_{case}.json").write_text(history.to_json() + "\n")
