"""The thin client the services talk to workflows through: by workflow, update and signal names (from
`contracts/`), never by importing a workflow module.

An update that arrives while a workflow task is completing the run is refused by the server with
FAILED_PRECONDITION ("unexpected workflow task failure": the task is retried with the news, the update was never
accepted). The update id makes a retry safe, so these calls retry that answer a few times before giving up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.service import RPCError, RPCStatusCode

R = TypeVar("R")
RETRIES = 3
BACKOFF_SECONDS = 0.05


async def _retrying(call: Callable[[], Awaitable[R]]) -> R:
    for attempt in range(RETRIES):
        try:
            return await call()
        except RPCError as exc:
            if exc.status != RPCStatusCode.FAILED_PRECONDITION or attempt == RETRIES - 1:
                raise
            await asyncio.sleep(BACKOFF_SECONDS * 2**attempt)
    raise AssertionError("unreachable")


async def update(client: Client, workflow_id: str, name: str, arg: Any, *, update_id: str,
                 result_type: type[R]) -> R:
    handle = client.get_workflow_handle(workflow_id)
    return await _retrying(lambda: handle.execute_update(name, arg, id=update_id, result_type=result_type))


async def update_with_start(client: Client, name: str, start: Callable[[], WithStartWorkflowOperation[Any, Any]],
                            *, result_type: type[R]) -> R:
    """Start the workflow (or join the running one, per the operation's conflict policy) and run the update.
    `start` makes the start operation: each try needs a fresh one."""
    return await _retrying(lambda: client.execute_update_with_start_workflow(
        name, start_workflow_operation=start(), result_type=result_type))
