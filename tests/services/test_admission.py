"""Bounded admission: the token bucket and the start slots (services/admission.py)."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.admission import Admission, TokenBucket
from services.errors import TooManyRequests, Unavailable


def test_bucket_grants_a_burst_then_names_the_wait() -> None:
    bucket = TokenBucket(rate=2, burst=3, at=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # the next token is due in 1/rate seconds
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) > 0


@given(st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=200))
def test_bucket_never_grants_more_than_burst_plus_rate_times_elapsed(gaps: list[float]) -> None:
    bucket = TokenBucket(rate=10, burst=5, at=0.0)
    now, granted = 0.0, 0
    for gap in gaps:
        now += gap
        granted += bucket.take(now) == 0.0
    assert granted <= 5 + 10 * now + 1e-9


def _admission(**overrides: float) -> Admission:
    fields = dict(max_inflight=1, queue_wait_seconds=0.05, start_timeout_seconds=1.0, tenant_rate=1.0,
                  tenant_burst=2.0) | overrides
    return Admission(**fields)  # type: ignore[arg-type]


def test_a_tenant_past_its_bucket_gets_429_with_retry_after_and_others_do_not() -> None:
    admission = _admission()
    admission.admit_tenant("a")
    admission.admit_tenant("a")
    with pytest.raises(TooManyRequests) as refused:
        admission.admit_tenant("a")
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "1"}
    admission.admit_tenant("b")  # another tenant has its own bucket


async def test_no_free_slot_is_refused_at_once() -> None:
    admission = _admission()
    async with admission.start_slot():
        started = time.perf_counter()
        with pytest.raises(Unavailable) as refused:
            async with admission.start_slot():
                pass
        assert time.perf_counter() - started < 0.1
        assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "1"
        assert admission.inflight == 1 and admission.shed == 1
    async with admission.start_slot():  # released: the next one gets in
        assert admission.inflight == 1


async def test_a_waiting_request_gets_a_slot_freed_within_its_wait() -> None:
    admission = _admission(queue_wait_seconds=1.0)

    async def hold() -> None:
        async with admission.start_slot():
            await asyncio.sleep(0.05)

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0.01)
    async with admission.start_slot():
        pass
    await holder
    assert admission.shed == 0
