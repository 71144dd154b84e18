"""Load benchmark of a RUNNING paysaga stack (`make run` / `paysaga dev`): payments end to end, webhooks, and the
machine's ceiling (empty Temporal workflows on the same server); what a payment costs, and how the service
degrades (shedding, standing load, a worker restart).

    .venv/bin/python bench/payments.py [--mode open|closed|both|restart] [--duration 20] [--rate 20]
                                       [--concurrency 20] [--pending N] [--cost-sample 50]

open loop:   POST /v1/payments at a fixed offered rate (absolute schedule, never waits for answers), then watches
             each payment until it is completed; samples of signed `payment_intent.succeeded` webhooks for
             payments that already completed measure POST /v1/webhooks/stripe.
closed loop: N clients, each: POST a payment, wait until it is terminal, repeat; then the ceiling: empty
             workflows started and awaited with the same concurrency by an in-process worker.
restart:     with --pending payments waiting for 3-D Secure, SIGKILL the worker (`make run` restarts it) and
             start a few fresh payments at once: how long fresh work waits behind the restart.

Every phase also reports POST outcomes (admitted / shed / timed out), CPU seconds by process, and, from the
Temporal histories of a sample of what it completed, the workflow tasks, events and visibility writes per item.

Only loopback addresses are accepted. See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import secrets
import shlex
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.worker import PollerBehaviorAutoscaling, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

# The workflow sandbox re-imports this module for every run: keep what it pulls in passed through.
with workflow.unsafe.imports_passed_through():
    import httpx

    from activities.providers.webhooks.stripe_signature import sign_stripe_payload


@workflow.defn
class EmptyWorkflow:
    """The cheapest possible workflow: what one workflow costs this Temporal server and this machine."""

    @workflow.run
    async def run(self) -> None:
        return None


TERMINAL = {"completed", "failed", "canceled"}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
PAGE = 100
STANDING = "standing"  # metadata.bench_role of the payments left waiting for 3-D Secure
THREE_DS_REQUIRED = "pm_card_threeDSecure2Required"
EMPTY_PHASES = ("ceiling", "empty reference")
RETRY_AFTER_CAP = 10.0  # seconds: a longer Retry-After would outlast the bench's bounded phases
COST_BOUND = 60.0  # seconds for fetching one phase's sample of histories
STATUS_PAGES = 50  # list pages (of 100) searched for the standing payments' statuses
WEBHOOK_SETTLE = 1.0  # seconds after a phase for the sandbox's last deliveries to reach the API's counters
WORKER_BACK_LIMIT = 30.0  # seconds to wait for the supervisor to restart the killed worker
REFERENCE_EMPTIES = 3


# --- results --------------------------------------------------------------------------------------------------
@dataclass
class Phase:
    """Raw results of one phase (standing load, open loop, closed loop, ceiling, restart)."""

    name: str
    latencies: dict[str, list[float]] = field(default_factory=dict)  # metric -> milliseconds
    errors: Counter[str] = field(default_factory=Counter)
    throughput: dict[str, float] = field(default_factory=dict)  # metric -> per second
    info: dict[str, Any] = field(default_factory=dict)
    posts: Counter[str] = field(default_factory=Counter)  # each POST /v1/payments answer: "201", "503 overloaded"
    keys: Counter[str] = field(default_factory=Counter)  # each payment (Idempotency-Key): how it ended up
    completed_ids: list[str] = field(default_factory=list)  # workflow ids of what the phase completed
    costs: dict[str, Any] = field(default_factory=dict)  # from the Temporal histories of a sample
    webhooks: Counter[str] = field(default_factory=Counter)  # the API's webhook outcomes over the phase
    server_posts: dict[str, dict[float, int]] = field(default_factory=dict)  # the API's POST histogram, by status
    cpu: dict[str, Any] = field(default_factory=dict)  # CPU seconds by process over the phase
    rows: list[dict[str, Any]] = field(default_factory=list)  # restart: one per fresh payment

    def add(self, metric: str, ms: float) -> None:
        self.latencies.setdefault(metric, []).append(ms)

    def error(self, kind: str) -> None:
        self.errors[kind] += 1

    def count(self, what: str) -> None:
        self.info[what] = self.info.get(what, 0) + 1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    return {"count": len(values), "p50": percentile(values, 0.50), "p95": percentile(values, 0.95),
            "p99": percentile(values, 0.99), "max": max(values)}


def elapsed_ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


def server_ms(payment: dict[str, Any]) -> float:
    created = datetime.fromisoformat(payment["created_at"])
    updated = datetime.fromisoformat(payment["updated_at"])
    return (updated - created).total_seconds() * 1000


# --- HTTP: customers and payments -------------------------------------------------------------------------------
@dataclass
class Customer:
    customer_id: str
    payment_method_id: str
    used: int = 0


def http_client(args: argparse.Namespace) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=args.base_url, headers={"Authorization": f"Bearer {args.api_key}"},
        timeout=httpx.Timeout(args.timeout), trust_env=False,
        limits=httpx.Limits(max_connections=args.max_connections, max_keepalive_connections=100),
    )


async def create_customer(http: httpx.AsyncClient, token: str = "pm_card_visa") -> Customer:
    resp = await http.post("/v1/customers", json={"name": "bench", "metadata": {"source": "bench/payments.py"}})
    resp.raise_for_status()
    customer_id = resp.json()["id"]
    resp = await http.post(f"/v1/customers/{customer_id}/payment_methods", json={"token": token})
    resp.raise_for_status()
    return Customer(customer_id, resp.json()["id"])


class CustomerPool:
    """Round-robin over customers, each used at most `per_customer` times (the risk velocity rule: 20/h)."""

    def __init__(self, http: httpx.AsyncClient, per_customer: int, token: str = "pm_card_visa") -> None:
        self._http, self._per, self._token = http, per_customer, token
        self._customers: list[Customer] = []
        self._cursor = 0
        self._lock = asyncio.Lock()

    async def prepare(self, payments: int) -> None:
        wanted = max(1, math.ceil(payments / self._per)) - len(self._customers)
        for start in range(0, max(wanted, 0), 10):
            batch = [create_customer(self._http, self._token) for _ in range(min(10, wanted - start))]
            self._customers += await asyncio.gather(*batch)

    async def take(self) -> Customer:
        for _ in range(len(self._customers)):
            customer = self._customers[self._cursor % len(self._customers)]
            self._cursor += 1
            if customer.used < self._per:
                customer.used += 1
                return customer
        async with self._lock:  # everyone is used up: one more customer
            if not self._customers or self._customers[-1].used >= self._per:
                self._customers.append(await create_customer(self._http, self._token))
        return await self.take()

    @property
    def size(self) -> int:
        return len(self._customers)


@dataclass
class Sent:
    payment: dict[str, Any]
    started: float  # perf_counter when the first POST was sent
    answered: float  # perf_counter when the 201 arrived
    first_answer: float  # perf_counter of the first answer of any kind (a shed one included)
    attempts: int  # POSTs sent under its Idempotency-Key


def retry_after(resp: httpx.Response) -> float | None:
    """The seconds a shed answer asks the client to wait (integer form; None when absent or an HTTP date)."""
    try:
        return max(0.0, float(resp.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


async def create_payment(http: httpx.AsyncClient, customer: Customer, phase: Phase, args: argparse.Namespace,
                         run_id: str, role: str = "load") -> Sent | None:
    """POST one payment. A shed answer (429/503) is retried after its Retry-After under the SAME Idempotency-Key,
    as a well-behaved client does (`--retry-shed`, `--shed-retries`); a client timeout is final, never hidden
    by a retry. Every answer is counted in `phase.posts`, how the payment ended up in `phase.keys`."""
    body = {"customer_id": customer.customer_id, "payment_method_id": customer.payment_method_id,
            "amount": "12.34", "currency": "EUR", "description": "bench",
            "metadata": {"bench_run": run_id, "bench_role": role}}
    headers = {"Idempotency-Key": f"bench-{uuid.uuid4()}"}
    tries = 1 + (args.shed_retries if args.retry_shed else 0)
    first, first_answer = time.perf_counter(), 0.0
    for attempt in range(1, tries + 1):
        started = time.perf_counter()
        try:
            # A deadline on the whole request: httpx's timeouts apply to each of pool, connect, write and read on
            # its own, so an answer 25 s late would not count as the client timeout it is.
            resp = await asyncio.wait_for(http.post("/v1/payments", json=body, headers=headers), args.timeout)
        except (TimeoutError, httpx.TimeoutException):
            phase.posts["timed out"] += 1
            phase.keys["timed out"] += 1
            phase.error(f"payment_create: timed out after {args.timeout:g}s (client timeout)")
            return None
        except httpx.HTTPError as exc:
            phase.posts[type(exc).__name__] += 1
            phase.keys["error"] += 1
            phase.error(f"payment_create: {type(exc).__name__}")
            return None
        first_answer = first_answer or time.perf_counter()
        kind = f"{resp.status_code} {_slug(resp)}".strip()
        phase.posts[kind] += 1
        shed = resp.status_code in (429, 503)
        # A retry can find the first try still holding its key (409 + Retry-After): wait as for a shed answer.
        in_flight = resp.status_code == 409 and _slug(resp) == "idempotency-key-in-flight"
        if shed:
            phase.add("payment_shed", elapsed_ms(started))
        if shed or in_flight:
            wait = retry_after(resp)
            if wait is None:
                phase.count("shed_without_retry_after")
            if attempt < tries:
                # Jitter (up to +20 %) so that a burst shed together does not come back together.
                await asyncio.sleep(min(wait if wait is not None else 1.0, RETRY_AFTER_CAP) * (1 + random.random() / 5))
                continue
            if not shed:
                phase.keys["error"] += 1
                phase.error(f"payment_create: HTTP {kind} after {tries} tries")
                return None
            phase.keys["shed, gave up" if args.retry_shed else "shed (not retried)"] += 1
            return None
        if resp.status_code != 201:
            phase.keys["error"] += 1
            phase.error(f"payment_create: HTTP {kind}")
            return None
        break
    phase.add("payment_create", elapsed_ms(started))
    phase.keys["admitted at once" if attempt == 1 else "admitted on a retry"] += 1
    if attempt > 1:
        phase.add("payment_create_retried", elapsed_ms(first))
    payment = resp.json()
    if role != STANDING and payment["status"] == "pending" and payment.get("next_action"):
        # The advisory fraud score asked for 3-D Secure (e.g. a burst from one customer): play the customer.
        phase.count("three_ds_challenges")
        url = payment["next_action"]["redirect_to_url"]["url"]
        try:
            await http.post(url.replace(str(http.base_url).rstrip("/"), ""), json={"outcome": "succeed"})
        except httpx.HTTPError as exc:
            phase.error(f"three_ds: {type(exc).__name__}")
    return Sent(payment, first, time.perf_counter(), first_answer, attempt)


def _slug(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("type", "")).rsplit("/", 1)[-1]
    except (ValueError, AttributeError):
        return ""


def post_budget(args: argparse.Namespace) -> float:
    """The longest one payment's POSTs can take, shed retries included."""
    retries = args.shed_retries if args.retry_shed else 0
    return (retries + 1) * args.timeout + retries * RETRY_AFTER_CAP * 1.2


# --- watching payments until they are terminal ------------------------------------------------------------------
class Tracker:
    """Resolves a future per payment once it is terminal: one list sweep every `interval` for all of them
    (`--poll list`), or one GET per payment every `interval` (`--poll each`)."""

    def __init__(self, http: httpx.AsyncClient, phase: Phase, interval: float, how: str) -> None:
        self._http, self._phase, self._interval, self._how = http, phase, interval, how
        self._pending: dict[str, asyncio.Future[tuple[dict[str, Any], float]]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._how == "list":
            self._task = asyncio.create_task(self._sweep_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait(self, payment: dict[str, Any], timeout: float) -> tuple[dict[str, Any], float] | None:
        """(terminal payment, perf_counter when seen), or None after `timeout` seconds."""
        if payment["status"] in TERMINAL:
            return payment, time.perf_counter()
        future = asyncio.get_running_loop().create_future()
        self._pending[payment["id"]] = future
        poller = asyncio.create_task(self._poll_one(payment["id"])) if self._how == "each" else None
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            self._pending.pop(payment["id"], None)
            if poller is not None:
                poller.cancel()

    def _seen(self, payment: dict[str, Any], when: float) -> None:
        future = self._pending.get(payment["id"])
        if future is not None and not future.done() and payment["status"] in TERMINAL:
            future.set_result((payment, when))

    async def _get(self, url: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        started = time.perf_counter()
        try:
            resp = await self._http.get(url, params=params)
        except httpx.HTTPError as exc:
            self._phase.error(f"poll: {type(exc).__name__}")
            return None
        if resp.status_code != 200:
            self._phase.error(f"poll: HTTP {resp.status_code}")
            return None
        self._phase.add("poll", elapsed_ms(started))
        return resp.json()

    async def _poll_one(self, payment_id: str) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if (body := await self._get(f"/v1/payments/{payment_id}")) is not None:
                self._seen(body, time.perf_counter())

    async def _sweep_forever(self) -> None:
        while True:
            next_at = time.perf_counter() + self._interval
            if self._pending:
                await self._sweep()
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    async def _sweep(self) -> None:
        """Newest first, page by page, until every pending payment has been seen."""
        wanted, cursor = set(self._pending), None
        for _ in range(len(wanted) // PAGE + 3):
            params: dict[str, Any] = {"limit": PAGE} | ({"starting_after": cursor} if cursor else {})
            body = await self._get("/v1/payments", params)
            if body is None:
                return
            now = time.perf_counter()
            for payment in body["data"]:
                wanted.discard(payment["id"])
                self._seen(payment, now)
            if not wanted or not body["has_more"]:
                return
            cursor = body["next_cursor"]


# --- webhooks -------------------------------------------------------------------------------------------------
def succeeded_event(payment: dict[str, Any]) -> bytes:
    """A Stripe-shaped `payment_intent.succeeded` for a payment, under a new event id (never an inbox duplicate)."""
    tenant_id = payment["workflow_id"].split("/")[1]
    intent = {"id": payment["provider_intent_id"], "object": "payment_intent", "amount": 1234, "currency": "eur",
              "status": "succeeded", "metadata": {"tenant_id": tenant_id, "payment_id": payment["id"]},
              "last_payment_error": None, "next_action": None}
    event = {"id": f"evt_bench_{secrets.token_hex(12)}", "object": "event", "type": "payment_intent.succeeded",
             "created": int(time.time()), "livemode": False, "api_version": "2025-01-27",
             "data": {"object": intent}}
    return json.dumps(event).encode()


async def send_webhook(http: httpx.AsyncClient, payment: dict[str, Any], secret: str, phase: Phase) -> None:
    body = succeeded_event(payment)
    headers = {"Stripe-Signature": sign_stripe_payload(body, secret, int(time.time())),
               "Content-Type": "application/json"}
    started = time.perf_counter()
    try:
        resp = await http.post("/v1/webhooks/stripe", content=body, headers=headers)
    except httpx.HTTPError as exc:
        phase.error(f"webhook: {type(exc).__name__}")
        return
    if resp.status_code != 200:
        phase.error(f"webhook: HTTP {resp.status_code} {_slug(resp)}")
        return
    phase.add("webhook", elapsed_ms(started))
    answer = resp.json()
    # The API's outcome labels (paysaga_webhook_events_total), so that these can be told apart from the sandbox's.
    outcome = "ignored" if "ignored" in answer else "duplicate" if answer.get("duplicate") else \
        ("no-op" if "nothing to do" in answer["note"] else "settled") if "note" in answer else "accepted"
    phase.info.setdefault("webhook_outcomes", Counter())[outcome] += 1


# --- the API's own counters (/metrics, Prometheus text) ---------------------------------------------------------
SAMPLE = re.compile(r"^(\w+)\{([^}]*)\}\s+(\S+)$", re.MULTILINE)
LABEL = re.compile(r'(\w+)="([^"]*)"')
POST_ROUTE = {"method": "POST", "route": "/v1/payments"}


def samples(metrics_text: str, name: str) -> Iterable[tuple[dict[str, str], float]]:
    for metric, labels, value in SAMPLE.findall(metrics_text):
        if metric == name:
            yield dict(LABEL.findall(labels)), float(value)


def webhook_counters(metrics_text: str) -> Counter[str]:
    """`paysaga_webhook_events_total` by outcome."""
    return Counter({labels["outcome"]: round(value)
                    for labels, value in samples(metrics_text, "paysaga_webhook_events_total")})


def post_histogram(metrics_text: str) -> dict[str, dict[float, int]]:
    """POST /v1/payments as the API timed it, by status: cumulative counts by bucket upper bound (seconds)."""
    out: dict[str, dict[float, int]] = {}
    for labels, value in samples(metrics_text, "paysaga_http_request_duration_seconds_bucket"):
        if all(labels.get(k) == v for k, v in POST_ROUTE.items()):
            out.setdefault(labels["status"], {})[float(labels["le"])] = round(value)
    return out


def histogram_delta(after: dict[str, dict[float, int]], before: dict[str, dict[float, int]]
                    ) -> dict[str, dict[float, int]]:
    delta = {status: {le: n - before.get(status, {}).get(le, 0) for le, n in buckets.items()}
             for status, buckets in after.items()}
    return {status: buckets for status, buckets in delta.items() if buckets.get(math.inf)}


def bucket_quantile(buckets: dict[float, int], q: float) -> float:
    """The upper bound of the bucket holding the q-quantile (all a histogram can tell)."""
    total = buckets[math.inf]
    return next(le for le in sorted(buckets) if buckets[le] >= q * total)


async def scrape(http: httpx.AsyncClient) -> str | None:
    try:
        resp = await http.get("/metrics")
    except httpx.HTTPError:
        return None
    return resp.text if resp.status_code == 200 else None


# --- one payment, end to end ------------------------------------------------------------------------------------
@dataclass
class Ctx:
    args: argparse.Namespace
    http: httpx.AsyncClient
    customers: CustomerPool
    tracker: Tracker
    phase: Phase
    run_id: str
    completed_at: list[float] = field(default_factory=list)


@dataclass
class Done:
    sent: Sent
    payment: dict[str, Any]  # as seen terminal
    seen: float  # perf_counter when seen terminal


async def one_payment(ctx: Ctx, webhook: bool, customer: Customer | None = None) -> Done | None:
    """POST, wait until terminal, record; None if it did not complete."""
    sent = await create_payment(ctx.http, customer or await ctx.customers.take(), ctx.phase, ctx.args, ctx.run_id)
    if sent is None:
        return None
    seen = await ctx.tracker.wait(sent.payment, ctx.args.complete_timeout)
    if seen is None:
        ctx.phase.error(f"not terminal within {ctx.args.complete_timeout:g}s")
        return None
    payment, when = seen
    if payment["status"] != "completed":
        ctx.phase.error(f"payment {payment['status']}: {payment.get('failure_code')}")
        return None
    ctx.phase.add("request_to_completed", (when - sent.started) * 1000)
    ctx.phase.add("server_created_to_completed", server_ms(payment))
    ctx.phase.completed_ids.append(payment["workflow_id"])
    ctx.completed_at.append(when)
    if webhook:
        await asyncio.sleep(ctx.args.webhook_delay)  # let the workflow close: the endpoint's fast path
        await send_webhook(ctx.http, payment, ctx.args.webhook_secret, ctx.phase)
    return Done(sent, payment, when)


async def bounded(coro: Awaitable[Any], timeout: float, phase: Phase, what: str) -> None:
    try:
        await asyncio.wait_for(coro, timeout)
    except TimeoutError:
        phase.error(f"{what}: gave up after {timeout:g}s")


# --- standing load: payments waiting for a 3-D Secure answer that never comes ----------------------------------
def standing_budget(args: argparse.Namespace) -> float:
    return 30 + args.pending * 0.5 + post_budget(args)


async def standing_load(args: argparse.Namespace, http: httpx.AsyncClient, run_id: str,
                        ids: list[str]) -> Phase:
    """Create `--pending` payments whose customers never answer the challenge: each stays `pending` (one waiting
    workflow holding a timer) until the saga's 3-D Secure timeout. Their ids go to `ids`."""
    phase = Phase(STANDING)
    customers = CustomerPool(http, args.per_customer, token=THREE_DS_REQUIRED)  # their own: velocity rules
    await customers.prepare(args.pending)
    gate = asyncio.Semaphore(args.pending_concurrency)

    async def one() -> None:
        async with gate:
            sent = await create_payment(http, await customers.take(), phase, args, run_id, role=STANDING)
        if sent is None:
            return
        if sent.payment["status"] != "pending":
            phase.error(f"standing payment answered {sent.payment['status']}, not pending")
            return
        ids.append(sent.payment["id"])

    started = time.perf_counter()
    await bounded(asyncio.gather(*(one() for _ in range(args.pending))), standing_budget(args), phase,
                  "standing load")
    phase.throughput["payment_create"] = len(ids) / (time.perf_counter() - started)
    phase.info.update(requested=args.pending, pending=len(ids), customers=customers.size)
    return phase


async def statuses(http: httpx.AsyncClient, ids: Iterable[str]) -> Counter[str]:
    """The status of each of `ids`, newest first through the list (as the tracker does); `unseen` if not found."""
    wanted, found, cursor = set(ids), Counter[str](), None
    for _ in range(STATUS_PAGES):
        if not wanted:
            break
        params: dict[str, Any] = {"limit": PAGE} | ({"starting_after": cursor} if cursor else {})
        resp = await http.get("/v1/payments", params=params)
        if resp.status_code == 429:  # the tenant's bucket: wait, as a client would
            await asyncio.sleep(min(retry_after(resp) or 1.0, RETRY_AFTER_CAP))
            continue
        resp.raise_for_status()
        body = resp.json()
        for payment in body["data"]:
            if payment["id"] in wanted:
                wanted.discard(payment["id"])
                found[payment["status"]] += 1
        if not body["has_more"]:
            break
        cursor = body["next_cursor"]
    if wanted:
        found["unseen"] = len(wanted)
    return found


async def running_payment_workflows(client: Client | None) -> int | None:
    """Every PaymentWorkflow still running on the server (visibility), whoever started it."""
    if client is None:
        return None
    try:
        query = 'WorkflowType="PaymentWorkflow" AND ExecutionStatus="Running"'
        return (await asyncio.wait_for(client.count_workflows(query), 10)).count
    except Exception:  # visibility is a nice-to-have here: the bench reports without it
        return None


async def standing_snapshot(http: httpx.AsyncClient, client: Client | None, ids: list[str]) -> dict[str, Any]:
    try:
        found = await asyncio.wait_for(statuses(http, ids), 30)
    except (httpx.HTTPError, TimeoutError) as exc:
        return {"error": type(exc).__name__}
    return {"statuses": dict(found), "running_payment_workflows": await running_payment_workflows(client)}


# --- open loop --------------------------------------------------------------------------------------------------
async def open_loop(args: argparse.Namespace, http: httpx.AsyncClient, run_id: str) -> Phase:
    phase = Phase("open")
    total = max(1, round(args.rate * args.duration))
    ctx = await new_ctx(args, http, phase, run_id, total)
    ctx.tracker.start()
    lags, tasks, started = [], [], time.perf_counter()
    for i in range(total):
        due = started + i / args.rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        lags.append(elapsed_ms(due))
        tasks.append(asyncio.create_task(one_payment(ctx, webhook=i % args.webhook_every == 0)))
    window = time.perf_counter() - started
    drain = args.complete_timeout + args.webhook_delay + args.timeout + post_budget(args)
    await bounded(asyncio.gather(*tasks), drain, phase, "open loop drain")
    await ctx.tracker.stop()
    phase.throughput["payment_create"] = total / (window + 1 / args.rate)
    if ctx.completed_at:
        phase.throughput["request_to_completed"] = len(ctx.completed_at) / (max(ctx.completed_at) - started)
    lag = {k: round(v, 1) for k, v in summary(lags).items()}
    phase.info.update(offered=total, send_lag_ms=lag, customers=ctx.customers.size)
    return phase


async def new_ctx(args: argparse.Namespace, http: httpx.AsyncClient, phase: Phase, run_id: str,
                  expected: int) -> Ctx:
    customers = CustomerPool(http, args.per_customer)
    await customers.prepare(expected)
    return Ctx(args, http, customers, Tracker(http, phase, args.poll_interval, args.poll), phase, run_id)


# --- closed loop ------------------------------------------------------------------------------------------------
async def closed_client(ctx: Ctx, end: float) -> None:
    while time.perf_counter() < end:
        if await one_payment(ctx, webhook=False) is None:
            await asyncio.sleep(0.1)  # no hot loop when the service errors


async def closed_loop(args: argparse.Namespace, http: httpx.AsyncClient, run_id: str) -> Phase:
    phase = Phase("closed")
    ctx = await new_ctx(args, http, phase, run_id, args.concurrency * args.per_customer)
    ctx.tracker.start()
    started = time.perf_counter()
    end = started + args.duration
    clients = [closed_client(ctx, end) for _ in range(args.concurrency)]
    await bounded(asyncio.gather(*clients), args.duration + args.complete_timeout + args.timeout + post_budget(args),
                  phase, "closed loop")
    await ctx.tracker.stop()
    in_window = [t for t in ctx.completed_at if t <= end]
    phase.throughput["request_to_completed"] = len(in_window) / args.duration
    phase.info.update(completed_in_window=len(in_window), customers=ctx.customers.size)
    return phase


# --- the ceiling: empty workflows on the same Temporal server ---------------------------------------------------
@asynccontextmanager
async def empty_worker(client: Client) -> AsyncIterator[str]:
    """An in-process worker for EmptyWorkflow on a task queue of its own; yields the queue."""
    queue = f"bench-empty-{uuid.uuid4().hex[:8]}"
    worker = Worker(client, task_queue=queue, workflows=[EmptyWorkflow], workflow_runner=ceiling_runner(),
                    workflow_task_poller_behavior=PollerBehaviorAutoscaling(),
                    graceful_shutdown_timeout=timedelta(seconds=2))
    async with worker:
        yield queue


async def empty_ceiling(args: argparse.Namespace, client: Client | None) -> Phase:
    phase = Phase("ceiling")
    if client is None:
        raise RuntimeError("Temporal is not reachable")
    async with empty_worker(client) as queue:
        end = time.perf_counter() + args.ceiling_duration
        loops = [empty_loop(client, queue, end, phase, args.timeout) for _ in range(args.concurrency)]
        await bounded(asyncio.gather(*loops), args.ceiling_duration + 2 * args.timeout, phase, "ceiling")
    done = len(phase.latencies.get("empty_workflow", []))
    phase.throughput["empty_workflow"] = done / args.ceiling_duration
    return phase


async def empty_reference(args: argparse.Namespace, client: Client | None) -> Phase:
    """Without the ceiling phase, a few empty workflows only for their histories: the unit the cost table
    compares a payment with."""
    phase = Phase("empty reference")
    if client is None:
        raise RuntimeError("Temporal is not reachable")
    async with empty_worker(client) as queue:
        for _ in range(REFERENCE_EMPTIES):
            wf_id = f"bench-empty-{uuid.uuid4().hex}"
            await asyncio.wait_for(client.execute_workflow(
                EmptyWorkflow.run, id=wf_id, task_queue=queue, execution_timeout=timedelta(seconds=args.timeout)),
                args.timeout)
            phase.completed_ids.append(wf_id)
    return phase


def ceiling_runner() -> SandboxedWorkflowRunner:
    """The sandbox stays on, but this module is passed through instead of re-executed for every run (that would
    cost ~25 ms of CPU per workflow here, as much as the server's work): a light workflow module whose imports are
    passed through, as the paysaga worker has, costs about nothing to re-import."""
    name = EmptyWorkflow.__module__
    if name == "__main__":  # the sandbox imports a script's workflows as __temporal_main__
        name = "__temporal_main__"
        sys.modules.setdefault(name, sys.modules["__main__"])
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(name))


async def empty_loop(client: Client, queue: str, end: float, phase: Phase, timeout: float) -> None:
    while time.perf_counter() < end:
        started = time.perf_counter()
        wf_id = f"bench-empty-{uuid.uuid4().hex}"
        try:
            await asyncio.wait_for(client.execute_workflow(
                EmptyWorkflow.run, id=wf_id, task_queue=queue,
                execution_timeout=timedelta(seconds=timeout)), timeout)
        except Exception as exc:  # counted by kind; the loop goes on
            phase.error(f"empty_workflow: {type(exc).__name__}")
            await asyncio.sleep(0.1)
            continue
        if time.perf_counter() <= end:
            phase.add("empty_workflow", elapsed_ms(started))
            phase.completed_ids.append(wf_id)


# --- restart: SIGKILL the worker with payments waiting, then fresh work --------------------------------------------
def worker_pid(path: Path) -> int:
    """The worker's pid from its pid file, checked to be a live paysaga worker before any signal is sent to it."""
    pid = int(path.read_text().strip())
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    if "paysaga" not in cmdline or "worker" not in cmdline:
        raise RuntimeError(f"pid {pid} is not a paysaga worker: {cmdline[:80]!r}")
    return pid


async def worker_back(path: Path, old: int, since: float) -> tuple[int, float] | None:
    """(new pid, seconds since `since`) once the pid file names another live worker; None after the limit."""
    while time.perf_counter() - since < WORKER_BACK_LIMIT:
        try:
            pid = worker_pid(path)
        except (OSError, ValueError, RuntimeError):  # between the old process and the new one
            pid = old
        if pid != old:
            return pid, time.perf_counter() - since
        await asyncio.sleep(0.05)
    return None


def restart_budget(args: argparse.Namespace) -> float:
    return args.quiesce + args.restart_fresh * args.restart_spacing + post_budget(args) + args.complete_timeout + \
        WORKER_BACK_LIMIT


async def restart_phase(args: argparse.Namespace, http: httpx.AsyncClient, run_id: str) -> Phase:
    """SIGKILL the worker, then at once `--restart-fresh` payments (a burst, or one every `--restart-spacing` s):
    what fresh work waits while the supervisor restarts the worker, with the standing payments waiting."""
    phase = Phase("restart")
    ctx = await new_ctx(args, http, phase, run_id, args.restart_fresh)
    customers = [await ctx.customers.take() for _ in range(args.restart_fresh)]  # made before the kill
    old = worker_pid(args.worker_pid_file)
    ctx.tracker.start()
    killed = time.perf_counter()
    os.kill(old, signal.SIGKILL)
    back = asyncio.create_task(worker_back(args.worker_pid_file, old, killed))

    async def fresh(i: int) -> None:
        await asyncio.sleep(i * args.restart_spacing)
        sent_after = time.perf_counter() - killed
        done = await one_payment(ctx, webhook=False, customer=customers[i])
        row: dict[str, Any] = {"n": i + 1, "sent_after_kill_s": round(sent_after, 2)}
        if done is not None:
            row.update(workflow_id=done.payment["workflow_id"], attempts=done.sent.attempts,
                       first_answer_after_kill_s=round(done.sent.first_answer - killed, 2),
                       admitted_after_kill_s=round(done.sent.answered - killed, 2),
                       post_ms=round((done.sent.answered - done.sent.started) * 1000),
                       completed_ms=round((done.seen - done.sent.started) * 1000), status="completed")
        phase.rows.append(row)

    await bounded(asyncio.gather(*(fresh(i) for i in range(args.restart_fresh))), restart_budget(args), phase,
                  "restart")
    await ctx.tracker.stop()
    came_back = await back
    phase.rows.sort(key=lambda r: r["n"])
    answered = [r["first_answer_after_kill_s"] for r in phase.rows if "first_answer_after_kill_s" in r]
    admitted = [r["admitted_after_kill_s"] for r in phase.rows if "admitted_after_kill_s" in r]
    phase.info.update(
        standing_pending=args.pending, fresh=args.restart_fresh, worker_pid_killed=old,
        worker_pid_new=came_back[0] if came_back else None,
        worker_pid_file_after_s=round(came_back[1], 2) if came_back else f"not within {WORKER_BACK_LIMIT:g}s",
        kill_to_first_answer_s=min(answered, default=None), kill_to_first_admitted_s=min(admitted, default=None))
    return phase


# --- what a payment costs: its Temporal history ---------------------------------------------------------------
E = EventType
CLOSE_EVENTS = {E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, E.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
                E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED, E.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
                E.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT, E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW}
COUNTED = {  # event type -> cost field; markers are split by name below
    E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: "workflow_tasks",
    E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activities",
    E.EVENT_TYPE_TIMER_STARTED: "timers",
    E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signals",
    E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "updates",
    E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: "upserts",
    E.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT: "task_failures",
    E.EVENT_TYPE_WORKFLOW_TASK_FAILED: "task_failures",
}
COST_LABELS = {
    "workflow_tasks": "workflow tasks (WorkflowTaskCompleted)",
    "events": "history events",
    "local_activities": "local activities (core_local_activity markers)",
    "other_markers": "other markers (patches)",
    "activities": "activities scheduled",
    "timers": "timers started",
    "signals": "signals received",
    "updates": "updates accepted",
    "upserts": "search-attribute upserts",
    "visibility_writes": "visibility writes (1 start + upserts + 1 close)",
    "task_failures": "workflow task timeouts / failures",
    "first_task_wait_ms": "first workflow task: scheduled → started, ms",
}


def history_costs(events: Iterable[HistoryEvent]) -> dict[str, float]:
    """What one workflow run cost the server, counted from its history events."""
    costs: dict[str, float] = dict.fromkeys(COST_LABELS, 0)
    first_scheduled: HistoryEvent | None = None
    closed = False
    for event in events:
        kind = event.event_type
        costs["events"] += 1
        if kind == E.EVENT_TYPE_MARKER_RECORDED:
            local = event.marker_recorded_event_attributes.marker_name == "core_local_activity"
            costs["local_activities" if local else "other_markers"] += 1
        elif kind in COUNTED:
            costs[COUNTED[kind]] += 1
        if kind == E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED and first_scheduled is None:
            first_scheduled = event
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_STARTED and first_scheduled is not None \
                and event.workflow_task_started_event_attributes.scheduled_event_id == first_scheduled.event_id:
            waited = event.event_time.ToNanoseconds() - first_scheduled.event_time.ToNanoseconds()
            costs["first_task_wait_ms"] = waited / 1e6
        closed = closed or kind in CLOSE_EVENTS
    # The dev server writes a visibility record when a run starts, on every upsert, and when it closes.
    costs["visibility_writes"] = 1 + costs["upserts"] + (1 if closed else 0)
    return costs


def mean_and_max(samples: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {k: {"mean": sum(s[k] for s in samples) / len(samples), "max": max(s[k] for s in samples)}
            for k in COST_LABELS} if samples else {}


async def sample_costs(args: argparse.Namespace, client: Client | None, phase: Phase) -> None:
    """Fetch the histories of up to `--cost-sample` of what the phase completed and count their costs."""
    if client is None or args.cost_sample <= 0 or not phase.completed_ids:
        return
    chosen = random.sample(phase.completed_ids, min(args.cost_sample, len(phase.completed_ids)))
    gate = asyncio.Semaphore(8)  # a few at a time: the server is still busy with the next phase's quiesce
    per_workflow: dict[str, dict[str, float]] = {}

    async def one(wf_id: str) -> None:
        async with gate:
            try:
                history = await client.get_workflow_handle(wf_id).fetch_history()
            except Exception as exc:  # counted; the others still make the sample
                phase.error(f"history: {type(exc).__name__}")
                return
        per_workflow[wf_id] = history_costs(history.events)

    await bounded(asyncio.gather(*(one(w) for w in chosen)), COST_BOUND, phase, "history sample")
    phase.costs = {"sampled": len(per_workflow), "of": len(phase.completed_ids),
                   "per_workflow": per_workflow, "summary": mean_and_max(list(per_workflow.values()))}


# --- CPU by process --------------------------------------------------------------------------------------------
CLK_TCK = os.sysconf("SC_CLK_TCK")


def parse_proc_stat(text: str) -> tuple[int, int]:
    """(ppid, utime + stime in clock ticks) from a /proc/<pid>/stat line (the command may contain spaces)."""
    rest = text[text.rindex(")") + 2:].split()
    return int(rest[1]), int(rest[11]) + int(rest[12])


def read_stat(pid: int) -> tuple[int, int] | None:
    try:
        return parse_proc_stat(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):  # gone meanwhile
        return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def postmaster_pid(pg_dir: Path) -> int | None:
    """The PostgreSQL server of THIS stack: its postmaster.pid, else the process started with `-D <pg_dir>`
    (another stack's `postgres:` processes on the same machine must not be counted)."""
    try:
        return int((pg_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        pass
    wanted = str(pg_dir.resolve())
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and wanted in cmdline(int(entry.name)) and "postgres" in cmdline(int(entry.name)):
            return int(entry.name)
    return None


def stack_processes(run_dir: Path, pg_dir: Path) -> dict[int, str]:
    """pid -> role: the pid files' processes and their children, PostgreSQL's postmaster and its children, the
    supervisor (`paysaga dev`) and this bench process."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := read_stat(int(entry.name))) is not None:
            parents[int(entry.name)] = stat[0]
    roots: dict[int, str] = {}
    for pid_file in sorted(run_dir.glob("*.pid")):
        try:
            roots[int(pid_file.read_text().strip())] = pid_file.stem
        except (OSError, ValueError):
            continue
    if (pg := postmaster_pid(pg_dir)) is not None:
        roots[pg] = "postgres"
    roles = dict(roots)
    frontier = list(roots)
    while frontier:  # children inherit their root's role
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in roles:
                roles[pid] = roles[parent]
                frontier.append(pid)
    for pid in list(roots):  # the supervisor: the parent of the pid files' processes, not walked (they are roles)
        ppid = parents.get(pid)
        if ppid and ppid not in roles and "paysaga" in cmdline(ppid) and " dev" in cmdline(ppid):
            roles[ppid] = "supervisor"
    roles[os.getpid()] = "bench"
    return roles


class CpuMeter:
    """CPU seconds (utime + stime, all threads) per stack process over a phase. Sampled every `interval` so a
    process that exits mid-phase (the killed worker) still counts up to its last sample, and one that starts
    (its restart) counts from zero."""

    def __init__(self, run_dir: Path, pg_dir: Path, interval: float = 1.0) -> None:
        self._run_dir, self._pg_dir, self._interval = run_dir, pg_dir, interval
        self._first: dict[int, int] = {}
        self._last: dict[int, int] = {}
        self._roles: dict[int, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._wall = 0.0
        self._machine = (0, 0)

    def _sample(self, initial: bool) -> None:
        for pid, role in stack_processes(self._run_dir, self._pg_dir).items():
            stat = read_stat(pid)
            if stat is None:
                continue
            self._roles.setdefault(pid, role)
            self._first.setdefault(pid, stat[1] if initial else 0)
            self._last[pid] = stat[1]

    async def _every(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self._sample(initial=False)

    def start(self) -> None:
        self._sample(initial=True)
        self._wall, self._machine = time.perf_counter(), machine_ticks()
        self._task = asyncio.create_task(self._every())

    async def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._sample(initial=False)
        wall = time.perf_counter() - self._wall
        busy, total = (end - start for end, start in zip(machine_ticks(), self._machine, strict=True))
        by_role: Counter[str] = Counter()
        pids: Counter[str] = Counter()
        for pid, role in self._roles.items():
            by_role[role] += self._last[pid] - self._first[pid]
            pids[role] += 1
        return {"wall_s": wall, "cores": os.cpu_count() or 1,
                "machine_busy_s": busy / CLK_TCK, "machine_total_s": total / CLK_TCK,
                "by_process_s": {role: ticks / CLK_TCK for role, ticks in by_role.most_common()},
                "pids": dict(pids)}


# --- report -----------------------------------------------------------------------------------------------------
LABELS = {
    "payment_create": "POST /v1/payments (admitted: 201)",
    "payment_create_retried": "POST first try → 201, shed then retried",
    "payment_shed": "POST /v1/payments shed (429/503 answer)",
    "request_to_completed": "request → completed (client)",
    "server_created_to_completed": "created → completed (server clock)",
    "webhook": "POST /v1/webhooks/stripe",
    "poll": "GET poll",
    "empty_workflow": "empty workflow start → result",
}
UNITS = {"payment_create": "offered/s", "request_to_completed": "completed/s", "empty_workflow": "workflows/s"}
ROLE_LABELS = {"temporal": "temporal (dev server + UI)", "sandbox-network": "sandbox-network (Stripe's stand-in)",
               "supervisor": "supervisor (paysaga dev)", "bench": "bench (this process)"}


def table(phases: list[Phase]) -> str:
    lines = ["| mode | metric | count | p50 ms | p95 ms | p99 ms | max ms | throughput |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for phase in phases:
        for metric in LABELS:
            if metric in phase.latencies:
                lines.append(row(phase, metric))
    return "\n".join(lines)


def row(phase: Phase, metric: str) -> str:
    s = summary(phase.latencies[metric])
    rate = phase.throughput.get(metric)
    unit = "created/s" if phase.name == STANDING else UNITS.get(metric, "")
    shown = f"{rate:.1f} {unit}" if rate is not None else ""
    cells = [phase.name, LABELS[metric], str(s["count"]), *(f"{s[k]:.0f}" for k in ("p50", "p95", "p99", "max")),
             shown]
    return "| " + " | ".join(cells) + " |"


def outcome_table(phases: list[Phase]) -> str:
    """Each POST /v1/payments answer, and what became of each payment (Idempotency-Key)."""
    lines = ["| mode | POSTs | admitted 201 | shed 429 | shed 503 | shed p95 / max ms | timed out | other | "
             "payments | admitted at once | admitted on a retry | shed, gave up | timed out / error |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in phases:
        if not p.posts:
            continue
        shed = {s: sum(n for k, n in p.posts.items() if k.startswith(s)) for s in ("429", "503")}
        admitted, timed_out = p.posts["201"], p.posts["timed out"]
        other = sum(p.posts.values()) - admitted - timed_out - sum(shed.values())
        s = summary(p.latencies.get("payment_shed", []))
        shed_ms = f"{s['p95']:.0f} / {s['max']:.0f}" if s["count"] else ""
        gave_up = p.keys["shed, gave up"] + p.keys["shed (not retried)"]
        cells = [p.name, sum(p.posts.values()), admitted, shed["429"], shed["503"], shed_ms, timed_out, other,
                 sum(p.keys.values()), p.keys["admitted at once"], p.keys["admitted on a retry"], gave_up,
                 p.keys["timed out"] + p.keys["error"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def server_table(phases: list[Phase]) -> list[str]:
    """POST /v1/payments as the API's own histogram timed it over each phase: from the app receiving the request
    to its answer. What the client saw beyond that was spent before the app (connection, the API's event loop)."""
    lines = []
    for p in phases:
        for status, buckets in sorted(p.server_posts.items()):
            fast = max((n for le, n in buckets.items() if le <= 0.1), default=0)
            total = buckets[math.inf]
            cells = [p.name, status, str(total), f"{100 * fast / total:.0f} %",
                     *(_bound(bucket_quantile(buckets, q)) for q in (0.5, 0.95, 1.0))]
            lines.append("| " + " | ".join(cells) + " |")
    return ["| mode | status | POSTs | ≤ 100 ms | p50 | p95 | max |", "|---|---|---:|---:|---:|---:|---:|",
            *lines] if lines else []


def _bound(le: float) -> str:
    if le == math.inf:
        return "> 5 s"  # the API's largest finite bucket (api/metrics.py)
    return f"≤ {le * 1000:.0f} ms" if le < 1 else f"≤ {le:g} s"


def _num(value: float) -> str:
    return f"{value:.0f}" if value == int(value) or abs(value) >= 100 else f"{value:.2f}".rstrip("0").rstrip(".")


def cost_table(phases: list[Phase]) -> list[str]:
    """Per completed item: history counts (mean, max) of each payment phase next to the empty workflow's, then the
    webhooks the API received per completed payment, by outcome."""
    paying = [p for p in phases if p.name not in (*EMPTY_PHASES, STANDING) and (p.costs.get("summary") or p.webhooks)]
    empty = next((p for p in phases if p.name in EMPTY_PHASES and p.costs.get("summary")), None)
    columns = [*paying, *([empty] if empty else [])]
    if not paying:
        return []
    head = [f"{p.name} ({p.costs.get('sampled', 0)} of {p.costs.get('of', len(p.completed_ids))})" for p in columns]
    if empty:
        head[-1] = f"empty workflow, {head[-1]}"
    lines = ["| per completed item | " + " | ".join(f"{h} mean | max" for h in head) + " |",
             "|---|" + "---:|---:|" * len(columns)]
    for key, label in COST_LABELS.items():
        cells = []
        for p in columns:
            s = p.costs.get("summary", {}).get(key)
            cells += [_num(s["mean"]), _num(s["max"])] if s else ["", ""]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    outcomes = sorted({o for p in paying for o in p.webhooks}, key=lambda o: (o != "accepted", o))
    if outcomes:
        def webhook_row(label: str, count: Callable[[Phase], int]) -> str:
            cells = []
            for p in columns:  # a mean per completed payment; no max: the counters are the phase's totals
                per = _num(count(p) / len(p.completed_ids)) if p in paying and p.completed_ids else "-"
                cells += [per, ""]
            return f"| {label} | " + " | ".join(cells) + " |"

        lines.append(webhook_row("webhooks received by the API", lambda p: sum(p.webhooks.values())))
        for outcome in outcomes:
            label = "… accepted (became a signal)" if outcome == "accepted" else f"… {outcome}"
            lines.append(webhook_row(label, lambda p, o=outcome: p.webhooks[o]))  # type: ignore[misc]
    return lines


def cost_notes(phases: list[Phase]) -> list[str]:
    """'A payment costs X empty workflows': counts against the empty workflow's, and capacity against the ceiling."""
    empty = next((p for p in phases if p.name in EMPTY_PHASES and p.costs.get("summary")), None)
    ceiling = next((p for p in phases if p.name == "ceiling" and p.throughput.get("empty_workflow")), None)
    out = []
    for p in phases:
        if p.name in EMPTY_PHASES or p.name == STANDING:
            continue
        parts = []
        if empty and p.costs.get("summary"):
            mine, unit = p.costs["summary"], empty.costs["summary"]
            parts += [f"{mine[k]['mean'] / unit[k]['mean']:.1f}x its {k.replace('_', ' ')}"
                      for k in ("workflow_tasks", "events", "visibility_writes") if unit[k]["mean"]]
        rate = p.throughput.get("request_to_completed")
        if ceiling and rate and p.name == "closed":  # the open loop completes what it offers: not a capacity
            ratio = rate / ceiling.throughput["empty_workflow"]
            parts.append(f"capacity: {rate:.1f} completed payments/s ÷ {ceiling.throughput['empty_workflow']:.1f} "
                         f"empty workflows/s = {ratio:.2f} (≈ {1 / ratio:.1f} empty workflows per payment)")
        if parts:
            out.append(f"- {p.name}: a completed payment costs the empty workflow's " + ", ".join(parts))
    return out


def cpu_table(phases: list[Phase]) -> list[str]:
    lines = [row for p in phases if p.cpu for row in cpu_rows(p)]
    return ["| mode | process | pids | CPU s | share of stack | of the machine | CPU ms per item |",
            "|---|---|---:|---:|---:|---:|---:|", *lines] if lines else []


def cpu_rows(p: Phase) -> list[str]:
    """One row per process role, then the stack's total and what the rest of the machine used meanwhile."""
    cpu, items = p.cpu, len(p.completed_ids) or p.info.get("pending", 0)
    capacity = cpu["wall_s"] * cpu["cores"]
    stack = sum(cpu["by_process_s"].values())

    def line(name: str, seconds: float, pids: str = "", share: str = "", per_item: bool = True) -> str:
        per = f"{seconds * 1000 / items:.1f}" if items and per_item else ""
        of_machine = f"{100 * seconds / capacity:.0f} %"
        return f"| {p.name} | {name} | {pids} | {seconds:.1f} | {share} | {of_machine} | {per} |"

    out = [line(ROLE_LABELS.get(role, role), seconds, str(cpu["pids"][role]),
                f"{100 * seconds / stack:.0f} %" if stack else "")
           for role, seconds in cpu["by_process_s"].items()]
    out.append(line("**stack + bench**", stack, "", "100 %"))
    out.append(line("rest of the machine (not the stack)", max(0.0, cpu["machine_busy_s"] - stack), per_item=False))
    return out


def restart_lines(p: Phase) -> list[str]:
    i = p.info
    out = [f"restart: worker pid {i['worker_pid_killed']} SIGKILLed with {i['standing_pending']} standing payments "
           f"waiting; pid file named a new worker ({i['worker_pid_new']}) after {i['worker_pid_file_after_s']} s; "
           f"kill → first fresh POST answered {i['kill_to_first_answer_s']} s, first admitted (201) "
           f"{i['kill_to_first_admitted_s']} s.", "",
           "| fresh payment | sent after kill s | POSTs | POST → 201 ms | request → completed ms | "
           "first workflow task wait ms | status |", "|---:|---:|---:|---:|---:|---:|---|"]
    waits = p.costs.get("per_workflow", {})
    for r in p.rows:
        wait = waits.get(r.get("workflow_id", ""), {}).get("first_task_wait_ms")
        out.append(f"| {r['n']} | {r['sent_after_kill_s']} | {r.get('attempts', '')} | {r.get('post_ms', '')} | "
                   f"{r.get('completed_ms', '')} | {'' if wait is None else f'{wait:.0f}'} | "
                   f"{r.get('status', 'not completed (see errors)')} |")
    return out


def report(phases: list[Phase], command: str, standing: dict[str, Any]) -> str:
    out = [table(phases), "", "POST /v1/payments outcomes (a POST per answer; a payment per Idempotency-Key):", "",
           outcome_table(phases)]
    if server := server_table(phases):
        out += ["", "POST /v1/payments as the API timed it (its histogram over the phase; bucket bounds):", "",
                *server]
    out += ["", "Errors:"]
    errors = [(p.name, kind, n) for p in phases for kind, n in sorted(p.errors.items())]
    out += [f"- {name}: {kind}: {n}" for name, kind, n in errors] or ["- none"]
    if costs := cost_table(phases):
        out += ["", "Cost per completed item (Temporal histories of a sample; webhooks: the API's counters over the "
                "phase, less the bench's own):", "", *costs, "", *cost_notes(phases)]
    if cpu := cpu_table(phases):
        out += ["", "CPU by process over each phase (utime + stime from /proc):", "", *cpu]
    for p in phases:
        if p.name == "restart" and "worker_pid_killed" in p.info:
            out += ["", *restart_lines(p)]
    if standing:
        out += ["", "standing payments (waiting for 3-D Secure): " + json.dumps(standing, default=_jsonable)]
    for phase in phases:
        notes = {k: v for k, v in phase.info.items() if not (phase.name == "restart" and k.startswith("worker_pid"))}
        answers = {k: n for k, n in phase.posts.items() if k not in ("201",)}
        if answers:
            notes["post_answers_other_than_201"] = answers
        if notes:
            out.append(f"\n{phase.name}: " + json.dumps(notes, default=_jsonable))
    out += ["", f"Command: `{command}`"]
    return "\n".join(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Counter):
        return dict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value))


def raw_json(phases: list[Phase], args: argparse.Namespace, command: str, standing: dict[str, Any]) -> dict[str, Any]:
    return {
        "command": command, "args": {k: v for k, v in vars(args).items() if k not in ("api_key", "webhook_secret")},
        "standing": standing,
        "phases": {p.name: {"summary": {m: summary(v) for m, v in p.latencies.items()},
                            "latencies_ms": p.latencies, "errors": dict(p.errors),
                            "throughput_per_s": p.throughput, "info": p.info, "posts": dict(p.posts),
                            "payments": dict(p.keys), "costs": p.costs, "webhooks": dict(p.webhooks),
                            "cpu": p.cpu, "restart_rows": p.rows,
                            "api_post_histogram": {status: {str(le): n for le, n in buckets.items()}
                                                   for status, buckets in p.server_posts.items()}}
                   for p in phases},
    }


# --- command line -----------------------------------------------------------------------------------------------
def default_data_dir() -> Path:
    project = Path(__file__).resolve().parent.parent  # not at import: the workflow sandbox forbids resolve()
    return Path(os.environ.get("PAYSAGA_DATA_DIR", project / ".paysaga"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    data = default_data_dir()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["open", "closed", "both", "restart"], default="both")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per mode")
    p.add_argument("--rate", type=float, default=20.0, help="open loop: payments offered per second")
    p.add_argument("--concurrency", type=int, default=20, help="closed loop (and ceiling): clients")
    p.add_argument("--ceiling-duration", type=float, default=10.0, help="closed mode: seconds of empty "
                   "workflows (0: skip)")
    p.add_argument("--base-url", default=env("PAYSAGA_BENCH_BASE_URL", "http://127.0.0.1:8000"))
    p.add_argument("--api-key", default=env("PAYSAGA_API_KEY"), help="default: read --api-key-file")
    p.add_argument("--api-key-file", type=Path, default=data / "demo-api-key")
    p.add_argument("--temporal-address", default=env("PAYSAGA_BENCH_TEMPORAL_ADDRESS", "127.0.0.1:7233"))
    p.add_argument("--namespace", default="default")
    p.add_argument("--webhook-secret", default=env("PAYSAGA_BENCH_WEBHOOK_SECRET", "whsec_paysaga_dev_secret"))
    p.add_argument("--webhook-every", type=int, default=4, help="open loop: a webhook for every Nth payment")
    p.add_argument("--webhook-delay", type=float, default=0.5, help="seconds after completion before it")
    p.add_argument("--per-customer", type=int, default=15, help="payments per customer (velocity rule: 20/h)")
    p.add_argument("--poll", choices=["list", "each"], default="list",
                   help="list: one GET /v1/payments sweep per interval; each: one GET per payment")
    p.add_argument("--poll-interval", type=float, default=0.1, help="seconds")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP request / workflow")
    p.add_argument("--complete-timeout", type=float, default=15.0, help="seconds for a payment to complete")
    p.add_argument("--quiesce", type=float, default=20.0,
                   help="before each phase, wait at most this long for earlier payments to finish")
    p.add_argument("--max-connections", type=int, default=500)
    p.add_argument("--retry-shed", action=argparse.BooleanOptionalAction, default=True,
                   help="retry a shed POST (429/503) after its Retry-After with the same Idempotency-Key")
    p.add_argument("--shed-retries", type=int, default=3, help="retries of a shed POST, at most")
    p.add_argument("--cost-sample", type=int, default=50,
                   help="histories fetched per phase to count workflow tasks, events, visibility writes (0: skip)")
    p.add_argument("--pending", type=int, default=None,
                   help="standing load: payments left waiting for 3-D Secure before the phases (default 0; "
                   "restart mode: 300)")
    p.add_argument("--pending-concurrency", type=int, default=8, help="standing payments created at once")
    p.add_argument("--restart-fresh", type=int, default=10, help="restart mode: fresh payments after the kill")
    p.add_argument("--restart-spacing", type=float, default=0.0,
                   help="restart mode: seconds between the fresh payments (0: all at once)")
    p.add_argument("--run-dir", type=Path, default=data / "run", help="the stack's pid files")
    p.add_argument("--worker-pid-file", type=Path, help="restart mode: default <run-dir>/worker.pid")
    p.add_argument("--pg-dir", type=Path, default=data / "pg", help="the stack's PostgreSQL data dir (CPU split)")
    p.add_argument("--json", type=Path, help="write raw results here")
    args = p.parse_args(argv)
    if args.pending is None:
        args.pending = 300 if args.mode == "restart" else 0
    args.worker_pid_file = args.worker_pid_file or args.run_dir / "worker.pid"
    return args


def check_args(args: argparse.Namespace) -> None:
    host = urlsplit(args.base_url).hostname
    temporal_host = args.temporal_address.rsplit(":", 1)[0].strip("[]")
    if host not in LOOPBACK or temporal_host not in LOOPBACK:
        sys.exit("bench: only loopback addresses (127.0.0.1) are allowed")
    if args.rate <= 0 or args.duration <= 0 or args.concurrency < 1 or args.webhook_every < 1:
        sys.exit("bench: --rate, --duration, --concurrency and --webhook-every must be positive")
    if args.pending < 0 or args.shed_retries < 0 or args.pending_concurrency < 1 or args.restart_fresh < 1:
        sys.exit("bench: --pending and --shed-retries must be >= 0, --pending-concurrency and --restart-fresh >= 1")
    if args.mode == "restart":
        try:
            worker_pid(args.worker_pid_file)
        except (OSError, ValueError, RuntimeError) as exc:
            sys.exit(f"bench: restart mode needs the stack's live worker ({type(exc).__name__}: {exc})")
    if not args.api_key:
        try:
            args.api_key = args.api_key_file.read_text().strip()
        except OSError as exc:
            sys.exit(f"bench: no API key ({exc}); start the stack (make run) or pass --api-key")


async def connect_temporal(args: argparse.Namespace) -> Client | None:
    """The bench's Temporal client (histories, the ceiling); None if unreachable: the HTTP phases still run."""
    try:
        return await asyncio.wait_for(Client.connect(args.temporal_address, namespace=args.namespace), 10)
    except Exception as exc:  # reported; what needs Temporal reports its own error
        print(f"bench: Temporal not reachable ({type(exc).__name__}): no histories, no ceiling", file=sys.stderr)
        return None


async def run_phases(args: argparse.Namespace) -> tuple[list[Phase], dict[str, Any]]:
    run_id = uuid.uuid4().hex[:8]
    steps: list[tuple[str, Callable[[], Awaitable[Phase]]]] = []
    standing_ids: list[str] = []
    standing: dict[str, Any] = {}
    async with http_client(args) as http:
        client = await connect_temporal(args)
        if args.mode in ("open", "both"):
            steps.append(("open", lambda: open_loop(args, http, run_id)))
        if args.mode in ("closed", "both"):
            steps.append(("closed", lambda: closed_loop(args, http, run_id)))
            if args.ceiling_duration > 0:
                steps.append(("ceiling", lambda: empty_ceiling(args, client)))
        if args.mode == "restart":
            steps.append(("restart", lambda: restart_phase(args, http, run_id)))
        phases = []
        if args.pending > 0:
            phases.append(await measured(args, http, client, STANDING,
                                         lambda: standing_load(args, http, run_id, standing_ids)))
            await asyncio.sleep(2 * WEBHOOK_SETTLE)  # their requires_action webhooks, before the first phase counts
            standing["at_start"] = await standing_snapshot(http, client, standing_ids)
        for name, step in steps:
            waited = await quiesce(http, args.quiesce)
            phases.append(await measured(args, http, client, name, step))
            phases[-1].info["quiesced_s"] = round(waited, 1)
        if args.cost_sample > 0 and not any(p.name == "ceiling" for p in phases):
            reference = await guarded("empty reference", lambda: empty_reference(args, client))
            await sample_costs(args, client, reference)
            phases.append(reference)
        if standing_ids:
            standing["at_end"] = await standing_snapshot(http, client, standing_ids)
        return phases, standing


async def measured(args: argparse.Namespace, http: httpx.AsyncClient, client: Client | None, name: str,
                   step: Callable[[], Awaitable[Phase]]) -> Phase:
    """A phase with what it cost: CPU by process while it runs, the API's webhook counters over it, and the
    histories of a sample of what it completed (fetched after the CPU window, so they do not count in it)."""
    before = await scrape(http)
    meter = CpuMeter(args.run_dir, args.pg_dir)
    meter.start()
    try:
        phase = await guarded(name, step)
    finally:
        cpu = await meter.stop()
    phase.cpu = cpu
    await sample_costs(args, client, phase)
    await asyncio.sleep(WEBHOOK_SETTLE)
    after = await scrape(http)
    if before is not None and after is not None:
        phase.webhooks = webhook_counters(after) - webhook_counters(before)
        phase.webhooks.subtract(phase.info.get("webhook_outcomes", Counter()))  # the bench's own signed ones
        phase.webhooks = +phase.webhooks
        phase.server_posts = histogram_delta(post_histogram(after), post_histogram(before))
    return phase


async def quiesce(http: httpx.AsyncClient, limit: float) -> float:
    """Wait (at most `limit` s) until the newest payments are all terminal, so a phase does not inherit the
    backlog of the one before; standing payments wait on purpose and are not waited for. Returns the seconds
    waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        try:
            resp = await http.get("/v1/payments", params={"limit": PAGE})
            if resp.status_code == 200 and all(p["status"] in TERMINAL or (p.get("metadata") or {}).get(
                    "bench_role") == STANDING for p in resp.json()["data"]):
                break
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.5)
    return time.perf_counter() - started


async def guarded(name: str, step: Callable[[], Awaitable[Phase]]) -> Phase:
    """A phase that crashes (e.g. the stack is down) is reported as an error; the other phases still count."""
    try:
        return await step()
    except Exception as exc:  # e.g. the stack is down: report it, keep the other phases
        print(f"bench: phase {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        phase = Phase(name)
        phase.error(f"phase aborted: {type(exc).__name__}")
        return phase


def redacted_command(argv: list[str]) -> str:
    """The command line as run, without secrets (`--api-key X`, `--api-key=X`, `--webhook-secret X`)."""
    out: list[str] = []
    for arg in argv:
        hidden = out and out[-1] in ("--api-key", "--webhook-secret")
        if arg.startswith(("--api-key=", "--webhook-secret=")):
            arg = arg.split("=", 1)[0] + "=***"
        out.append("***" if hidden else arg)
    return shlex.join(out)


def budget(args: argparse.Namespace) -> float:
    """A hard bound on the whole run: every phase is bounded on its own; this only guards against a hang."""
    modes = {"both": 2, "open": 1, "closed": 1}.get(args.mode, 0)
    per_mode = args.duration + args.complete_timeout + args.webhook_delay + args.timeout + post_budget(args)
    phases = modes + 2  # + the ceiling or the empty reference, + restart or standing
    total = 60 + modes * (per_mode + args.quiesce) + args.ceiling_duration + args.quiesce + 2 * args.timeout
    total += phases * (COST_BOUND + 2 * WEBHOOK_SETTLE + 2 * args.timeout)  # histories, /metrics
    if args.pending:
        total += standing_budget(args) + 2 * 30 + 2 * WEBHOOK_SETTLE  # + two status snapshots
    if args.mode == "restart":
        total += restart_budget(args)
    return total


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_args(args)
    command = redacted_command(sys.orig_argv)
    try:
        phases, standing = asyncio.run(asyncio.wait_for(run_phases(args), budget(args)))
    except (httpx.HTTPError, OSError, TimeoutError) as exc:
        print(f"bench: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(report(phases, command, standing))
    if args.json:
        args.json.write_text(json.dumps(raw_json(phases, args, command, standing), indent=1, default=_jsonable))
    aborted = any(kind.startswith("phase aborted") for p in phases for kind in p.errors)
    return 1 if aborted else 0


if __name__ == "__main__":
    code = main()
    # The Temporal client's native threads can abort the interpreter's finalisation (PyGILState_Release) after
    # the report is out; the result is the report and this exit code, so skip finalisation.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
