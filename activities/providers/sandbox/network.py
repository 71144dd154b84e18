"""The sandbox's side of the wire: webhook delivery and "later" work, from tasks of the calling process."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import structlog

from activities.providers.sandbox.events import sign
from paysaga.settings import Settings

log = structlog.get_logger("paysaga.sandbox")


class Deliveries:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    def later(self, work: Callable[[], Awaitable[Any]]) -> None:
        """Run `work` after `sandbox_settle_delay_ms`."""
        async def _run() -> None:
            await asyncio.sleep(self._settings.sandbox_settle_delay_ms / 1000)
            await work()
        self._spawn(_run())

    def send(self, events: list[dict[str, Any]]) -> None:
        copies = [e for e in events for _ in range(self._settings.sandbox_webhook_duplicates)]
        if self._settings.sandbox_webhook_shuffle:
            random.shuffle(copies)
        for i, event in enumerate(copies):
            if random.random() < self._settings.sandbox_webhook_drop_rate:
                log.info("sandbox.webhook_dropped", event_id=event["id"], type=event["type"])
                continue
            # Out-of-order mode also spreads deliveries in time, so later events may overtake earlier ones.
            delay = random.uniform(0, 0.2) if self._settings.sandbox_webhook_shuffle else i * 0.001
            self._spawn(self._post(event, delay))

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, event: dict[str, Any], delay: float) -> None:
        await asyncio.sleep(delay)
        body = json.dumps(event).encode()
        secret = self._settings.webhook_secret_list[0]
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10)
        for attempt in range(5):  # Stripe retries for days; a few quick tries are enough on one machine
            try:
                headers = {"Stripe-Signature": sign(body, secret, int(time.time())),
                           "Content-Type": "application/json"}
                resp = await self._http.post(self._settings.sandbox_webhook_target, content=body, headers=headers)
                if resp.status_code < 300:
                    return
                log.warning("sandbox.webhook_rejected", status=resp.status_code, event_id=event["id"])
                if 400 <= resp.status_code < 500 and resp.status_code != 409:
                    return
            except httpx.HTTPError as exc:
                log.warning("sandbox.webhook_unreachable", error=str(exc), event_id=event["id"])
            await asyncio.sleep(0.2 * 2**attempt)
