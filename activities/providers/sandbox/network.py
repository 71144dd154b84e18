"""The sandbox network: what Stripe's servers do over time, in a process of its own (`paysaga sandbox-network`).

Provider calls only write state and events (events.publish). This runner, like Stripe, then
- settles processing intents, pending refunds and payouts after `sandbox_settle_delay_ms`, and decides disputes
  whose decisive evidence the issuer has had that long (each writing its events and balance transactions in the
  same transaction), and
- delivers due events to `sandbox_webhook_target` (delivery.py), retrying 409, 5xx and network errors with
  backoff by rescheduling the row, so a retry outlives the process.

Idle, it costs nothing: it sleeps until the earliest due time it knows of, or until a commit that wrote events
NOTIFYs it. Under load it claims due rows in batches (`FOR UPDATE SKIP LOCKED`, so several runners may share the
work) and keeps a bounded number of deliveries in flight through one keep-alive HTTP client. A claimed event is
leased: if the runner dies mid-post, the event is delivered again when the lease runs out (at least once, as
Stripe promises).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import structlog

from activities.providers.sandbox.connect import settle_due_payouts
from activities.providers.sandbox.delivery import (
    MAX_ATTEMPTS,
    AiohttpPoster,
    Claimed,
    Courier,
    Outcome,
    Poster,
    TransportPoster,
    Verdict,
    backoff_seconds,
)
from activities.providers.sandbox.disputes import decide_due_disputes
from activities.providers.sandbox.events import CHANNEL
from activities.providers.sandbox.intents import settle_due_intents
from activities.providers.sandbox.refunds import settle_due_refunds
from paysaga.db import create_pool
from paysaga.settings import Settings

log = structlog.get_logger("paysaga.sandbox")

_CLAIM = """
    WITH due AS (
        SELECT event_id FROM sandbox.events
        WHERE state = 'pending' AND deliver_after <= now() AND NOT (event_id = ANY($3::text[]))
        ORDER BY deliver_after, seq LIMIT $1 FOR UPDATE SKIP LOCKED)
    UPDATE sandbox.events e SET attempts = e.attempts + 1, deliver_after = now() + make_interval(secs => $2)
    FROM due WHERE e.event_id = due.event_id
    RETURNING e.event_id, e.type, e.payload::text AS body, e.attempts, e.seq"""

# Seconds until the earliest settlement and the earliest delivery fall due (negative: overdue; NULL: none).
_NEXT_DUE = """
    SELECT extract(epoch FROM LEAST(
               (SELECT min(updated_at) FROM sandbox.payment_intents WHERE status = 'processing'),
               (SELECT min(updated_at) FROM sandbox.refunds WHERE status = 'pending'),
               (SELECT min(updated_at) FROM sandbox.disputes
                WHERE status = 'under_review' AND pending_outcome IS NOT NULL),
               (SELECT min(updated_at) FROM sandbox.payouts
                WHERE status IN ('pending', 'in_transit') OR (status = 'paid' AND outcome = 'paid_then_failed')))
           + make_interval(secs => $1) - clock_timestamp())::float8 AS settle_in,
           extract(epoch FROM (SELECT min(deliver_after) FROM sandbox.events WHERE state = 'pending')
           - clock_timestamp())::float8 AS deliver_in"""

# Verdicts are written in bulk, each only by the attempt that holds the claim (`attempts` still matches): a
# statement per pass instead of one per delivered event.
_FINISH = """UPDATE sandbox.events e SET state = v.state, last_error = v.error,
                 delivered_at = CASE WHEN v.state = 'delivered' THEN now() END
             FROM unnest($1::text[], $2::int[], $3::text[], $4::text[]) AS v(event_id, attempts, state, error)
             WHERE e.event_id = v.event_id AND e.attempts = v.attempts AND e.state = 'pending'"""
_RESCHEDULE = """UPDATE sandbox.events e SET deliver_after = now() + make_interval(secs => v.backoff),
                     last_error = v.error
                 FROM unnest($1::text[], $2::int[], $3::float8[], $4::text[]) AS v(event_id, attempts, backoff, error)
                 WHERE e.event_id = v.event_id AND e.attempts = v.attempts AND e.state = 'pending'"""
# A delivery cut short by shutdown: offered again at once, and its attempt does not count.
_RELEASE = """UPDATE sandbox.events SET deliver_after = now(), attempts = attempts - 1
              WHERE event_id = ANY($1::text[]) AND state = 'pending'"""

_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(frozen=True)
class Tuning:
    batch_size: int = 100  # rows claimed (or settled) per statement
    max_in_flight: int = 64  # events being delivered at once
    # HTTP requests at once (and keep-alive connections): one API process takes no more at once anyway.
    max_posts: int = 8
    idle_seconds: float = 60.0  # longest sleep: a safety net should a notification ever be missed
    lease_seconds: float = 60.0  # how long a claimed event is not offered again; > the longest delivery
    min_wait_seconds: float = 0.01  # floor of a sleep, so rows locked by others cannot make the loop spin
    # A finished delivery wakes the loop this much later, so that the deliveries finishing meanwhile share one
    # pass (one verdict statement, one claim) instead of a pass each.
    refill_delay_seconds: float = 0.02
    post_timeout_seconds: float = 10.0
    shutdown_grace_seconds: float = 5.0


class SandboxNetwork:
    def __init__(
        self, pool: asyncpg.Pool, settings: Settings, *, tuning: Tuning | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._tuning = tuning or Tuning()
        self._transport = transport  # an httpx transport standing in for the endpoint (tests); else aiohttp posts
        self._wake = asyncio.Event()
        self._refill: asyncio.TimerHandle | None = None
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        # Verdicts not written yet: (event_id, attempts, state, error) and (event_id, attempts, backoff, error).
        # Until they are, each event's lease keeps it from being offered again.
        self._finished: list[tuple[str, int, str, str | None]] = []
        self._rescheduled: list[tuple[str, int, float, str | None]] = []
        self._settle_at = 0.0  # loop time of the earliest known settlement; may only ever be too early
        self.iterations = 0  # passes of the main loop: stays still while idle

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serve until `stop` is set, then let deliveries in flight finish or hand them back."""
        stop = stop or asyncio.Event()
        forward = asyncio.create_task(_set_when(stop, self._wake))
        t, target = self._tuning, self._settings.sandbox_webhook_target
        poster: Poster = (TransportPoster(target, self._transport, t.post_timeout_seconds) if self._transport
                          else AiohttpPoster(target, t.max_posts, t.post_timeout_seconds))
        courier = Courier(self._settings, poster, t.max_posts)
        log.info("sandbox.network_started", target=self._settings.sandbox_webhook_target)
        try:
            while not stop.is_set():
                try:
                    await self._serve(stop, courier)
                except (*_DB_ERRORS, ConnectionError) as exc:  # the database went away: try again shortly
                    log.warning("sandbox.network_error", error=str(exc))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)
        finally:
            forward.cancel()
            if self._refill is not None:
                self._refill.cancel()
            await self._drain()
            with contextlib.suppress(*_DB_ERRORS):
                await self._write_verdicts()
            await poster.aclose()
            log.info("sandbox.network_stopped")

    # --- the loop -------------------------------------------------------------------------------------------
    async def _serve(self, stop: asyncio.Event, courier: Courier) -> None:
        async with self._pool.acquire() as listener:
            await listener.add_listener(CHANNEL, self._on_notify)
            listener.add_termination_listener(self._on_notify)  # a lost LISTEN ends the sleep: reconnect now
            try:
                while not stop.is_set():
                    if listener.is_closed():
                        raise ConnectionError("the LISTEN connection is closed")
                    await self._pass(courier)
            finally:
                listener.remove_termination_listener(self._on_notify)
                with contextlib.suppress(*_DB_ERRORS):
                    await listener.remove_listener(CHANNEL, self._on_notify)

    async def _pass(self, courier: Courier) -> None:
        """Settle what is due, start the deliveries that are due; if there was nothing, sleep until there is."""
        self.iterations += 1
        self._wake.clear()  # before looking: a commit from now on ends the sleep below
        await self._write_verdicts()
        worked = await self._settle_due() + self._start(courier, await self._claim())
        if not worked:
            await self._sleep(await self._next_wait())

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _next_wait(self) -> float:
        row = await self._pool.fetchrow(_NEXT_DUE, self._settings.sandbox_settle_delay_ms / 1000)
        settle_in = math.inf if row["settle_in"] is None else row["settle_in"]
        deliver_in = math.inf if row["deliver_in"] is None else row["deliver_in"]
        self._settle_at = asyncio.get_running_loop().time() + settle_in
        if self._capacity() == 0:  # full: a finishing delivery wakes us, not the due time
            deliver_in = math.inf
        t = self._tuning
        return min(max(min(settle_in, deliver_in), t.min_wait_seconds), t.idle_seconds)

    # --- settlement -----------------------------------------------------------------------------------------
    async def _settle_due(self) -> int:
        """Skipped until the earliest known settlement is due: work made since is due no earlier, because
        everything settles one delay after its last change."""
        if asyncio.get_running_loop().time() < self._settle_at:
            return 0
        limit = self._tuning.batch_size
        async with self._pool.acquire() as conn, conn.transaction():
            return (await settle_due_intents(conn, self._settings, limit)
                    + await settle_due_refunds(conn, self._settings, limit)
                    + await decide_due_disputes(conn, self._settings, limit)
                    + await settle_due_payouts(conn, self._settings, limit))

    # --- delivery -------------------------------------------------------------------------------------------
    def _capacity(self) -> int:
        return self._tuning.max_in_flight - len(self._in_flight)

    async def _claim(self) -> list[Claimed]:
        room = min(self._capacity(), self._tuning.batch_size)
        if room <= 0:
            return []
        rows = await self._pool.fetch(_CLAIM, room, self._tuning.lease_seconds, list(self._in_flight))
        return [Claimed(r["event_id"], r["type"], r["body"].encode(), r["attempts"])
                for r in sorted(rows, key=lambda r: r["seq"])]

    def _start(self, courier: Courier, events: list[Claimed]) -> int:
        for event in events:  # in creation order: without shuffling, earlier events are posted first
            task = asyncio.create_task(self._deliver(courier, event))
            self._in_flight[event.event_id] = task
            task.add_done_callback(lambda _, event_id=event.event_id: self._done(event_id))
        return len(events)

    def _done(self, event_id: str) -> None:
        self._in_flight.pop(event_id, None)
        # Capacity is back, a verdict is to be written, and a retry may be due before anything we knew of.
        if self._refill is None:
            self._refill = asyncio.get_running_loop().call_later(self._tuning.refill_delay_seconds, self._refilled)

    def _refilled(self) -> None:
        self._refill = None
        self._wake.set()

    async def _deliver(self, courier: Courier, event: Claimed) -> None:
        self._record(event, await courier.deliver(event))

    def _record(self, event: Claimed, outcome: Outcome) -> None:
        if outcome.verdict == Verdict.RETRY and event.attempts < MAX_ATTEMPTS:
            wait = backoff_seconds(event.attempts, self._settings.sandbox_webhook_first_retry_seconds)
            self._rescheduled.append((event.event_id, event.attempts, wait, outcome.error))
            return
        state = "exhausted" if outcome.verdict == Verdict.RETRY else outcome.verdict.value
        if state == "exhausted":
            log.warning("sandbox.webhook_gave_up", event_id=event.event_id, attempts=event.attempts)
        self._finished.append((event.event_id, event.attempts, state, outcome.error))

    async def _write_verdicts(self) -> None:
        finished, self._finished = self._finished, []
        rescheduled, self._rescheduled = self._rescheduled, []
        try:
            if finished:
                await self._pool.execute(_FINISH, *map(list, zip(*finished, strict=True)))
            if rescheduled:
                await self._pool.execute(_RESCHEDULE, *map(list, zip(*rescheduled, strict=True)))
        except _DB_ERRORS as exc:
            # The verdicts are lost, the leases are not: the events are offered again when they run out.
            log.warning("sandbox.webhooks_unrecorded", events=len(finished) + len(rescheduled), error=str(exc))
            raise

    async def _drain(self) -> None:
        """Give deliveries in flight a moment to finish; hand the others back to the next runner at once."""
        if not self._in_flight:
            return
        _, pending = await asyncio.wait(list(self._in_flight.values()), timeout=self._tuning.shutdown_grace_seconds)
        unfinished = [event_id for event_id, task in self._in_flight.items() if task in pending]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if unfinished:
            with contextlib.suppress(*_DB_ERRORS):
                await self._pool.execute(_RELEASE, unfinished)


async def _set_when(stop: asyncio.Event, wake: asyncio.Event) -> None:
    await stop.wait()
    wake.set()


# --- running it ---------------------------------------------------------------------------------------------
# One connection listens; the others settle, claim and record verdicts (many deliveries share them briefly).
POOL_SIZE = 8


async def network_pool(settings: Settings) -> asyncpg.Pool:
    """The network's own writes (delivery verdicts, leases, settlements) commit without waiting for the WAL
    flush: a server crash could lose the last of them, and each lost one is redone (an event delivered again,
    which receivers de-duplicate; a settlement made again, to the same outcome), as Stripe's at-least-once
    delivery already requires of every receiver. Thousands of fsyncs a second under load were the cost."""
    return await create_pool(settings.database_url, max_size=POOL_SIZE, durable_commits=False)


@contextlib.asynccontextmanager
async def running_network(settings: Settings) -> AsyncIterator[SandboxNetwork]:
    """A network serving `settings.database_url` in a task of this event loop (the in-process test stack)."""
    pool = await network_pool(settings)
    network, stop = SandboxNetwork(pool, settings), asyncio.Event()
    task = asyncio.create_task(network.run(stop))
    try:
        yield network
    finally:
        stop.set()
        await task
        await pool.close()


async def serve_network(settings: Settings) -> None:
    """`paysaga sandbox-network`: serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    pool = await network_pool(settings)
    try:
        await SandboxNetwork(pool, settings).run(stop)
    finally:
        await pool.close()
