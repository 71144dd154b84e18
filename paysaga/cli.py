"""`paysaga` — the command line: the embedded stack, the worker, the API, migrations and tenants."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer

from paysaga.logs import configure_logging
from paysaga.settings import DEV_ENV_NAME, get_settings
from paysaga.supervisor import Child, supervise

app = typer.Typer(help="paysaga: payments as durable Temporal workflows.", no_args_is_help=True)
tenants_app = typer.Typer(help="Tenants and their API keys.", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
risk_app = typer.Typer(help="Risk: the advisory fraud score's bias report.", no_args_is_help=True)
app.add_typer(risk_app, name="risk")


@risk_app.command("bias-report")
def risk_bias_report(
    quarter: Annotated[str | None, typer.Option(help="e.g. 2026Q4; default: the last full quarter")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    store: Annotated[bool, typer.Option(help="Also store it in paysaga.risk_reports")] = False,
) -> None:
    """Score distributions and outcomes by country, currency and card brand (run quarterly by a Schedule)."""
    import json
    from datetime import UTC, datetime

    from paysaga.db import create_pool
    from services.risk import bias_report, previous_quarter, render_table

    q = quarter or previous_quarter(datetime.now(UTC).date())

    async def _run() -> dict:
        pool = await create_pool(get_settings().database_url, max_size=2)
        try:
            return await bias_report(pool, q, store=store)
        finally:
            await pool.close()

    try:
        report = asyncio.run(_run())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(json.dumps(report, indent=2, default=str) if as_json else render_table(report))


renewals_app = typer.Typer(help="Subscriptions' renewals: the renewal run.", no_args_is_help=True)
app.add_typer(renewals_app, name="renewals")


@renewals_app.command("run")
def renewals_run(
    at: Annotated[str | None, typer.Option(help="Renew what is due at this instant (RFC 3339); default: now")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what is due, change nothing")] = False,
    wait: Annotated[bool, typer.Option(help="Follow the run's progress until it is done")] = True,
) -> None:
    """Start a RenewalRunWorkflow now (the Schedule starts one every PAYSAGA_RENEWAL_EVERY_SECONDS)."""
    import contextlib
    import secrets
    from datetime import UTC, datetime

    from contracts.renewals import PROGRESS_QUERY, RENEWAL_RUN_WORKFLOW, RenewalProgress, renewal_run_workflow_id
    from paysaga.schedules import renewal_input
    from paysaga.temporal import connect_client

    try:
        when = datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(UTC) if at else None
    except ValueError as exc:
        raise typer.BadParameter(f"--at: {exc}") from exc

    async def _run() -> RenewalProgress:
        settings = get_settings()
        client = await connect_client(settings)
        inp = renewal_input(settings, at=when, dry_run=dry_run)
        workflow_id = f"{renewal_run_workflow_id(when or datetime.now(UTC))}-cli-{secrets.token_hex(3)}"
        handle = await client.start_workflow(RENEWAL_RUN_WORKFLOW, inp, id=workflow_id,
                                             task_queue=settings.task_queue, result_type=RenewalProgress)
        typer.echo(f"started {workflow_id}" + (" (dry run)" if dry_run else ""))
        if not wait:
            return RenewalProgress(run_id=workflow_id)
        result = asyncio.ensure_future(handle.result())
        while not result.done():
            await asyncio.wait([result], timeout=2.0)
            if not result.done():
                with contextlib.suppress(Exception):
                    p = await handle.query(PROGRESS_QUERY, result_type=RenewalProgress)
                    typer.echo(f"  due {p.due}  invoiced {p.invoiced}  charged {p.charged}  succeeded {p.succeeded}"
                               f"  failed {p.failed}  dunning {p.handed_to_dunning}  {p.rate_per_second}/s")
        return result.result()

    progress = asyncio.run(_run())
    typer.echo(progress.model_dump_json(indent=2))
    _exit_after_temporal(0)


dlq_app = typer.Typer(help="Dead letters: provider work whose retries ran out.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list(limit: Annotated[int, typer.Option()] = 50) -> None:
    """Dead letters of every tenant, newest first (ids and reasons only)."""
    from paysaga.db import create_pool
    from services.dead_letters import list_all

    async def _run() -> list:
        pool = await create_pool(get_settings().database_url, max_size=1)
        try:
            return await list_all(pool, limit)
        finally:
            await pool.close()

    rows = asyncio.run(_run())
    typer.echo(f"{'id':<44} {'status':<9} {'step':<14} {'created':<20} reason")
    for r in rows:
        typer.echo(f"{r['dlq_id']:<44} {r['status']:<9} {r['step']:<14} {r['created_at']:%Y-%m-%d %H:%M:%S}  "
                   f"{r['reason'][:80]}")


@dlq_app.command("replay")
def dlq_replay(dlq_id: str) -> None:
    """Retry a dead-lettered step once (a second replay of the same id is refused)."""
    from paysaga.db import create_pool
    from paysaga.temporal import connect_client
    from services.dead_letters import replay_any
    from services.errors import ServiceError

    async def _run() -> str:
        settings = get_settings()
        pool = await create_pool(settings.database_url, max_size=1)
        try:
            result = await replay_any(pool, await connect_client(settings), dlq_id, "cli")
        except ServiceError as exc:
            raise typer.BadParameter(exc.detail) from exc
        finally:
            await pool.close()
        return result.status

    typer.echo(f"{dlq_id}: {asyncio.run(_run())}")
    _exit_after_temporal(0)


@app.command()
def worker(metrics_port: Annotated[int, typer.Option(help="Temporal SDK metrics (Prometheus)")] = 9464) -> None:
    """Run the Temporal worker (workflows + activities)."""
    # The workflow sandbox re-imports each workflow module for every run it starts: with the bytecode cache that
    # costs an unmarshal, without it (PYTHONDONTWRITEBYTECODE) a compile of the module's source every time.
    sys.dont_write_bytecode = False
    from worker import run_worker

    settings = get_settings()
    configure_logging(settings.log_level)
    asyncio.run(run_worker(settings, metrics_port=metrics_port or None))


@app.command()
def api(
    host: Annotated[str | None, typer.Option()] = None, port: Annotated[int | None, typer.Option()] = None
) -> None:
    """Run the HTTP API (uvicorn)."""
    import uvicorn

    from api.app import create_app

    settings = get_settings()
    configure_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=host or settings.api_host, port=port or settings.api_port,
                http="httptools", loop="uvloop", log_level="warning", access_log=False)


@app.command("sandbox-network")
def sandbox_network() -> None:
    """Run the sandbox provider's network: its webhooks and settlement (what Stripe's servers do)."""
    from activities.providers.sandbox.network import serve_network

    settings = get_settings()
    configure_logging(settings.log_level)
    asyncio.run(serve_network(settings))


@app.command()
def migrate() -> None:
    """Apply the SQL migrations (needs DATABASE_ADMIN_URL: the owner role)."""
    from paysaga.devstack import migrate as run_migrations

    settings = get_settings()
    if not settings.database_admin_url:
        raise typer.BadParameter("set DATABASE_ADMIN_URL to the owner role's connection URL")
    run_migrations(settings.database_admin_url)
    typer.echo("migrations applied")


reconcile_app = typer.Typer(help="Reconciliation: stuck payments (the default), or a settlement report.")
app.add_typer(reconcile_app, name="reconcile")


@reconcile_app.callback(invoke_without_command=True)
def reconcile(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would change; change nothing")] = False,
    older_than: Annotated[float, typer.Option(help="Seconds a payment must have been stuck")] = 600.0,
    limit: Annotated[int, typer.Option(help="Payments examined at most")] = 200,
) -> None:
    """Run one reconciliation of stuck pending/processing payments now (the Schedule runs it every 5 min)."""
    if ctx.invoked_subcommand is not None:
        return
    import json

    from contracts.reconciliation import ReconcileInput, ReconcileReport
    from paysaga.temporal import connect_client
    from services.reconciliation import run_now

    async def _run() -> ReconcileReport:
        settings = get_settings()
        return await run_now(await connect_client(settings), settings.task_queue,
                             ReconcileInput(older_than_seconds=older_than, limit=limit, dry_run=dry_run))

    typer.echo(json.dumps(asyncio.run(_run()).model_dump(), indent=2))
    _exit_after_temporal(0)


def _instant(text: str) -> Any:
    from datetime import UTC, datetime

    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@reconcile_app.command("settlement")
def reconcile_settlement(
    start: Annotated[str, typer.Option("--from", help="Start (ISO 8601 day or instant, UTC), e.g. 2026-11-30")],
    end: Annotated[str, typer.Option("--to", help="End, exclusive, e.g. 2026-12-07")],
    tenant: Annotated[str | None, typer.Option(help="The tenant's id or (unique) name; default: every tenant")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """A settlement reconciliation report of [--from, --to) now (stored as a manual report). Exit code 1 if a
    currency's variance is at or above 0.01 %."""
    from paysaga.temporal import connect_client
    from services.settlement_reports import run_now
    from services.tenants import resolve_tenant

    async def _run() -> Any:
        settings = get_settings()
        tenant_id = await resolve_tenant(_admin_url(), tenant) if tenant else None
        return await run_now(await connect_client(settings), settings, tenant_id, _instant(start), _instant(end))

    result = _run_admin(_run())
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        typer.echo(f"settlement {result.start:%Y-%m-%d %H:%M} .. {result.end:%Y-%m-%d %H:%M} UTC")
        for report in result.reports:
            for c in report.currencies:
                kinds = ", ".join(f"{k} {n}" for k, n in sorted(c.discrepancies.items())) or "no discrepancies"
                typer.echo(f"  {report.report_id}  tenant {report.tenant_id}  {c.currency}  variance "
                           f"{c.variance_ppm} ppm{'  EXCEEDS 0.01 %' if c.exceeds else ''}  ({kinds})")
        for failed in result.failed:
            typer.echo(f"  tenant {failed}: the report failed (see the worker's log)")
    _exit_after_temporal(1 if any(r.exceeds for r in result.reports) or result.failed else 0)


payouts_app = typer.Typer(help="Payout runs to connected accounts.", no_args_is_help=True)
app.add_typer(payouts_app, name="payouts")


@payouts_app.command("run")
def payouts_run(
    tenant: Annotated[str, typer.Option(help="The tenant's id or (unique) name")],
    as_of: Annotated[str | None, typer.Option(help="Pay periods ending on or before this day (default today)")] = None,
    account: Annotated[str | None, typer.Option(help="Only this connected account")] = None,
) -> None:
    """Open a payout run now (what finance's POST /v1/payouts/runs does); it may await approval."""
    import uuid
    from datetime import UTC, date, datetime

    from paysaga.temporal import connect_client
    from services.payouts import open_run, run_input
    from services.tenants import resolve_tenant

    async def _run() -> Any:
        settings = get_settings()
        tenant_id = await resolve_tenant(_admin_url(), tenant)
        day = date.fromisoformat(as_of) if as_of else datetime.now(UTC).date()
        inp = run_input(settings, tenant_id, f"prun_{uuid.uuid4().hex[:24]}", day, "cli", "cli", account, None)
        return await open_run(await connect_client(settings), settings, inp)

    state = _run_admin(_run())
    typer.echo(f"{state.run_id}: {state.status} (as of {state.as_of}; workflow {state.workflow_id})")
    _exit_after_temporal(0)


def _decide(run_id: str, tenant: str, decision: str, reason: str | None) -> None:
    from paysaga.temporal import connect_client
    from services.errors import ServiceError
    from services.payouts import decide_run
    from services.tenants import resolve_tenant

    async def _run() -> Any:
        settings = get_settings()
        tenant_id = await resolve_tenant(_admin_url(), tenant)
        try:
            return await decide_run(await connect_client(settings), tenant_id, run_id, decision, "cli", reason)
        except ServiceError as exc:
            raise ValueError(exc.detail) from exc

    state = _run_admin(_run())
    typer.echo(f"{state.run_id}: {state.status}")
    _exit_after_temporal(0)


@payouts_app.command("approve")
def payouts_approve(run_id: str, tenant: Annotated[str, typer.Option(help="The tenant's id or name")],
                    reason: Annotated[str | None, typer.Option()] = None) -> None:
    """Approve a run awaiting approval: it pays."""
    _decide(run_id, tenant, "approve", reason)


@payouts_app.command("reject")
def payouts_reject(run_id: str, tenant: Annotated[str, typer.Option(help="The tenant's id or name")],
                   reason: Annotated[str | None, typer.Option()] = None) -> None:
    """Reject a run awaiting approval: it pays nothing."""
    _decide(run_id, tenant, "reject", reason)


def _admin_url() -> str:
    """The owner's connection: DATABASE_ADMIN_URL, or the running dev stack's (written by `paysaga dev`)."""
    url = get_settings().database_admin_url
    if not url:
        raise typer.BadParameter("no database to administer: start the dev stack (make run) or set "
                                 "DATABASE_ADMIN_URL to the owner role's connection URL")
    return url


def _exit_after_temporal(code: int) -> None:
    """End a command that used a Temporal client without the interpreter's teardown: the client's Rust threads
    can outlive the event loop and crash a finalizing interpreter (SIGSEGV or SIGABRT after the work is done),
    which would turn a done command into a failed one for its caller."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run_admin(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


RoleOption = Annotated[list[str], typer.Option("--role", help="payments | finance | admin (repeatable)")]


@tenants_app.command("create")
def tenants_create(name: str, role: RoleOption = ["payments"]) -> None:  # noqa: B006
    """Create a tenant and its first API key (shown once; only its SHA-256 is stored)."""
    from services.tenants import create_tenant

    tenant_id, key = _run_admin(create_tenant(_admin_url(), name, role))
    typer.echo(f"tenant_id={tenant_id}\napi_key={key}")


@tenants_app.command("list")
def tenants_list() -> None:
    """Every tenant, with its number of active API keys."""
    from services.tenants import list_tenants

    rows = _run_admin(list_tenants(_admin_url()))
    typer.echo(f"{'tenant_id':<38} {'active keys':>11}  {'created':<20} name")
    for r in rows:
        typer.echo(f"{r['tenant_id']:<38} {r['active_keys']:>11}  {r['created_at']:%Y-%m-%d %H:%M:%S}  {r['name']}")


keys_app = typer.Typer(help="API keys: several per tenant, each with its roles; revoked at once.",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant's id or (unique) name")],
    role: RoleOption = ["payments"],  # noqa: B006
    name: Annotated[str | None, typer.Option(help="What the key is for, e.g. 'shop front'")] = None,
) -> None:
    """Give a tenant another API key, e.g. a payments-only key for a shop front (shown once)."""
    from services.tenants import create_key

    tenant_id, key_id, key = _run_admin(create_key(_admin_url(), tenant, role, name))
    typer.echo(f"tenant_id={tenant_id}\nkey_id={key_id}\nroles={','.join(role)}\napi_key={key}")


@keys_app.command("list")
def keys_list(tenant: Annotated[str, typer.Option(help="The tenant's id or (unique) name")]) -> None:
    """A tenant's keys: roles, when created, last used and revoked (never the key itself)."""
    from services.tenants import list_keys

    def when(value: Any) -> str:
        return f"{value:%Y-%m-%d %H:%M:%S}" if value else "-"

    rows = _run_admin(list_keys(_admin_url(), tenant))
    typer.echo(f"{'key_id':<22} {'roles':<24} {'created':<20} {'last used':<20} {'revoked':<20} name")
    for r in rows:
        typer.echo(f"{r['key_id']:<22} {','.join(r['roles']):<24} {when(r['created_at']):<20} "
                   f"{when(r['last_used_at']):<20} {when(r['revoked_at']):<20} {r['name'] or ''}")


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key: the next request with it is answered 401."""
    from services.tenants import revoke_key

    row = _run_admin(revoke_key(_admin_url(), key_id))
    typer.echo(f"{row['key_id']} revoked at {row['revoked_at']:%Y-%m-%d %H:%M:%S}")


ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")


@ledger_app.command("trial-balance")
def ledger_trial_balance(
    tenant: Annotated[str, typer.Option(help="The tenant's id or (unique) name")],
    at: Annotated[str | None, typer.Option(help="As of this instant (ISO 8601), e.g. 2026-11-30T23:59:59Z")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON")] = False,
) -> None:
    """Debits and credits per currency and account type: the balance is zero. Exit code 1 if it is not."""
    import json
    from datetime import datetime

    from services.ledger import render_trial_balance, tenant_trial_balance

    when = datetime.fromisoformat(at.replace("Z", "+00:00")) if at else None
    report = _run_admin(tenant_trial_balance(_admin_url(), tenant, when))
    typer.echo(json.dumps(report, indent=2) if as_json else render_trial_balance(report))
    if not report["balanced"]:
        raise typer.Exit(1)


@app.command()
def dev(
    api_port: Annotated[int, typer.Option()] = 8000,
    temporal_port: Annotated[int, typer.Option()] = 7233,
    ui_port: Annotated[int, typer.Option()] = 8233,
    worker_metrics_port: Annotated[int, typer.Option(help="Temporal SDK metrics of the worker")] = 9464,
) -> None:
    """Start the embedded stack: Postgres, Temporal dev server + UI, migrations, worker, API, a demo tenant."""
    from paysaga import devstack
    from services.tenants import create_tenant

    settings = get_settings()
    data = settings.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    typer.echo(f"starting PostgreSQL (data in {settings.data_dir / 'pg'}) ...")
    sock = devstack.start_postgres(data / "pg")
    admin_url = devstack.socket_url(sock, "postgres", devstack.DB_NAME)
    app_url = devstack.socket_url(sock, devstack.APP_ROLE, devstack.DB_NAME)
    asyncio.run(devstack.ensure_database(devstack.socket_url(sock, "postgres", "postgres")))
    devstack.migrate(admin_url)
    asyncio.run(devstack.enable_app_login(admin_url))

    typer.echo("starting the Temporal dev server ...")
    run_dir = data / "run"

    def temporal() -> subprocess.Popen[bytes]:
        return devstack.start_temporal(temporal_port, ui_port, data / "temporal.db", data / "temporal.log")

    children = [Child("temporal", temporal, run_dir)]
    children[0].launch()
    asyncio.run(devstack.ensure_search_attributes(f"127.0.0.1:{temporal_port}"))
    key_file = data / "demo-api-key"
    if not key_file.exists():
        _, key = asyncio.run(create_tenant(admin_url, "demo", ["payments", "finance", "admin"]))
        key_file.write_text(key)
        key_file.chmod(0o600)
    key = key_file.read_text().strip()
    stack_env = {"DATABASE_URL": app_url, "DATABASE_ADMIN_URL": admin_url,
                 "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}"}
    devstack.write_dev_env(data / DEV_ENV_NAME, stack_env)  # so `paysaga …` from the checkout finds this stack

    env = devstack.child_env(**stack_env, PAYSAGA_API_PORT=str(api_port), PAYSAGA_API_HOST="127.0.0.1")
    me = [sys.executable, "-m", "paysaga.cli"]

    def command(*argv: str) -> Callable[[], subprocess.Popen[bytes]]:
        return lambda: subprocess.Popen([*me, *argv], env=env)

    children += [Child("worker", command("worker", "--metrics-port", str(worker_metrics_port)), run_dir),
                 Child("api", command("api", "--port", str(api_port)), run_dir)]
    if settings.provider == "sandbox":  # the embedded provider's own process, where Stripe's servers would be
        children.append(Child("sandbox-network", command("sandbox-network"), run_dir))
    for child in children[1:]:
        child.launch()
    devstack.wait_for_port(api_port, timeout=60)
    time.sleep(1)
    if any(c.proc is not None and c.proc.poll() is not None for c in children):  # e.g. a port already taken
        for child in reversed(children):
            child.stop()
            child.wait()
        raise typer.Exit(1)
    typer.echo(
        f"\npaysaga is running\n"
        f"  API          http://127.0.0.1:{api_port}   (docs: /docs, metrics: /metrics)\n"
        f"  Temporal UI  http://127.0.0.1:{ui_port}\n"
        f"  Temporal     127.0.0.1:{temporal_port}   (temporal workflow list --address 127.0.0.1:{temporal_port})\n"
        f"  DATABASE_URL {app_url}\n"
        f"  demo API key {key}\n"
        f"  processes    {', '.join(f'{c.name} {c.proc.pid}' for c in children if c.proc)} "
        f"(pids in {settings.data_dir / 'run'}; a process that dies is restarted)\n"
        f"Ctrl-C stops everything.\n"
    )
    supervise(children, lambda line: typer.echo(f"supervisor: {line}", err=True))
    typer.echo("stopped")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
