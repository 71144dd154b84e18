"""The step helpers every workflow uses: a database step, a provider call with the rail's policy, message
de-duplication, and the dead-letter wait-and-replay loop.

Deterministic like the workflows that call them: no I/O, time from workflow.now(), every side effect in an
activity. Activities are passed as callables (the `@activity.defn` methods), so types flow through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.dead_letters import DeadLetter, ReplayRequest
    from contracts.errors import NON_RETRYABLE
    from workflows.policies import DB_RETRY, DB_STEP_TIMEOUT, PROVIDER_RETRY, PROVIDER_SCHEDULE_TO_CLOSE

# Local retries waiting longer than this are handed to a workflow timer: a worker restart loses no backoff, and a
# provider outage does not hold a workflow task open.
LOCAL_RETRY_THRESHOLD = timedelta(seconds=1)

A = TypeVar("A")
R = TypeVar("R")
M = TypeVar("M")
Step = Callable[[Any, A], Awaitable[R]] | Callable[[A], Awaitable[R]]


async def local_step(fn: Step[A, R], arg: A) -> R:
    """A short, idempotent database step, run in the worker beside the workflow (no activity task)."""
    result: R = await workflow.execute_local_activity(fn, arg, start_to_close_timeout=DB_STEP_TIMEOUT,
                                                      retry_policy=DB_RETRY)
    return result


@dataclass(frozen=True)
class ProviderPolicy:
    """How one rail is called: the per-call timeout and the backoff. Built from a workflow's input, so a replay
    uses what the run used."""

    call_timeout: timedelta
    retry: RetryPolicy = field(default_factory=lambda: PROVIDER_RETRY)
    schedule_to_close: timedelta = PROVIDER_SCHEDULE_TO_CLOSE

    @classmethod
    def of(cls, call_timeout_seconds: float, *, initial_seconds: float | None = None,
           max_interval_seconds: float | None = None, max_attempts: int | None = None) -> ProviderPolicy:
        retry = PROVIDER_RETRY
        if initial_seconds is not None or max_interval_seconds is not None or max_attempts is not None:
            retry = RetryPolicy(
                initial_interval=timedelta(seconds=initial_seconds or 1.0),
                backoff_coefficient=PROVIDER_RETRY.backoff_coefficient,
                maximum_interval=timedelta(seconds=max_interval_seconds or 60.0),
                maximum_attempts=max_attempts or PROVIDER_RETRY.maximum_attempts,
                non_retryable_error_types=list(NON_RETRYABLE))
        return cls(call_timeout=timedelta(seconds=call_timeout_seconds), retry=retry)


async def provider_call(fn: Step[A, R], arg: A, policy: ProviderPolicy, *, local: bool = False) -> R:
    """A provider step with the rail's bounded retries. `local` runs it beside the workflow: no activity task,
    no extra workflow task for its result (the provider's idempotency keys make a re-run safe either way). Its
    backoff beyond the first second waits on durable workflow timers, not in the worker's memory."""
    if local:
        result: R = await workflow.execute_local_activity(
            fn, arg, start_to_close_timeout=policy.call_timeout, schedule_to_close_timeout=policy.schedule_to_close,
            retry_policy=policy.retry, local_retry_threshold=LOCAL_RETRY_THRESHOLD)
        return result
    result = await workflow.execute_activity(
        fn, arg, start_to_close_timeout=policy.call_timeout, schedule_to_close_timeout=policy.schedule_to_close,
        retry_policy=policy.retry)
    return result


def is_business_failure(err: ActivityError | ApplicationError) -> bool:
    """A non-retryable application error: the request was wrong, not the provider down."""
    cause = err.cause if isinstance(err, ActivityError) else err
    return isinstance(cause, ApplicationError) and cause.non_retryable


class Inbox(Generic[M]):
    """Messages in arrival order, each id acted on once: providers deliver webhooks more than once."""

    def __init__(self, key: Callable[[M], str]) -> None:
        self._key = key
        self._seen: set[str] = set()
        self._pending: list[M] = []

    def offer(self, message: M) -> bool:
        """Queue the message unless its id was seen; True when it was new."""
        key = self._key(message)
        if key in self._seen:
            return False
        self._seen.add(key)
        self._pending.append(message)
        return True

    def __bool__(self) -> bool:
        return bool(self._pending)

    def pop(self) -> M:
        return self._pending.pop(0)


class DeadLetters:
    """A provider step whose retries ran out is parked as a dead letter with its reason and input; the workflow
    then waits for an operator's replay (and tries the step once more) or, after the hold period, gives up."""

    def __init__(self, *, tenant_id: str, owner_id: str, hold_seconds: float, record: Step[DeadLetter, None],
                 expire: Step[ReplayRequest, bool]) -> None:
        self._tenant_id, self._owner_id, self._hold = tenant_id, owner_id, timedelta(seconds=hold_seconds)
        self._record, self._expire = record, expire
        self._count = 0
        self.open_letter: str | None = None
        self._replayed: str | None = None

    def replayed(self, dlq_id: str) -> None:
        """An operator replayed the open letter (the replay update claimed it)."""
        self._replayed = dlq_id

    async def call(self, fn: Step[A, R], arg: A, policy: ProviderPolicy, *, local: bool = False,
                   step: str | None = None) -> R:
        """`step` names the step in the dead letter an operator sees (the activity's name by default)."""
        while True:
            try:
                return await provider_call(fn, arg, policy, local=local)
            except (ActivityError, ApplicationError) as err:  # a local activity's failure can surface as either
                if is_business_failure(err) or not workflow.patched("dead-letter-v1"):
                    raise
                if not await self._park(step or getattr(fn, "__name__", str(fn)), arg, err):
                    raise

    async def _park(self, step: str, arg: Any, err: ActivityError | ApplicationError) -> bool:
        """True when an operator replayed the letter within the hold period."""
        self._count += 1
        dlq_id = f"dlq_{self._owner_id}_{self._count}"
        await local_step(self._record, DeadLetter(
            tenant_id=self._tenant_id, dlq_id=dlq_id, workflow_id=workflow.info().workflow_id,
            payment_id=self._owner_id, step=step, reason=str(err.cause or err),
            input=arg.model_dump(mode="json") if hasattr(arg, "model_dump") else {"value": arg},
        ))
        self.open_letter = dlq_id
        try:
            await workflow.wait_condition(lambda: self._replayed == dlq_id, timeout=self._hold)
            return True
        except TimeoutError:
            await local_step(self._expire, ReplayRequest(dlq_id=dlq_id, actor="workflow", tenant_id=self._tenant_id))
            return False
        finally:
            self.open_letter = None


async def finish(result: R) -> R:
    """Return `result` once every update and signal handler has finished: none is cut off by the run's end."""
    await workflow.wait_condition(workflow.all_handlers_finished)
    return result
