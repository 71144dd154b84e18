"""The sandbox's webhook POSTs over a real socket: the status code judged as Stripe judges it, no answer a retry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from activities.providers.sandbox.delivery import AiohttpPoster, Claimed, Courier, Unreachable, Verdict
from paysaga import devstack
from paysaga.settings import Settings

EVENT = Claimed("evt_1", "payment_intent.succeeded", b'{"id": "evt_1"}', 1)


@asynccontextmanager
async def endpoint(status: int, seen: list[bytes]) -> AsyncIterator[str]:
    """An HTTP/1.1 endpoint answering every request with `status`, keeping the requests it read."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            seen.append(head + await reader.readexactly(length))
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\n{{}}".encode())
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/v1/webhooks/stripe"


def settings(url: str) -> Settings:
    return Settings(sandbox_webhook_url=url.removesuffix("/v1/webhooks/stripe"), stripe_webhook_secrets="whsec_test")


@pytest.mark.parametrize(("status", "verdict"), [(200, Verdict.DELIVERED), (409, Verdict.RETRY),
                                                 (503, Verdict.RETRY), (400, Verdict.REJECTED)])
async def test_the_answer_decides_the_verdict(status: int, verdict: Verdict) -> None:
    seen: list[bytes] = []
    async with endpoint(status, seen) as url:
        poster = AiohttpPoster(url, max_posts=2, timeout_seconds=5)
        try:
            outcomes = [await Courier(settings(url), poster, 2).deliver(EVENT) for _ in range(3)]
        finally:
            await poster.aclose()
    assert {o.verdict for o in outcomes} == {verdict}
    assert len(seen) == 3 and all(b"Stripe-Signature: t=" in s and s.endswith(EVENT.body) for s in seen)


async def test_no_answer_is_unreachable_and_a_retry() -> None:
    url = f"http://127.0.0.1:{devstack.free_port()}/v1/webhooks/stripe"  # nothing listens there
    poster = AiohttpPoster(url, max_posts=1, timeout_seconds=2)
    try:
        with pytest.raises(Unreachable):
            await poster.post(b"{}", {})
        outcome = await Courier(settings(url), poster, 1).deliver(EVENT)
    finally:
        await poster.aclose()
    assert outcome.verdict is Verdict.RETRY and outcome.error and outcome.error.startswith("unreachable")
