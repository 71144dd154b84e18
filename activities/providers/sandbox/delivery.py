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

import httpx
import structlog

from activities.providers.sandbox.events import NOT_SUBSCRIBED, sign
from paysaga.settings import Settings

log = structlog.get_logger("paysaga.sandbox")

# Stripe retries for days; a few quick tries are enough on one machine (0.2 s, 0.4 s, 0.8 s, 1.6 s between).
MAX_ATTEMPTS = 5
FIRST_BACKOFF_SECONDS = 0.2
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


def backoff_seconds(attempts: int) -> float:
    """Wait before the attempt after the `attempts`-th failed one."""
    return FIRST_BACKOFF_SECONDS * 2 ** (attempts - 1)


class Courier:
    """Posts events through one keep-alive transport, at most `max_posts` at a time.

    It speaks to httpx's transport, not through a client: a webhook is one POST to one fixed URL, with no
    cookies, redirects or auth to handle, and the client's handling of those cost as much CPU as the transport's
    own HTTP work (the sandbox runs beside paysaga on the same cores, where Stripe's servers would not)."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport, max_posts: int,
                 timeout_seconds: float) -> None:
        self._settings = settings
        self._transport = transport
        self._posts = asyncio.Semaphore(max_posts)
        self._url = httpx.URL(settings.sandbox_webhook_target)
        self._timeout = httpx.Timeout(timeout_seconds).as_dict()

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
        request = httpx.Request("POST", self._url, content=event.body, extensions={"timeout": self._timeout},
                                headers={"Stripe-Signature": sign(event.body, secret, int(time.time())),
                                         "Content-Type": "application/json", "User-Agent": USER_AGENT})
        try:
            resp = await self._transport.handle_async_request(request)
            try:
                await resp.aread()  # the whole answer, so that the connection goes back to the pool
            finally:
                await resp.aclose()
        except httpx.HTTPError as exc:
            log.warning("sandbox.webhook_unreachable", error=str(exc), event_id=event.event_id)
            return Outcome(Verdict.RETRY, f"unreachable: {type(exc).__name__}: {exc}")
        if resp.status_code < 300:
            return Outcome(Verdict.DELIVERED)
        log.warning("sandbox.webhook_rejected", status=resp.status_code, event_id=event.event_id)
        final = 400 <= resp.status_code < 500 and resp.status_code != 409
        return Outcome(Verdict.REJECTED if final else Verdict.RETRY, f"HTTP {resp.status_code}")


def _best(outcomes: list[Outcome]) -> Outcome:
    """One copy taken is the event delivered; else one worth retrying is a retry; else it was refused."""
    for verdict in (Verdict.DELIVERED, Verdict.RETRY):
        for outcome in outcomes:
            if outcome.verdict == verdict:
                return outcome
    return outcomes[0]
