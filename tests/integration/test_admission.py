"""Bounded admission over HTTP: an overloaded or over-eager caller is answered at once, never left to time out."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from temporalio.client import WorkflowExecutionStatus

from api.app import create_app
from tests.integration.helpers import customer_with_method, pay, wait_status
from tests.stack import Stack


@asynccontextmanager
async def api_with(stack: Stack, key: str, **limits: object) -> AsyncIterator[httpx.AsyncClient]:
    """A second API process on the same stack, with its own limits (ASGI transport, lifespan run)."""
    app = create_app(stack.settings.model_copy(update=limits))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api",
                                     headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
            yield http


async def test_a_tenant_over_its_rate_gets_429_with_retry_after(stack: Stack, tenant: tuple[str, str]) -> None:
    async with api_with(stack, tenant[1], tenant_rate_limit_per_second=1.0, tenant_rate_limit_burst=3.0) as http:
        answers = [await http.get("/v1/payments?limit=1") for _ in range(5)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429, 429]
    refused = answers[3]
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"].endswith("/rate-limited") and int(refused.headers["Retry-After"]) >= 1
    async with stack.http(tenant[1]) as other_process:  # another process has its own budget
        assert (await other_process.get("/v1/payments?limit=1")).status_code == 200


async def test_a_saturated_process_sheds_starts_at_once_and_the_retry_gets_its_payment(
    stack: Stack, tenant: tuple[str, str]
) -> None:
    async with stack.http(tenant[1]) as main:
        cid, pm = await customer_with_method(main)
    # No worker polls this task queue: the one start slot stays taken until its start times out.
    stuck_queue = f"nobody-{uuid.uuid4().hex[:6]}"
    async with api_with(stack, tenant[1], task_queue=stuck_queue, api_max_inflight_starts=1,
                        api_start_timeout_seconds=2.0) as http:
        first = asyncio.create_task(pay(http, cid, pm, key="order-held"))
        await asyncio.sleep(0.5)
        started = time.perf_counter()
        shed = await pay(http, cid, pm, key="order-shed")
        shed_ms = (time.perf_counter() - started) * 1000
        held = await first
        metrics = (await http.get("/metrics")).text
    # Answered before routing, the shed POST is still counted under its route, beside the admitted ones.
    assert 'method="POST",route="/v1/payments",status="503"' in metrics
    assert 'route="unmatched"' not in metrics
    assert shed.status_code == 503 and shed.json()["type"].endswith("/overloaded")
    assert shed.headers["Retry-After"] == "1" and shed_ms < 100, shed_ms
    assert held.status_code == 503 and held.json()["type"].endswith("/overloaded")  # Temporal did not answer
    async with stack.http(tenant[1]) as main:  # the shed request's retry, on a process with capacity
        retried = await pay(main, cid, pm, key="order-shed")
        assert retried.status_code == 201
        await wait_status(main, retried.json()["id"], {"completed"})
    async for run in stack.client.list_workflows(f'TaskQueue="{stuck_queue}"'):  # leave nothing running
        if run.status == WorkflowExecutionStatus.RUNNING:
            await stack.client.get_workflow_handle(run.id).terminate("test over")
