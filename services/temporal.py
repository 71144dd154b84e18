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

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from services.admission import Admission, overloaded

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
                            *, result_type: type[R], admission: Admission | None = None, arg: Any = None,
                            update_id: str | None = None) -> R:
    """Start the workflow (or join the running one, per the operation's conflict policy) and run the update.
    `start` makes the start operation: each try needs a fresh one. With `admission`, a start Temporal does not
    answer in time is refused (503); the request itself already holds one of the process's start slots. The same
    `update_id` again (a retried request) is the same update: the workflow answers it once."""
    operations: list[WithStartWorkflowOperation[Any, Any]] = []

    def fresh() -> WithStartWorkflowOperation[Any, Any]:
        operations.append(start())
        return operations[-1]

    def call() -> Awaitable[R]:
        if arg is None:
            return _retrying(lambda: client.execute_update_with_start_workflow(
                name, start_workflow_operation=fresh(), result_type=result_type, id=update_id))
        return _retrying(lambda: client.execute_update_with_start_workflow(
            name, arg, start_workflow_operation=fresh(), result_type=result_type, id=update_id))

    try:
        if admission is None:
            return await call()
        try:
            return await asyncio.wait_for(call(), admission.start_timeout)
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            raise overloaded("The workflow engine did not answer in time; retry with the same "
                             "Idempotency-Key.") from None
    finally:
        for operation in operations:
            _forget_handle(operation)


def _forget_handle(operation: WithStartWorkflowOperation[Any, Any]) -> None:
    """An abandoned start leaves its workflow-handle future failed; read it so asyncio does not log it as lost."""
    handle = operation._workflow_handle
    if handle.done() and not handle.cancelled():
        handle.exception()
