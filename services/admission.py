"""Bounded admission: under load the API sheds work quickly instead of queueing it until clients time out.

- Each tenant has a token bucket (`rate` requests per second, `burst` at once): past it, 429 with `Retry-After`
  set to when the next token is due. One tenant's burst cannot take the capacity of the others.
- Workflow starts hold one of `max_inflight` slots of this process while they wait for Temporal. A request that
  finds no slot within `queue_wait` is answered 503 with `Retry-After` at once: the requests already admitted
  keep their latency, and a client retrying with the same Idempotency-Key later gets its payment (the key keeps
  the payment id, the start joins the run if it began).
- A start that Temporal does not answer within `start_timeout` is answered 503 too (the run may exist; the
  retry joins it).

Limits are per API process: N processes admit N times as much, which is the point of running N.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from services.errors import TooManyRequests, Unavailable


@dataclass
class TokenBucket:
    rate: float  # tokens per second
    burst: float
    tokens: float = field(default=-1.0)
    at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, now: float | None = None) -> float:
        """Take a token: 0.0 when granted, else the seconds until one is due (nothing is taken)."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Admission:
    def __init__(self, *, max_inflight: int, queue_wait_seconds: float, start_timeout_seconds: float,
                 tenant_rate: float, tenant_burst: float, max_tenants: int = 10_000) -> None:
        self.max_inflight = max_inflight
        self.queue_wait = queue_wait_seconds
        self.start_timeout = start_timeout_seconds
        self._slots = asyncio.Semaphore(max_inflight)
        self._rate, self._burst, self._max_tenants = tenant_rate, tenant_burst, max_tenants
        self._buckets: dict[str, TokenBucket] = {}
        self.inflight = 0
        self.shed = 0

    def admit_tenant(self, tenant_id: str) -> None:
        if self._rate <= 0:
            return
        bucket = self._buckets.get(tenant_id)
        if bucket is None:
            if len(self._buckets) >= self._max_tenants:  # forget idle tenants rather than grow without bound
                self._buckets.clear()
            bucket = self._buckets[tenant_id] = TokenBucket(self._rate, self._burst)
        wait = bucket.take()
        if wait > 0:
            self.shed += 1
            raise TooManyRequests("rate-limited", "Too many requests",
                                  f"This tenant may make {self._rate:g} requests per second; retry later.",
                                  headers={"Retry-After": str(max(1, math.ceil(wait)))})

    @asynccontextmanager
    async def start_slot(self) -> AsyncIterator[None]:
        """Hold a workflow-start slot for the block; refuse at once (503) when the process is saturated."""
        try:
            await asyncio.wait_for(self._slots.acquire(), self.queue_wait)
        except TimeoutError:
            self.shed += 1
            raise overloaded("The service is at capacity; retry shortly with the same Idempotency-Key.") from None
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1
            self._slots.release()


def overloaded(detail: str) -> Unavailable:
    return Unavailable("overloaded", "Service overloaded", detail, headers={"Retry-After": "1"})
