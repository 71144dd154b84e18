"""Renewal benchmark on an embedded stack of its own (Postgres, the Temporal dev server, the API, and a worker in
its own process, as `make test` runs them): N subscriptions due at the same instant, seeded in bulk (not through
the API), renewed by one RenewalRunWorkflow with the sandbox provider.

    .venv/bin/python bench/renewals.py [--n 100000] [--batch-size 1000] [--decline-share 0.02]
                                       [--rate 0] [--workdir DIR]

Prints: N renewals in S s (R renewals/s); the time to invoice all and to settle all; the Temporal actions per
renewal (from the histories of every workflow the run caused); the share handed to dunning; CPU seconds by
process. `--rate` paces the charges (per second, shared by every worker through the database's token bucket).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import uvloop  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.api.history.v1 import HistoryEvent  # noqa: E402
from temporalio.client import Client  # noqa: E402

from contracts.renewals import (  # noqa: E402
    PROGRESS_QUERY,
    RENEWAL_RUN_WORKFLOW,
    Pacing,
    RenewalProgress,
    RenewalRunInput,
)
from paysaga import devstack  # noqa: E402
from tests.integration.seeding import seed_due_subscriptions  # noqa: E402
from tests.integration.test_invoices import customer, seller  # noqa: E402
from tests.integration.test_subscriptions import price, subscribe, wait_subscription  # noqa: E402
from tests.integration.test_worker_crash import spawn_cli, spawn_worker  # noqa: E402
from tests.stack import Stack, running_stack  # noqa: E402

# What Temporal bills as an action, read off a history (Temporal Cloud's documented rules): a workflow started
# (a continue-as-new and a child's start included), an activity scheduled, a timer started, a signal received or
# sent, an update accepted, a child workflow initiated; every marker of one workflow task together is one action
# (local activities, patches); a search-attribute upsert is one, except one that only sets TemporalChangeVersion.
# Queries (the bench's own progress polls) and activity retries are not in histories, so not counted.
ONE_ACTION_EACH = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    EventType.EVENT_TYPE_TIMER_STARTED, EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
    EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
}
CHANGE_VERSION = "TemporalChangeVersion"


def actions_in(events: Iterable[HistoryEvent]) -> int:
    """The billable actions of one history, by the rules above."""
    actions = 0
    marker_tasks: set[int] = set()
    for event in events:
        if event.event_type in ONE_ACTION_EACH:
            actions += 1
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker_tasks.add(event.marker_recorded_event_attributes.workflow_task_completed_event_id)
        elif event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            actions += 0 if set(fields) <= {CHANGE_VERSION} else 1
    return actions + len(marker_tasks)


def ticks(pid: int) -> float:
    """CPU seconds (user + system) of a process and its reaped children."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def processes(workdir: Path) -> dict[str, list[int]]:
    """This stack's processes by role: its PostgreSQL (the postmaster of its own data directory, and the
    backends), its Temporal dev server (a descendant of this process). Other stacks on the machine are not
    counted."""
    out: dict[str, list[int]] = {"postgres": [], "temporal": []}
    try:
        postmaster = int((workdir / "pg" / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        postmaster = -1
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        stat = _stat(pid)
        if stat is None:
            continue
        if pid == postmaster or int(stat[1]) == postmaster:
            out["postgres"].append(pid)
        elif "temporal" in _cmdline(pid) and "start-dev" in _cmdline(pid) and _descends(pid, me):
            out["temporal"].append(pid)
    return out


def _descends(pid: int, ancestor: int) -> bool:
    for _ in range(8):
        stat = _stat(pid)
        if stat is None:
            return False
        pid = int(stat[1])
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
    return False


def cpu(workdir: Path, worker: int, network: int) -> dict[str, float]:
    roles = processes(workdir)
    return {"worker": ticks(worker), "bench (API, seeding, client)": ticks(os.getpid()),
            "sandbox network (Stripe's stand-in)": ticks(network),
            **{k: sum(ticks(p) for p in v) for k, v in roles.items()}}


async def actions_of(client: Client, query: str) -> tuple[int, int]:
    """(workflows, actions) of the runs the query finds."""
    workflows = actions = 0
    async for wf in client.list_workflows(query):
        workflows += 1
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        actions += actions_in(history.events)
    return workflows, actions


async def posts_per_webhook(stack: Stack) -> tuple[int, int]:
    """(events delivered, POSTs it took): an event answered 409 (its payment's charge not recorded yet) or 5xx is
    posted again."""
    row = await stack.admin_pool.fetchrow(  # type: ignore[attr-defined]
        "SELECT count(*) AS n, coalesce(sum(attempts), 0) AS posts FROM sandbox.events WHERE state = 'delivered'")
    return int(row["n"]), int(row["posts"])


async def undelivered_webhooks(stack: Stack) -> int:
    """Events the sandbox network has still to deliver (a first attempt or a retry due)."""
    return int(await stack.admin_pool.fetchval(  # type: ignore[attr-defined]
        "SELECT count(*) FROM sandbox.events WHERE state = 'pending'"))


async def bench(args: argparse.Namespace, workdir: Path) -> str:
    # The sandbox network (Stripe's stand-in: webhook delivery, settlement) runs as its own process, as `paysaga
    # dev` runs it, so that its CPU is counted apart from the API's.
    async with running_stack(workdir, network=False) as stack:
        network = spawn_cli(stack, ["sandbox-network"],
                            PAYSAGA_SANDBOX_SETTLE_DELAY_MS=str(stack.settings.sandbox_settle_delay_ms))
        try:
            return await _bench(args, stack, workdir, network.pid)
        finally:
            network.send_signal(signal.SIGTERM)
            network.wait(30)


async def _bench(args: argparse.Namespace, stack: Stack, workdir: Path, network: int) -> str:
    tenant_id, api_key = await stack.new_tenant(["payments", "finance"])
    async with stack.http(api_key) as http:
        await seller(http)
        p = await price(http, "8.00")
        cid = await customer(http, {"country": "DE"}, token="pm_card_visa")
        template = await subscribe(http, cid, p["id"])
        await wait_subscription(http, template["id"], "active")
        # Copied, then canceled: the template is not due itself.
        canceled = await http.post(f"/v1/subscriptions/{template['id']}/cancel", json={})
        assert canceled.status_code == 200, canceled.text
    at = datetime(2031, 3, 1, tzinfo=UTC)
    t0 = time.monotonic()
    every = round(1 / args.decline_share) if args.decline_share > 0 else 0
    seeded = 0
    for start in range(0, args.n, 20_000):  # transactions of a bounded size
        chunk = min(20_000, args.n - start)
        ids = await seed_due_subscriptions(stack.admin_pool, tenant_id, template["id"], chunk, at,  # type: ignore[arg-type]
                                           prefix=f"b{start // 20_000}", declined_every=every)
        seeded += len(ids)
    seed_s = time.monotonic() - t0
    await stack.admin_pool.execute("ANALYZE")  # type: ignore[attr-defined]

    queue = f"renewals-bench-{uuid.uuid4().hex[:6]}"
    worker = spawn_worker(stack, queue, PAYSAGA_SCHEDULES_ENABLED="false")
    await asyncio.sleep(3)  # the worker connects
    before = cpu(workdir, worker.pid, network)
    inp = RenewalRunInput(at=at, batch_size=args.batch_size, settle_wait_seconds=60,
                          pacing=Pacing(rate_per_second=args.rate))
    run_id = f"renewals-bench-{uuid.uuid4().hex[:6]}"
    t1 = time.monotonic()
    handle = await stack.client.start_workflow(RENEWAL_RUN_WORKFLOW, inp, id=run_id, task_queue=queue,
                                               result_type=RenewalProgress)
    invoiced_at = None
    result = asyncio.ensure_future(handle.result())
    while not result.done():
        await asyncio.wait([result], timeout=2.0)
        try:
            progress = await handle.query(PROGRESS_QUERY, result_type=RenewalProgress)
        except Exception:
            continue
        if invoiced_at is None and progress.invoiced >= seeded:
            invoiced_at = time.monotonic() - t1
        print(f"  {time.monotonic() - t1:6.1f}s  invoiced {progress.invoiced}  charged {progress.charged}  "
              f"succeeded {progress.succeeded}  failed {progress.failed}", file=sys.stderr)
    progress = result.result()
    total = time.monotonic() - t1
    invoiced_at = invoiced_at or total
    after = cpu(workdir, worker.pid, network)
    # The run is settled by its own polls; the provider's webhooks about the same payments may still be queued at
    # the sandbox network. Delivering them is work the stack does for these renewals too: measured apart.
    backlog = await undelivered_webhooks(stack)
    t2 = time.monotonic()
    while await undelivered_webhooks(stack) and time.monotonic() - t2 < args.drain_timeout:
        await asyncio.sleep(1.0)
    drain_s, left = time.monotonic() - t2, await undelivered_webhooks(stack)
    delivered, posts = await posts_per_webhook(stack)
    drained = cpu(workdir, worker.pid, network)
    worker.send_signal(signal.SIGTERM)
    worker.wait(30)
    runs, run_actions = await actions_of(stack.client, f"WorkflowId = '{run_id}'")
    others, other_actions = await actions_of(
        stack.client, f"TaskQueue = '{queue}' AND WorkflowType != '{RENEWAL_RUN_WORKFLOW}'")
    actions = run_actions + other_actions
    used = {k: after[k] - before.get(k, 0.0) for k in after}
    drain_used = {k: drained.get(k, 0.0) - after.get(k, 0.0) for k in after}
    lines = [
        f"{progress.renewed} renewals in {total:.1f} s ({progress.renewed / total:.0f} renewals/s)",
        "",
        "| measure | value |",
        "|---|---|",
        f"| subscriptions seeded (bulk SQL) | {seeded} in {seed_s:.1f} s |",
        f"| invoiced all (invoices, lines, tax, ledger, events, outbox) | {invoiced_at:.1f} s |",
        f"| settled all (charged, succeeded or failed and handed to dunning) | {total:.1f} s |",
        f"| charged / succeeded / failed | {progress.charged} / {progress.succeeded} / {progress.failed} |",
        f"| handed to dunning | {progress.handed_to_dunning} ({progress.handed_to_dunning / max(1, seeded):.1%}) |",
        f"| batches / runs (continue-as-new) | {progress.batches} / {runs} |",
        f"| Temporal actions: renewal run / other workflows ({others}) | {run_actions} / {other_actions} |",
        f"| Temporal actions per renewal | {actions / max(1, progress.renewed):.4f} |",
        f"| pacing | {args.rate or 'unpaced'} /s, waited {progress.pacing.waited_seconds:.1f} s, "
        f"{progress.pacing.throttled} throttled |",
        *(f"| CPU s: {k} | {v:.1f} |" for k, v in used.items()),
        f"| webhook events still queued at settle | {backlog} (delivered {backlog - left} in {drain_s:.1f} s after; "
        f"{left} left) |",
        f"| webhook POSTs per delivered event (409s and 5xx posted again) | {posts / max(1, delivered):.2f} "
        f"({posts} for {delivered}) |",
        "| CPU s delivering them: " + " / ".join(drain_used) + " | "
        + " / ".join(f"{v:.1f}" for v in drain_used.values()) + " |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--decline-share", type=float, default=0.02, help="Share of declined cards (dunning)")
    parser.add_argument("--rate", type=float, default=0.0, help="Charges per second (0: unpaced)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--drain-timeout", type=float, default=900.0,
                        help="Longest wait for the webhooks still queued at settle (0: do not wait)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pt-bench-renewals-"))
    command = "bench/renewals.py " + " ".join(argv if argv is not None else sys.argv[1:])
    # The API serves in this process; on uvloop, as `paysaga api` serves it.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        print(f"$ {command}\n" + runner.run(bench(args, workdir)))
    return 0


if __name__ == "__main__":
    code = main()
    # As bench/payments.py: the Temporal client's native threads can abort the interpreter's finalisation after
    # the report is out, so skip it — stopping the Postgres it started first, which only an exit handler would.
    devstack.stop_postgres()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
