"""Kill the worker in the middle of a saga (SIGKILL, after the provider created the intent but before the
activity answered), start a new one: exactly one PaymentIntent and one completed payment."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid

import pytest

from contracts.payments import PaymentInput, PaymentView, payment_workflow_id, start_search_attributes
from tests.integration.helpers import customer_with_method
from tests.stack import Stack
from workflows.payment import PaymentWorkflow

pytestmark = pytest.mark.integration


def spawn_cli(stack: Stack, args: list[str], **env: str) -> subprocess.Popen[bytes]:
    """A `paysaga` command in a process of its own, pointed at the stack's servers."""
    s = stack.settings
    environ = {**os.environ, "DATABASE_URL": s.database_url, "TEMPORAL_ADDRESS": s.temporal_address,
               "PAYSAGA_API_HOST": s.api_host, "PAYSAGA_API_PORT": str(s.api_port), "PAYSAGA_LOG_LEVEL": "WARNING",
               **env}
    return subprocess.Popen([sys.executable, "-m", "paysaga.cli", *args], env=environ,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def spawn_worker(stack: Stack, task_queue: str, **env: str) -> subprocess.Popen[bytes]:
    return spawn_cli(stack, ["worker", "--metrics-port", "0"], PAYSAGA_TASK_QUEUE=task_queue, **env)


async def test_worker_killed_mid_saga(stack: Stack, tenant: tuple[str, str]) -> None:
    tenant_id, key = tenant
    async with stack.http(key) as http:
        cid, pm = await customer_with_method(http)
    queue = f"crash-{uuid.uuid4().hex[:6]}"
    inp = PaymentInput(tenant_id=tenant_id, payment_id=f"pay_{uuid.uuid4().hex[:24]}", customer_id=cid,
                       payment_method_id=pm, amount_micros=25_000_000, currency="USD", webhook_wait_seconds=2,
                       provider_call_timeout_seconds=3)
    first = spawn_worker(stack, queue, PAYSAGA_SANDBOX_RESPONSE_LATENCY_MS="30000")
    second = None
    try:
        handle = await stack.client.start_workflow(
            PaymentWorkflow.run, inp, id=payment_workflow_id(tenant_id, inp.payment_id), task_queue=queue,
            search_attributes=start_search_attributes(inp), result_type=PaymentView)
        # Wait until the provider has made the intent, then kill the worker before it hears the answer.
        for _ in range(300):
            if await stack.admin_pool.fetchval(
                    "SELECT count(*) FROM sandbox.payment_intents WHERE payment_id = $1", inp.payment_id):
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the first worker never reached the provider")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = spawn_worker(stack, queue)
        result = await asyncio.wait_for(handle.result(), 90)
    finally:
        for proc in (first, second):
            if proc and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
    assert result.status == "completed"
    intents = await stack.admin_pool.fetchval(
        "SELECT count(*) FROM sandbox.payment_intents WHERE payment_id = $1", inp.payment_id)
    assert intents == 1
    completions = await stack.admin_pool.fetchval(
        "SELECT count(*) FROM paysaga.payment_events WHERE payment_id = $1 AND new_status = 'completed'",
        inp.payment_id)
    assert completions == 1
