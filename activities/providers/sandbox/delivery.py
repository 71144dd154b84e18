"""One delivery attempt of one webhook event, as Stripe makes it: signed, POSTed, judged by the status code.

The test knobs act here, on the wire: `sandbox_webhook_drop_rate` loses an event before its first attempt,
`sandbox_webhook_duplicates` posts every attempt that many times, and `sandbox_webhook_shuffle` spreads the
copies over 0 to 200 ms so that later events overtake earlier ones. Retries are not made here: the network
reschedules the event in the database (network.py), so a retry survives the process.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import aiohttp
import httpx
import structlog

from activities.providers.sandbox.events import NOT_SUBSCRIBED, sign
from paysaga.settings import Settings

log = structlog.get_logger("paysaga.sandbox")

# Stripe retries for days; a few tries are enough on one machine (by default 1, 2, 4 and 8 s between them:
# `sandbox_webhook_first_retry_seconds`, doubling).
MAX_ATTEMPTS = 5
SHUFFLE_SPREAD_SECONDS = 0.2
USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"  # what Stripe's webhook requests carry


class Verdict(StrEnum):
    """How an attempt ended; the names are also the event's final `state` in sandbox.events."""

    DELIVERED = "delivered"
    RETRY = "retry"  # 409, 5xx, 3xx, or no answer: the endpoint may take it later
    REJECTED = "rejected"  # any other 4xx: the endpoint will never take it
    DROPPED = "dropped"  # lost on purpose (sandbox_webhook_drop_rate)


@dataclass(frozen=True)
class Claimed:
    """An event claimed for one attempt. `attempts` counts this one."""

    event_id: str
    type: str
    body: bytes
    attempts: int


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    error: str | None = None


def backoff_seconds(attempts: int, first: float) -> float:
    """Wait before the attempt after the `attempts`-th failed one."""
    return first * 2 ** (attempts - 1)


class Unreachable(Exception):
    """No answer: refused, reset, timed out."""


class Poster(Protocol):
    """One POST of a webhook to the endpoint; answers the status code, raises `Unreachable` for no answer."""

    async def post(self, body: bytes, headers: dict[str, str]) -> int: ...

    async def aclose(self) -> None: ...


class AiohttpPoster:
    """aiohttp's client on `max_posts` keep-alive connections: about a seventh of the CPU per POST that httpx
    spent (122 to 144 µs against 891 to 1,052 µs, 3,000 posts of a 1.5 KB body to a local uvicorn), which matters
    because the sandbox runs beside paysaga on the same cores, where Stripe's servers would not. The session is
    made on first use, inside the event loop that posts."""

    def __init__(self, url: str, max_posts: int, timeout_seconds: float) -> None:
        self._url, self._max_posts, self._timeout_seconds = url, max_posts, timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    async def post(self, body: bytes, headers: dict[str, str]) -> int:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_posts),
                timeout=aiohttp.ClientTimeout(total=self._timeout_seconds), skip_auto_headers=("Accept-Encoding",))
        try:
            async with self._session.post(self._url, data=body, headers=headers) as resp:
                await resp.read()  # the whole answer, so that the connection goes back to the pool
                return resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class TransportPoster:
    """POSTs through an httpx transport: what tests give the network (`httpx.MockTransport`) to stand in for
    the endpoint."""

    def __init__(self, url: str, transport: httpx.AsyncBaseTransport, timeout_seconds: float) -> None:
        self._url, self._transport = httpx.URL(url), transport
        self._timeout = httpx.Timeout(timeout_seconds).as_dict()

    async def post(self, body: bytes, headers: dict[str, str]) -> int:
        request = httpx.Request("POST", self._url, content=body, headers=headers,
                                extensions={"timeout": self._timeout})
        try:
            resp = await self._transport.handle_async_request(request)
            try:
                await resp.aread()
            finally:
                await resp.aclose()
        except httpx.HTTPError as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
        return resp.status_code

    async def aclose(self) -> None:
        """The transport is its owner's to close."""


class Courier:
    """Posts events through one poster, at most `max_posts` at a time."""

    def __init__(self, settings: Settings, poster: Poster, max_posts: int) -> None:
        self._settings = settings
        self._poster = poster
        self._posts = asyncio.Semaphore(max_posts)

    async def deliver(self, event: Claimed) -> Outcome:
        if not self._settings.sandbox_subscribes_to(event.type):  # like an endpoint's enabled_events on Stripe
            return Outcome(Verdict.DROPPED, NOT_SUBSCRIBED)
        if event.attempts == 1 and random.random() < self._settings.sandbox_webhook_drop_rate:
            log.info("sandbox.webhook_dropped", event_id=event.event_id, type=event.type)
            return Outcome(Verdict.DROPPED, "dropped by sandbox_webhook_drop_rate")
        copies = self._settings.sandbox_webhook_duplicates
        return _best(await asyncio.gather(*(self._post_copy(event) for _ in range(copies))))

    async def _post_copy(self, event: Claimed) -> Outcome:
        if self._settings.sandbox_webhook_shuffle:  # sleep outside the semaphore: a wait is not a post
            await asyncio.sleep(random.uniform(0, SHUFFLE_SPREAD_SECONDS))
        async with self._posts:
            return await self._post(event)

    async def _post(self, event: Claimed) -> Outcome:
        secret = self._settings.webhook_secret_list[0]
        headers = {"Stripe-Signature": sign(event.body, secret, int(time.time())),
                   "Content-Type": "application/json", "User-Agent": USER_AGENT}
        try:
            status = await self._poster.post(event.body, headers)
        except Unreachable as exc:
            log.warning("sandbox.webhook_unreachable", error=str(exc), event_id=event.event_id)
            return Outcome(Verdict.RETRY, f"unreachable: {exc}")
        if status < 300:
            return Outcome(Verdict.DELIVERED)
        log.warning("sandbox.webhook_rejected", status=status, event_id=event.event_id)
        final = 400 <= status < 500 and status != 409
        return Outcome(Verdict.REJECTED if final else Verdict.RETRY, f"HTTP {status}")


def _best(outcomes: list[Outcome]) -> Outcome:
    """One copy taken is the event delivered; else one worth retrying is a retry; else it was refused."""
    for verdict in (Verdict.DELIVERED, Verdict.RETRY):
        for outcome in outcomes:
            if outcome.verdict == verdict:
                return outcome
    return outcomes[0]
